"""Classic models (ONNX) served in the kernel from the model registry, with its traffic rules.

``ModelRuntime.infer(name, inputs, key=...)`` asks the registry which version answers the
request ``key`` (the live one, or the canary when the key falls in its share), runs it with
onnxruntime on the CPU off the event loop, and runs every shadow version on the same inputs
afterwards: their answers are recorded for comparison (latency, errors) and never returned.

An artifact is loaded only after the registry verified it (bytes and signature; a failure is
audited and refuses the call with ``CheckFailed``), and the bytes handed to onnxruntime are the
bytes whose SHA-256 was just checked, so a file swapped after verification is never run.
Sessions are cached by digest.

A model a configured model server names (``[[model_servers]]``, ``kernos.kernel.model_servers``)
is sent to that server instead, as ``name`` and the chosen version: the registry decides the
version exactly as for local models, and verifies it before its first remote call (the
verified digest is remembered, as a loaded session is), so a tampered artifact is refused
before any request leaves the kernel. Latency and errors are recorded per version the same way.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernos.kernel.errors import CheckFailed, InvalidInput

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from kernos.kernel.drift import DriftMonitor, DriftReport
    from kernos.kernel.model_records import ModelVersion
    from kernos.kernel.model_servers import ModelServer
    from kernos.kernel.registry import ModelRegistry
    from kernos.kernel.telemetry import Telemetry

logger = logging.getLogger(__name__)

MAX_SESSIONS = 16
"""onnxruntime sessions kept loaded (the least recently used one goes first)."""

MAX_VERIFIED = 1024
"""Digests of remotely served versions remembered as verified (least recent first out)."""


@dataclass(frozen=True, slots=True)
class Inference:
    """One answer: which version gave it and its outputs (name → array)."""

    name: str
    version: str
    canary: bool
    outputs: dict[str, Any]
    shadows: tuple[str, ...] = ()
    """Versions that saw a mirrored copy of the request (their answers are only recorded)."""


class ModelRuntime:
    """ONNX models of one kernel's registry, run with onnxruntime (imported on first use) or
    by the model server configured for them; with a ``DriftMonitor``, the inputs callers
    report through ``observe`` are checked for drift against each model's reference window."""

    def __init__(self, registry: ModelRegistry, *, drift: DriftMonitor | None = None) -> None:
        self._registry = registry
        self._sessions: OrderedDict[str, Any] = OrderedDict()  # by digest, least recent first
        self._verified: OrderedDict[str, None] = OrderedDict()  # digests, least recent first
        self._servers: dict[str, ModelServer] = {}  # by the model name each serves
        self._lock = asyncio.Lock()
        self.drift = drift

    def use_servers(
        self, servers: Sequence[ModelServer], *, telemetry: Telemetry | None = None
    ) -> None:
        """Send the models each of ``servers`` names (``config.models``) to it from now on;
        each server gets ``telemetry`` for its client spans."""
        routes: dict[str, ModelServer] = {}
        for server in servers:
            server.telemetry = telemetry
            for model in server.config.models:
                routes[model] = server
        self._servers = routes

    def server_for(self, name: str) -> ModelServer | None:
        """The model server ``name`` is sent to, or ``None`` when it runs in-process."""
        return self._servers.get(name)

    async def aclose(self) -> None:
        """Close every model server's connections (the kernel calls it at shutdown)."""
        servers = {id(s): s for s in self._servers.values()}.values()
        self._servers = {}
        for server in servers:
            try:
                await server.close()
            except Exception as exc:  # closing is best effort: the kernel is stopping
                logger.warning("closing model server %s failed: %s", server.name, exc)

    async def observe(
        self, name: str, rows: Sequence[Mapping[str, float]], *, tenant: str
    ) -> list[DriftReport]:
        """Feed the named input features of one request to the drift monitor; the windows
        this completed (a drifted one is also published as ``model.drift``)."""
        if self.drift is None:
            return []
        reports = []
        for row in rows:
            report = await self.drift.observe(name, row, tenant=tenant)
            if report is not None:
                reports.append(report)
        return reports

    async def infer(self, name: str, inputs: dict[str, Any], *, key: str) -> Inference:
        """Run ``name`` on ``inputs`` (input name → numpy array) for request ``key``."""
        choice = await self._registry.route(name, key=key)
        outputs = await self._timed(name, choice.version, inputs, shadow=False)
        for shadow in choice.shadows:
            try:
                await self._timed(name, shadow, inputs, shadow=True)
            except Exception as exc:  # a failing shadow is counted, never the caller's problem
                logger.warning("shadow %s@%s failed: %s", name, shadow, exc)
        return Inference(
            name=name,
            version=choice.version,
            canary=choice.canary,
            outputs=outputs,
            shadows=choice.shadows,
        )

    async def _timed(
        self, name: str, version: str, inputs: dict[str, Any], *, shadow: bool
    ) -> dict[str, Any]:
        started = time.perf_counter()
        server = self._servers.get(name)
        try:
            if server is not None:
                await self._verify_remote(name, version)
                outputs = await server.infer(name, version, inputs)
            else:
                session = await self._session(name, version)
                outputs = await asyncio.to_thread(_run, session, inputs)
        except Exception:
            self._registry.record(
                name, version, latency=time.perf_counter() - started, ok=False, shadow=shadow
            )
            raise
        self._registry.record(
            name, version, latency=time.perf_counter() - started, ok=True, shadow=shadow
        )
        return outputs

    async def _session(self, name: str, version: str) -> Any:
        model = await self._registry.get(name, version)
        session = self._sessions.get(model.sha256)
        if session is not None:
            self._sessions.move_to_end(model.sha256)
            return session
        async with self._lock:
            session = self._sessions.get(model.sha256)
            if session is None:
                session = await self._load(model)
                self._sessions[model.sha256] = session
                while len(self._sessions) > MAX_SESSIONS:  # retired versions leave memory
                    self._sessions.popitem(last=False)
        return session

    async def _verify_remote(self, name: str, version: str) -> None:
        """Refuse (``CheckFailed``, audited by the registry) a version whose artifact fails
        verification, before its first remote call; a verified digest is remembered."""
        model = await self._registry.get(name, version)
        if model.sha256 in self._verified:
            self._verified.move_to_end(model.sha256)
            return
        async with self._lock:
            if model.sha256 in self._verified:
                return
            result = await self._registry.verify(model.name, model.version)
            if not result.ok:
                raise CheckFailed(f"model {model.ref} failed verification: {result.detail}")
            self._verified[model.sha256] = None
            while len(self._verified) > MAX_VERIFIED:
                self._verified.popitem(last=False)

    async def _load(self, model: ModelVersion) -> Any:
        if model.kind.value != "onnx":
            raise InvalidInput(f"model {model.ref} is {model.kind.value}, not an ONNX model")
        result = await self._registry.verify(model.name, model.version)
        if not result.ok:
            raise CheckFailed(f"model {model.ref} failed verification: {result.detail}")
        body = await asyncio.to_thread(Path(model.path).read_bytes)
        if hashlib.sha256(body).hexdigest() != model.sha256:
            raise CheckFailed(f"model {model.ref} changed on disk while it was being loaded")
        return await asyncio.to_thread(_open, body)


def _open(body: bytes) -> Any:
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # small models: a thread pool costs more than it gives
    options.inter_op_num_threads = 1
    return ort.InferenceSession(body, options, providers=["CPUExecutionProvider"])


def _run(session: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs), strict=True))


__all__ = ["Inference", "ModelRuntime"]
