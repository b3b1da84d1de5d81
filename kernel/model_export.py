"""Export a verified model version into a KServe v2 model repository (Triton and MLServer).

``export_model`` verifies the version through the registry (a failure is audited there and
refuses the export with ``CheckFailed``), then writes the very bytes whose SHA-256 it checked:

    REPOSITORY/NAME/config.pbtxt                  Triton: ONNX Runtime backend, every version
    REPOSITORY/NAME/VERSION/model.onnx            the artifact
    REPOSITORY/NAME/VERSION/model-settings.json   MLServer: name, version, custom runtime

Triton loads only numeric version folders; MLServer serves any version string. Files are
written to a temporary name and renamed, so a server scanning the repository never reads a
half-written model.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kernos.kernel.errors import CheckFailed, InvalidInput

if TYPE_CHECKING:
    from kernos.kernel.identity import Principal
    from kernos.kernel.registry import ModelRegistry

MLSERVER_IMPLEMENTATION = "kernos_mlserver_onnx.OnnxModel"
"""The MLServer runtime ``model-settings.json`` names by default: the small ONNX runtime in
``tests/kserve/kernos_mlserver_onnx.py`` (MLServer has no ONNX runtime of its own); put its
folder on MLServer's ``PYTHONPATH``."""

_TRITON_TYPES = {
    "tensor(float)": "TYPE_FP32",
    "tensor(double)": "TYPE_FP64",
    "tensor(float16)": "TYPE_FP16",
    "tensor(int8)": "TYPE_INT8",
    "tensor(int16)": "TYPE_INT16",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(bool)": "TYPE_BOOL",
    "tensor(string)": "TYPE_STRING",
}


@dataclass(frozen=True, slots=True)
class Export:
    """What ``export_model`` wrote."""

    name: str
    version: str
    sha256: str
    repository: str
    files: tuple[str, ...]
    triton_ready: bool
    """Whether Triton will load it (its version folders must be numbers)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "repository": self.repository,
            "files": list(self.files),
            "triton_ready": self.triton_ready,
        }


async def export_model(
    registry: ModelRegistry,
    name: str,
    version: str | None,
    *,
    repository: Path | str,
    by: Principal | None = None,
    implementation: str = MLSERVER_IMPLEMENTATION,
) -> Export:
    """Write ``name@version`` (default: the live one, else the newest) into ``repository`` (an
    absolute path on the kernel's machine). ``InvalidInput`` for a relative path or a model
    that is not ONNX, ``NotFound`` for an unknown one, ``CheckFailed`` when it fails
    verification or its file changes while being exported."""
    root = Path(repository)
    if not root.is_absolute():
        raise InvalidInput(
            f"repository {str(repository)!r} is relative; give an absolute path on the kernel's "
            "machine"
        )
    model = await registry.get(name, version)
    if model.kind.value != "onnx":
        raise InvalidInput(f"model {model.ref} is {model.kind.value}; only ONNX models export")
    result = await registry.verify(model.name, model.version, by=by)
    if not result.ok:
        raise CheckFailed(f"export of {model.ref} refused: it failed verification: {result.detail}")
    body = await asyncio.to_thread(Path(model.path).read_bytes)
    if hashlib.sha256(body).hexdigest() != model.sha256:
        raise CheckFailed(f"model {model.ref} changed on disk while it was being exported")
    files = await asyncio.to_thread(
        write_repository, root, model.name, model.version, body, implementation=implementation
    )
    return Export(
        name=model.name,
        version=model.version,
        sha256=model.sha256,
        repository=str(root),
        files=tuple(str(f) for f in files),
        triton_ready=model.version.isdigit(),
    )


def write_repository(
    root: Path,
    name: str,
    version: str,
    body: bytes,
    *,
    implementation: str = MLSERVER_IMPLEMENTATION,
) -> list[Path]:
    """Write ``body`` as ``name@version`` into the repository at ``root`` (no verification:
    ``export_model`` verifies first); the files written. ``InvalidInput`` if it cannot."""
    folder = root / name / version
    try:
        folder.mkdir(parents=True, exist_ok=True)
        config = triton_config(name, body)
        settings = {
            "name": name,
            "implementation": implementation,
            "parameters": {"version": version, "uri": "./model.onnx"},
        }
        written = [
            _replace(folder / "model.onnx", body),
            _replace(folder / "model-settings.json", json.dumps(settings, indent=2).encode()),
            _replace(root / name / "config.pbtxt", config.encode()),
        ]
    except OSError as exc:
        raise InvalidInput(f"cannot write to {root}: {exc.strerror or exc}") from None
    return written


def _replace(path: Path, data: bytes) -> Path:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def triton_config(name: str, body: bytes) -> str:
    """Triton's ``config.pbtxt`` for the ONNX model ``body``: the ONNX Runtime backend, no
    implicit batch dimension, every version folder served, inputs and outputs as the model
    declares them (a dynamic dimension is ``-1``)."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    try:
        session = ort.InferenceSession(body, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise InvalidInput(f"model {name} is not a loadable ONNX model: {exc}") from None

    def tensors(items: Any) -> str:
        lines = []
        for item in items:
            kind = _TRITON_TYPES.get(item.type)
            if kind is None:
                raise InvalidInput(
                    f"model {name}: {item.name} has type {item.type}, not for Triton"
                )
            dims = ", ".join(str(d) if isinstance(d, int) and d >= 0 else "-1" for d in item.shape)
            lines.append(f'  {{ name: "{item.name}", data_type: {kind}, dims: [ {dims} ] }}')
        return ",\n".join(lines)

    return (
        f'name: "{name}"\n'
        'backend: "onnxruntime"\n'
        "max_batch_size: 0\n"
        "version_policy: { all: {} }\n"
        f"input [\n{tensors(session.get_inputs())}\n]\n"
        f"output [\n{tensors(session.get_outputs())}\n]\n"
    )


__all__ = [
    "MLSERVER_IMPLEMENTATION",
    "Export",
    "export_model",
    "triton_config",
    "write_repository",
]
