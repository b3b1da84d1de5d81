"""``TritonServer``: the KServe v2 inference protocol over HTTP or gRPC with ``tritonclient``.

Inputs are typed from their numpy arrays (``FP32``, ``INT64``, ...); HTTP sends them as JSON
(every KServe v2 server reads it), gRPC as raw tensor contents. The model version asked for
is the registry's version string. Each call is a ``CLIENT`` span ``kernos.model.infer
{model}`` under the syscall's span, and its ``traceparent`` goes out as an HTTP header or gRPC
metadata. Failures become the kernel's errors: a server that cannot be reached, times out or
is overloaded → ``BackendError`` (retryable); a model or version it does not serve →
``NotFound``; inputs it refuses → ``InvalidInput``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import numpy as np

from kernos.kernel.errors import BackendError, InvalidInput, KernosError, NotFound
from kernos.kernel.model_servers import ModelServer, ModelServerConfig, model_client_span

_RETRYABLE_HTTP = {"408", "429", "502", "503", "504"}
_RETRYABLE_GRPC = {
    "StatusCode.UNAVAILABLE",
    "StatusCode.DEADLINE_EXCEEDED",
    "StatusCode.RESOURCE_EXHAUSTED",
    "StatusCode.CANCELLED",
}


class TritonServer(ModelServer):
    """One KServe v2 server (``config.protocol`` says HTTP or gRPC); the client connects on
    first use, in the kernel's event loop."""

    def __init__(self, config: ModelServerConfig) -> None:
        super().__init__(config)
        self._client: Any = None
        self._lock = asyncio.Lock()

    async def _connect(self) -> Any:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                if self.config.protocol == "grpc":
                    import tritonclient.grpc.aio as grpcclient  # type: ignore[import-untyped]

                    self._client = grpcclient.InferenceServerClient(
                        url=self.config.address, ssl=self.config.tls
                    )
                else:
                    import tritonclient.http.aio as httpclient  # type: ignore[import-untyped]

                    self._client = httpclient.InferenceServerClient(
                        url=self.config.address,
                        ssl=self.config.tls,
                        conn_timeout=self.config.timeout,
                    )
        return self._client

    async def infer(self, model: str, version: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Run ``model@version`` on the server; the outputs by name, as numpy arrays."""
        protocol = self.config.protocol
        with model_client_span(self, model=model, version=version, protocol=protocol) as headers:
            client = await self._connect()
            try:
                return await asyncio.wait_for(
                    self._infer(client, model, version, inputs, headers), self.config.timeout
                )
            except TimeoutError:
                raise BackendError(
                    f"model server {self.name!r} did not answer {model}@{version} within "
                    f"{self.config.timeout:g} s (timeout in [[model_servers]])",
                    retryable=True,
                ) from None
            except KernosError:
                raise
            except Exception as exc:
                raise self._error(exc, model, version) from exc

    async def _infer(
        self,
        client: Any,
        model: str,
        version: str,
        inputs: Mapping[str, Any],
        headers: dict[str, str],
    ) -> dict[str, Any]:
        if self.config.protocol == "grpc":
            import tritonclient.grpc.aio as grpcclient

            grpc_inputs = []
            for name, value in inputs.items():
                array, datatype = _typed(name, value)
                item = grpcclient.InferInput(name, list(array.shape), datatype)
                item.set_data_from_numpy(array)
                grpc_inputs.append(item)
            result = await client.infer(
                model,
                grpc_inputs,
                model_version=version,
                headers=headers,
                client_timeout=self.config.timeout,
            )
            names = [o.name for o in result.get_response().outputs]
        else:
            import tritonclient.http.aio as httpclient

            http_inputs = []
            for name, value in inputs.items():
                array, datatype = _typed(name, value)
                item = httpclient.InferInput(name, list(array.shape), datatype)
                item.set_data_from_numpy(array, binary_data=False)
                http_inputs.append(item)
            # JSON said explicitly (tritonclient leaves the type out, and FastAPI-based
            # servers such as MLServer then read the body as a string); identity, because
            # tritonclient reads error bodies without decompressing them.
            sent = {**headers, "Content-Type": "application/json", "Accept-Encoding": "identity"}
            result = await client.infer(model, http_inputs, model_version=version, headers=sent)
            names = [o["name"] for o in result.get_response().get("outputs", [])]
        return {name: result.as_numpy(name) for name in names}

    def _error(self, exc: Exception, model: str, version: str) -> KernosError:
        """The kernel's error for a failed call."""
        from tritonclient.utils import InferenceServerException  # type: ignore[import-untyped]

        where = f"model server {self.name!r} ({self.config.protocol}://{self.config.address})"
        if isinstance(exc, InferenceServerException):
            status = str(exc.status() or "")
            message = _shorten(exc.message() or str(exc))
            if status in ("404", "StatusCode.NOT_FOUND") or (
                "not found" in message.lower() and not status.startswith("5")
            ):
                return NotFound(f"{where} does not serve {model}@{version}: {message}")
            if status in _RETRYABLE_HTTP or status in _RETRYABLE_GRPC:
                return BackendError(f"{where} is unavailable ({status}): {message}", retryable=True)
            if status in ("400", "422", "StatusCode.INVALID_ARGUMENT"):
                return InvalidInput(f"{where} refused the inputs of {model}@{version}: {message}")
            code = int(status) if status.isdigit() else None
            return BackendError(
                f"{where} failed {model}@{version} ({status or 'no status'}): {message}",
                retryable=False,
                status=code,
            )
        # Connection refused or reset, DNS: the server is not there (aiohttp, OSError).
        return BackendError(
            f"{where} cannot be reached: {type(exc).__name__}: {exc}; is it running?",
            retryable=True,
        )

    async def health(self) -> None:
        """Return when the server says it is live and ready; ``BackendError`` otherwise."""
        client = await self._connect()
        try:
            ready = await asyncio.wait_for(client.is_server_ready(), self.config.timeout)
        except TimeoutError:
            raise BackendError(
                f"model server {self.name!r} did not answer its readiness check", retryable=True
            ) from None
        except Exception as exc:
            raise self._error(exc, "(health)", "-") from exc
        if not ready:
            raise BackendError(f"model server {self.name!r} is not ready", retryable=True)

    async def close(self) -> None:
        """Close the client's connections."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def _shorten(text: str, limit: int = 400) -> str:
    """A server's error message, cut short: some echo the whole request body."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _typed(name: str, value: Any) -> tuple[Any, str]:
    """``value`` as a contiguous numpy array and its KServe v2 datatype; ``InvalidInput``
    for an array type the protocol has no name for."""
    from tritonclient.utils import np_to_triton_dtype

    array = np.ascontiguousarray(value)
    datatype = np_to_triton_dtype(array.dtype)
    if datatype is None:
        raise InvalidInput(f"input {name!r} has type {array.dtype}, which KServe v2 cannot send")
    return array, str(datatype)


__all__ = ["TritonServer"]
