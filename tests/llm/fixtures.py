"""Pytest fixtures around the real CPU LLM server (import them into a test module)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.llm.faultproxy import FaultProxy
from tests.llm.server import LLMServer, llm_server, venv_problem


@pytest.fixture(scope="session")
def real_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLMServer]:
    """``transformers serve`` on the tiny model, once per test run; CI fails without it."""
    problem = venv_problem()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    with llm_server(tmp_path_factory.mktemp("llm")) as server:
        yield server


@pytest.fixture
def fault_proxy(real_llm: LLMServer) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the real server, in ``pass`` mode."""
    with FaultProxy("127.0.0.1", real_llm.port) as proxy:
        yield proxy
