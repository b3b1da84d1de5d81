"""The ``hazard`` plugin's hooks: the governed tool ``hazard_classify``, and
:func:`ensure_model`, which trains and registers the classifier when a kernel lacks it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from kernos.kernel.catalog import ToolSpec
from kernos.kernel.errors import KernosError, NotFound
from kernos.kernel.hookspecs import hookimpl
from kernos.plugins.hazard import FEATURES, MODEL_NAME

if TYPE_CHECKING:
    from kernos.kernel.identity import Principal
    from kernos.kernel.kernel import Kernel
    from kernos.kernel.model_records import ModelVersion

THRESHOLD = 0.5
"""Probability from which a reading is flagged hazardous."""

MAX_READINGS = 10_000
"""Most readings one call classifies."""


class BinReading(BaseModel):
    """One bin's latest reading."""

    bin: int = Field(ge=0, description="The bin id.")
    level: float = Field(ge=-0.5, le=2.0, description="Fill level, fraction of capacity.")
    temp_c: float = Field(ge=-60, le=200, description="Temperature inside the bin, °C.")
    voc_ppm: float = Field(ge=0, le=10_000, description="Volatile organic compounds, ppm.")


class ClassifyArgs(BaseModel):
    """Arguments of ``hazard_classify``."""

    readings: list[BinReading] = Field(min_length=1, max_length=MAX_READINGS)


async def hazard_classify(readings: list[Any]) -> dict[str, Any]:
    """P(hazardous waste) per reading from the registered classifier (its live version, or
    the canary for this call's share; shadow versions see the same readings)."""
    import numpy as np

    from kernos.kernel.governed import current_process_context, current_syscall

    context = current_process_context()
    call = current_syscall()
    if context.models is None or context.processes is None or call is None:
        raise KernosError("this kernel serves no models to tools")
    await context.processes.authorize(call.process.owner, f"model:{MODEL_NAME}", "call")
    rows = [r if isinstance(r, BinReading) else BinReading.model_validate(r) for r in readings]
    features = np.array([[getattr(r, f) for f in FEATURES] for r in rows], dtype=np.float32)
    answer = await context.models.infer(MODEL_NAME, {"features": features}, key=call.key)
    probability = np.asarray(answer.outputs["hazard_probability"], dtype=np.float64).reshape(-1)
    return {
        "model": f"{answer.name}@{answer.version}",
        "canary": answer.canary,
        "threshold": THRESHOLD,
        "bins": [
            {"bin": r.bin, "p": round(float(p), 4), "hazard": bool(p >= THRESHOLD)}
            for r, p in zip(rows, probability.tolist(), strict=True)
        ],
    }


HAZARD_TOOL = ToolSpec(
    name="hazard_classify",
    description=(
        "Classify bins' latest readings (level, temperature, VOC) as hazardous waste or not, "
        "with the registered hazard classifier. Returns a probability and a flag per bin."
    ),
    func=hazard_classify,
    args_schema=ClassifyArgs,
    timeout=30.0,
)
"""The governed classifier tool."""


@hookimpl
def register_tools(register: Callable[[ToolSpec], None]) -> None:
    """``hazard_classify``."""
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


__all__ = ["HAZARD_TOOL", "THRESHOLD", "ClassifyArgs", "ensure_model", "hazard_classify"]
