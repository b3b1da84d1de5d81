"""The built-in LLM backend kinds: ``openai_compat``, ``vllm`` and ``sim-llm``.

One light registration module for the three: the CLI loads every plugin to list its commands,
so a plugin module must import nothing heavy (``kernos --help`` stays fast). The backends
themselves live in ``kernos.plugins.openai_compat``, ``.vllm`` and ``.sim_llm`` and are
imported only when a kernel builds one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kernos.kernel.hookspecs import hookimpl

if TYPE_CHECKING:
    from kernos.kernel.llm import BackendConfig, BackendKind, LLMBackend


def build_openai_compat(config: BackendConfig) -> LLMBackend:
    """An ``OpenAICompatBackend`` for ``config``."""
    from kernos.plugins.openai_compat import OpenAICompatBackend

    return OpenAICompatBackend(config)


def build_vllm(config: BackendConfig) -> LLMBackend:
    """A ``VLLMBackend`` for ``config``."""
    from kernos.plugins.vllm import VLLMBackend

    return VLLMBackend(config)


def build_sim_llm(config: BackendConfig) -> LLMBackend:
    """A ``SimLLMBackend`` for ``config`` (on the real clock)."""
    from kernos.plugins.sim_llm import SimLLMBackend

    return SimLLMBackend(config)


@hookimpl
def register_llm_backends(register: Callable[[BackendKind], None]) -> None:
    """Register the three built-in kinds."""
    from kernos.kernel.llm import BackendKind

    register(
        BackendKind(
            name="openai_compat",
            build=build_openai_compat,
            description="Any OpenAI-compatible chat-completions server (Ollama, llama.cpp, "
            "transformers serve, vLLM, hosted APIs)",
        )
    )
    register(
        BackendKind(
            name="vllm",
            build=build_vllm,
            description="vLLM's OpenAI-compatible server, with /health, /metrics load and "
            "guided decoding",
        )
    )
    register(
        BackendKind(
            name="sim-llm",
            build=build_sim_llm,
            description="SIMULATED model for demos and tests: labelled deterministic text, "
            "timing fitted to a real CPU server",
        )
    )
