"""The ``triton`` plugin: KServe v2 model servers (NVIDIA Triton, MLServer, KServe) for the
registered classic models, kind ``triton`` in ``[[model_servers]]``.

A light registration module (``kernos --help`` loads every built-in plugin): the client,
``kernos.plugins.triton_server.TritonServer`` over ``tritonclient`` (the ``triton`` extra), is
imported only when a kernel builds a configured server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kernos.kernel.hookspecs import hookimpl

if TYPE_CHECKING:
    from kernos.kernel.model_servers import ModelServer, ModelServerConfig, ModelServerKind


def build_triton(config: ModelServerConfig) -> ModelServer:
    """A ``TritonServer`` for ``config``; ``ConfigError`` when ``tritonclient`` is missing."""
    try:
        from kernos.plugins.triton_server import TritonServer
    except ImportError as exc:
        from kernos.kernel.errors import ConfigError

        raise ConfigError(
            f"kind 'triton' needs the 'triton' extra ({exc}): pip install 'kernos[triton]'"
        ) from exc
    return TritonServer(config)


@hookimpl
def register_model_servers(register: Callable[[ModelServerKind], None]) -> None:
    """Register the ``triton`` kind: any server speaking the KServe v2 protocol."""
    from kernos.kernel.model_servers import ModelServerKind

    register(
        ModelServerKind(
            name="triton",
            build=build_triton,
            description="KServe v2 inference protocol over HTTP or gRPC (Triton Inference "
            "Server, MLServer, KServe) for registered classic models",
        )
    )


__all__ = ["build_triton", "register_model_servers"]
