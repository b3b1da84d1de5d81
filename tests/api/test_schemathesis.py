"""Schemathesis against the served API's own OpenAPI: no 5xx, and every response matches the
schema it declares (bounded examples per operation, so CI stays quick)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from kernos.kernel.tokens import read_admin_token
from tests.conftest import served_kernel

# Streams never end on their own; they have their own tests (test_streams.py).
STREAMING = r"^/v1/(stream|processes/\{pid\}/events)$"
EXAMPLES = 20
"""Examples per operation: bounded, so the whole run stays well under a minute."""
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    home: Path = tmp_path_factory.mktemp("kernos-home")
    with served_kernel(home) as kernel:
        base_url = f"http://127.0.0.1:{kernel.env['KERNOS_API_PORT']}"
        yield base_url, read_admin_token(home)


def test_every_operation_keeps_its_contract(served: tuple[str, str]) -> None:
    base_url, token = served
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json").exclude(path_regex=STREAMING)
    headers = {"Authorization": f"Bearer {token}"}
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 30

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)

        try:
            run()
        except BaseException as exc:  # every operation's findings, not only the first
            if isinstance(exc, KeyboardInterrupt):
                raise
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)
