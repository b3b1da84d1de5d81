"""Asynchronous runs with signed webhooks, delivered at least once by the event bus, every
attempt recorded — checked by a real HTTP receiver on the other side."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from kernos.api.webhooks import SIGNATURE_HEADER, master_key, sign, verify_signature
from kernos.kernel.errors import ConfigError, InvalidInput
from kernos.kernel.kernel import Kernel
from kernos.kernel.pluginmanager import PluginManager
from kernos.kernel.settings import load_settings
from kernos.kernel.tokens import read_admin_token
from tests.api.test_api import Agents, assert_problem, free_port


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A webhook endpoint over real HTTP; answers ``fail_first`` requests with 500."""

    url: str
    fail_first: int = 0
    received: list[Received] = field(default_factory=list)


@contextmanager
def serving(port: int) -> Iterator[Receiver]:
    """Run a receiver on ``port`` for the ``with`` block."""
    state = Receiver(url=f"http://127.0.0.1:{port}/hook")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.received.append(Received(dict(self.headers.items()), body))
            status = 500 if len(state.received) <= state.fail_first else 204
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serving(free_port()) as state:
        yield state


@dataclass
class Api:
    kernel: Kernel
    http: httpx.AsyncClient


async def start(home: Path, port: int, *, backoff: float = 0.05) -> Kernel:
    settings = load_settings(
        home=home,
        api_port=port,
        event_backoff_seconds=backoff,
        event_max_attempts=3,
        webhook_allow_private=True,  # the receivers here listen on 127.0.0.1
    )
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(), name="test-agents")
    kernel = Kernel(settings, plugins=plugins, serve_api=True)
    await kernel.start()
    return kernel


@pytest.fixture
async def api(kernos_home: Path) -> AsyncIterator[Api]:
    port = free_port()
    kernel = await start(kernos_home, port)
    headers = {"Authorization": f"Bearer {read_admin_token(kernos_home)}"}
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
        ) as http:
            yield Api(kernel, http)
    finally:
        await kernel.stop()


async def deliveries(api: Api, pid: int, count: int) -> list[dict[str, Any]]:
    for _ in range(400):
        found = (await api.http.get(f"/v1/processes/{pid}/webhooks")).json()
        if found["count"] >= count:
            return list(found["data"])
        await asyncio.sleep(0.025)
    raise AssertionError(f"{count} deliveries never recorded: {found}")


async def test_an_async_run_posts_its_result_signed(api: Api, receiver: Receiver) -> None:
    response = await api.http.post(
        "/v1/runs",
        json={"agent": "greeter", "input": {"name": "Ada"}, "webhook_url": receiver.url},
    )
    assert response.status_code == 202, response.text
    pid = response.json()["pid"]
    assert response.headers["location"] == f"/v1/processes/{pid}"

    [attempt] = await deliveries(api, pid, 1)
    assert attempt["status_code"] == 204 and attempt["error"] is None
    assert attempt["url"] == receiver.url and attempt["attempt"] == 1
    [got] = receiver.received
    secret = (await api.http.get("/v1/webhooks/secret")).json()
    assert secret["header"] == SIGNATURE_HEADER and secret["secret"].startswith("whsec_")
    # The receiving side, computed independently of the kernel's code:
    fields = dict(part.split("=", 1) for part in got.headers[SIGNATURE_HEADER].split(","))
    expected = hmac.new(
        secret["secret"].encode(), f"{fields['t']}.".encode() + got.body, hashlib.sha256
    ).hexdigest()
    assert hmac.compare_digest(fields["v1"], expected)
    assert abs(int(fields["t"]) - time.time()) < 60
    verify_signature(secret["secret"], got.headers[SIGNATURE_HEADER], got.body)
    payload = json.loads(got.body)
    assert payload["type"] == "process.finished"
    assert payload["id"] == got.headers["Kernos-Webhook-Id"] == f"process.finished:{pid}"
    assert payload["data"]["pid"] == pid and payload["data"]["state"] == "done"
    assert payload["data"]["output"]["greeting"] == "Hello, Ada!"


async def test_failed_deliveries_are_retried_and_each_recorded(
    api: Api, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    response = await api.http.post(
        "/v1/runs", json={"agent": "greeter", "input": {"name": "Bo"}, "webhook_url": receiver.url}
    )
    pid = response.json()["pid"]
    attempts = await deliveries(api, pid, 3)
    assert [a["status_code"] for a in attempts] == [500, 500, 204]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert attempts[0]["error"].startswith("HTTP 500")
    assert len(receiver.received) == 3
    ids = {r.headers["Kernos-Webhook-Id"] for r in receiver.received}
    assert ids == {f"process.finished:{pid}"}  # the receiver deduplicates on it
    assert [r.headers["Kernos-Delivery-Attempt"] for r in receiver.received] == ["1", "2", "3"]


async def test_an_unreachable_receiver_ends_in_the_dead_letter_queue(api: Api) -> None:
    url = f"http://127.0.0.1:{free_port()}/nobody-listens"
    response = await api.http.post(
        "/v1/runs", json={"agent": "greeter", "input": {"name": "Cy"}, "webhook_url": url}
    )
    pid = response.json()["pid"]
    attempts = await deliveries(api, pid, 3)
    assert all(a["status_code"] is None and "ConnectError" in a["error"] for a in attempts)
    for _ in range(200):
        dead = (await api.http.get("/v1/events/dlq")).json()["data"]
        if dead:
            break
        await asyncio.sleep(0.025)
    [letter] = dead
    assert letter["event"]["id"] == f"process.finished:{pid}"
    assert letter["subscriber"] == "handler:webhooks"


async def test_a_pending_webhook_survives_a_restart(kernos_home: Path) -> None:
    """The finish commits its notification; a kernel stopped while the delivery waits for
    its retry delivers it on the next start."""
    port, hook_port = free_port(), free_port()
    url = f"http://127.0.0.1:{hook_port}/hook"  # nobody listens there yet
    base = f"http://127.0.0.1:{port}"
    kernel = await start(kernos_home, port, backoff=2.0)
    headers = {"Authorization": f"Bearer {read_admin_token(kernos_home)}"}
    try:
        async with httpx.AsyncClient(base_url=base, headers=headers) as http:
            created = await http.post(
                "/v1/runs", json={"agent": "greeter", "input": {"name": "Di"}, "webhook_url": url}
            )
            pid = created.json()["pid"]
            [first] = await deliveries(Api(kernel, http), pid, 1)
            assert first["status_code"] is None and "ConnectError" in first["error"]
    finally:
        await kernel.stop()  # the retry, 1-2 s later, is pending in the database
    with serving(hook_port) as receiver:
        kernel = await start(kernos_home, port, backoff=2.0)
        try:
            async with httpx.AsyncClient(base_url=base, headers=headers) as http:
                attempts = await deliveries(Api(kernel, http), pid, 2)
        finally:
            await kernel.stop()
    assert [a["status_code"] for a in attempts] == [None, 204]
    [got] = receiver.received
    assert got.headers["Kernos-Webhook-Id"] == f"process.finished:{pid}"
    assert got.headers["Kernos-Delivery-Attempt"] == "2"


async def test_bad_webhook_urls_and_other_tenants(api: Api, receiver: Receiver) -> None:
    for url in ("ftp://example.com/x", "not a url", "http://" + "a" * 2100 + ".com"):
        response = await api.http.post(
            "/v1/runs", json={"agent": "greeter", "input": {"name": "X"}, "webhook_url": url}
        )
        assert_problem(response, 422, "invalid_input")
    created = await api.http.post(
        "/v1/runs", json={"agent": "greeter", "input": {"name": "Ed"}, "webhook_url": receiver.url}
    )
    pid = created.json()["pid"]
    other = await api.http.post(
        "/v1/keys", json={"principal": "eve", "role": "admin", "tenant": "other"}
    )
    assert other.status_code == 201, other.text
    eve = {"Authorization": f"Bearer {other.json()['token']}"}
    hidden = await api.http.get(f"/v1/processes/{pid}/webhooks", headers=eve)
    assert_problem(hidden, 404, "not_found")
    mine = (await api.http.get("/v1/webhooks/secret")).json()["secret"]
    theirs = (await api.http.get("/v1/webhooks/secret", headers=eve)).json()["secret"]
    assert mine != theirs


def test_verify_signature_refuses_tampering_and_replays() -> None:
    secret = "whsec_test"
    body = b'{"id":"x"}'
    now = int(time.time())
    header = sign(secret, body, timestamp=now)
    verify_signature(secret, header, body)
    with pytest.raises(InvalidInput, match="does not match"):
        verify_signature(secret, header, body + b" ")
    with pytest.raises(InvalidInput, match="does not match"):
        verify_signature("whsec_other", header, body)
    with pytest.raises(InvalidInput, match="old"):
        verify_signature(secret, sign(secret, body, timestamp=now - 3600), body)
    with pytest.raises(InvalidInput, match="malformed"):
        verify_signature(secret, "garbage", body)


async def test_private_addresses_are_refused_by_default(kernos_home: Path) -> None:
    port = free_port()
    plugins = PluginManager(entry_points=False)
    plugins.add(Agents(), name="test-agents")
    kernel = Kernel(load_settings(home=kernos_home, api_port=port), plugins=plugins, serve_api=True)
    await kernel.start()
    try:
        headers = {"Authorization": f"Bearer {read_admin_token(kernos_home)}"}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers) as http:
            for url in (
                "http://127.0.0.1:9/hook",
                "http://localhost/hook",
                "http://169.254.169.254/latest/meta-data",
                "http://10.0.0.7/hook",
                "http://[::1]/hook",
            ):
                response = await http.post(
                    "/v1/runs",
                    json={"agent": "greeter", "input": {"name": "X"}, "webhook_url": url},
                )
                body = assert_problem(response, 400, "invalid_input")
                assert "private or local" in body["detail"], url
            assert (await http.get("/v1/processes")).json()["count"] == 0  # nothing started
    finally:
        await kernel.stop()


async def test_nobody_else_may_publish_the_kernels_notifications(api: Api) -> None:
    for event in (
        {"topic": "process.finished", "data": {"pid": 1}},
        {"id": "process.finished:2", "topic": "sensor.bin.fill"},
    ):
        response = await api.http.post("/v1/events", json={"events": [event]})
        body = assert_problem(response, 400, "invalid_input")
        assert "kernel's own" in body["detail"]


def test_a_damaged_master_key_is_refused(tmp_path: Path) -> None:
    key = master_key(tmp_path)
    assert len(key) == 32 and master_key(tmp_path) == key  # made once, then read
    (tmp_path / "secrets" / "webhook.key").write_text("")
    with pytest.raises(ConfigError, match="64-hex-digit"):
        master_key(tmp_path)


async def test_a_long_request_id_is_echoed_but_not_recorded(api: Api, receiver: Receiver) -> None:
    long_id = "r" * 100
    response = await api.http.post(
        "/v1/runs",
        json={"agent": "greeter", "input": {"name": "Lu"}, "webhook_url": receiver.url},
        headers={"X-Request-ID": long_id},
    )
    assert response.status_code == 202, response.text
    assert response.headers["x-request-id"] == long_id
    assert response.json()["correlation_id"] != long_id
    [attempt] = await deliveries(api, response.json()["pid"], 1)
    assert attempt["status_code"] == 204
