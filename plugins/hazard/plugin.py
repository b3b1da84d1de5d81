"""The ``hazard`` plugin's hooks: the governed tool ``hazard_classify`` (``.tool``), and
:func:`ensure_model`, which trains and registers the classifier when a kernel lacks it.
Imports stay light here: ``kernos --help`` loads every built-in plugin."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from kernos.kernel.errors import KernosError, NotFound
from kernos.kernel.hookspecs import hookimpl
from kernos.plugins.hazard import MODEL_NAME

if TYPE_CHECKING:
    from kernos.kernel.catalog import ToolSpec
    from kernos.kernel.identity import Principal
    from kernos.kernel.kernel import Kernel
    from kernos.kernel.model_records import ModelVersion


@hookimpl
def register_tools(register: Callable[[ToolSpec], None]) -> None:
    """``hazard_classify`` (defined in ``.tool``: pydantic loads only when tools are built)."""
    from kernos.plugins.hazard.tool import HAZARD_TOOL

    register(HAZARD_TOOL)


async def ensure_model(
    kernel: Kernel, *, by: Principal, version: str = "1", seed: int = 1, days: int = 60
) -> ModelVersion:
    """The live hazard classifier of ``kernel``'s registry; when there is none, train one on
    the simulated city (a few seconds), register it under ``KERNOS_HOME/models`` and promote
    it live. ``KernosError`` if the ``hazard`` extra (onnx) is missing."""
    import asyncio

    from kernos.kernel.model_records import ModelKind, ModelStage

    try:
        found = await kernel.models.get(MODEL_NAME)
    except NotFound:
        found = None
    if found is not None and found.stage is ModelStage.LIVE:
        return found
    if found is None:
        try:
            from kernos.plugins.hazard.train import train
        except ImportError as exc:  # pragma: no cover - numpy is a core dependency
            raise KernosError(f"cannot train the hazard classifier: {exc}") from exc
        out = Path(kernel.settings.home) / "models" / f"{MODEL_NAME}-{version}.onnx"
        try:
            report = await asyncio.to_thread(train, out, seed=seed, days=days)
        except ModuleNotFoundError as exc:
            raise KernosError(
                f"training the hazard classifier needs the 'hazard' extra ({exc.name} is "
                "missing): pip install 'kernos[hazard]'"
            ) from exc
        found = await kernel.models.register(
            out,
            name=MODEL_NAME,
            version=version,
            registered_by=by,
            kind=ModelKind.ONNX,
            provenance={
                "trained_by": "kernos.plugins.hazard.train",
                "seed": str(seed),
                "days": str(days),
                "data": "simulated city",
                "held_out_recall": str(report["held_out"]["recall"]),
                "held_out_precision": str(report["held_out"]["precision"]),
            },
        )
    return await kernel.models.promote(found.ref, "live", by=by)


__all__ = ["ensure_model", "register_tools"]
