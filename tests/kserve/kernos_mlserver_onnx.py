"""An MLServer runtime that serves an ONNX file with onnxruntime (MLServer ships none).

Runs inside MLServer's own virtualenv (``.venv-kserve``), never in the kernel's:
``model-settings.json`` names it as ``kernos_mlserver_onnx.OnnxModel`` (what ``kernos models
export`` writes) and ``scripts/kserve_server.sh`` puts this folder on MLServer's path. When
``KERNOS_KSERVE_HEADER_LOG`` names a file, the ``traceparent`` each request arrived with is
appended to it, so tests can see what went over the wire.
"""

from __future__ import annotations

import os

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.codecs.numpy import to_datatype
from mlserver.errors import InferenceError
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput
from mlserver.utils import get_model_uri


class OnnxModel(MLModel):
    """One version of one ONNX model."""

    async def load(self) -> bool:
        """Open the file the settings' ``uri`` names (relative to model-settings.json)."""
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        uri = await get_model_uri(self._settings)
        self._session = ort.InferenceSession(uri, options, providers=["CPUExecutionProvider"])
        self._inputs = {i.name for i in self._session.get_inputs()}
        self._outputs = [o.name for o in self._session.get_outputs()]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Run the model on the request's tensors; every output, by name."""
        _log_traceparent(payload)
        feeds = {item.name: NumpyCodec.decode_input(item) for item in payload.inputs}
        if set(feeds) != self._inputs:  # a 400 the client can act on, not a 500
            raise InferenceError(
                f"{self.name} takes inputs {sorted(self._inputs)}, got {sorted(feeds)}"
            )
        values = self._session.run(self._outputs, feeds)
        # The model's own shapes (NumpyCodec would make a [N] output [N, 1]).
        outputs = [
            ResponseOutput(
                name=name,
                shape=list(value.shape),
                datatype=to_datatype(value.dtype),
                data=value.reshape(-1).tolist(),
            )
            for name, value in zip(self._outputs, values, strict=True)
        ]
        return InferenceResponse(model_name=self.name, model_version=self.version, outputs=outputs)


def _log_traceparent(payload: InferenceRequest) -> None:
    path = os.environ.get("KERNOS_KSERVE_HEADER_LOG")
    if not path:
        return
    headers = getattr(payload.parameters, "headers", None) or {}
    found = {k.lower(): v for k, v in headers.items()}.get("traceparent", "-")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(f"{found}\n")
