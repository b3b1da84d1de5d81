"""Long-term memory as an essential built-in plugin.

It registers the ``chroma`` store, the ``minilm`` and ``openai`` embedders, the ``kernos``
LangGraph store and the ``memory`` command. Nothing heavy is imported here: chromadb,
onnxruntime and the model load the first time memory is used, so a kernel (and
``kernos --help``) that never touches memory pays nothing for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kernos.kernel.cli.lazy import LazyCommand
from kernos.kernel.hookspecs import hookimpl

if TYPE_CHECKING:
    from kernos.kernel.kernel import Kernel
    from kernos.kernel.memory import Embedder, EmbedderSpec, MemoryStore, MemoryStoreSpec
    from kernos.kernel.memory_records import GraphStoreSpec
    from kernos.kernel.settings import Settings
    from kernos.memory.store import KernosStore


def _chroma(settings: Settings, embedder: Embedder) -> MemoryStore:
    from kernos.memory.chroma_store import ChromaStore

    return ChromaStore.from_settings(settings, embedder)


def _minilm(settings: Settings) -> Embedder:
    from kernos.memory.minilm import MiniLMEmbedder

    return MiniLMEmbedder.from_settings(settings)


def _openai(settings: Settings) -> Embedder:
    from kernos.memory.openai_embedder import OpenAIEmbedder

    return OpenAIEmbedder.from_settings(settings)


@hookimpl
def register_memory_stores(register: Callable[[MemoryStoreSpec], None]) -> None:
    """ChromaDB: embedded in ``KERNOS_HOME/memory``, or the server at ``KERNOS_MEMORY_URL``."""
    from kernos.kernel.memory import MemoryStoreSpec

    register(MemoryStoreSpec("chroma", _chroma, "ChromaDB, embedded or a server"))


@hookimpl
def register_embedders(register: Callable[[EmbedderSpec], None]) -> None:
    """``minilm`` (offline ONNX) and ``openai`` (an OpenAI-compatible embeddings server)."""
    from kernos.kernel.memory import EmbedderSpec

    register(EmbedderSpec("minilm", _minilm, "all-MiniLM-L6-v2, int8 ONNX, offline"))
    register(EmbedderSpec("openai", _openai, "any OpenAI-compatible /v1/embeddings server"))


def _kernos_store(kernel: Kernel) -> KernosStore:
    from kernos.memory.store import KernosStore

    return KernosStore(clock=kernel.clock.now)


@hookimpl
def register_graph_stores(register: Callable[[GraphStoreSpec], None]) -> None:
    """``kernos``: LangGraph's store on Kernos memory, each operation a governed syscall."""
    from kernos.kernel.memory_records import GraphStoreSpec

    register(GraphStoreSpec("kernos", _kernos_store, "Kernos memory, private to each agent"))


@hookimpl
def register_commands(register: Callable[[LazyCommand], None]) -> None:
    """``kernos memory put|search|forget``."""
    register(LazyCommand("memory", "kernos.memory.cli:memory", "Put, search and forget memories."))
