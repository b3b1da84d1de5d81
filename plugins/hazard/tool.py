"""The governed tool ``hazard_classify``: the registered hazard classifier, served through the
kernel's model runtime (canary and shadow versions honoured)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from kernos.kernel.catalog import ToolSpec
from kernos.kernel.errors import KernosError
from kernos.plugins.hazard import FEATURES, MODEL_NAME

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
    # As a syscall is asked: the owner, the agent and the processes above may all say no.
    await context.processes.authorize_process(call.process, f"model:{MODEL_NAME}", "call")
    rows = [r if isinstance(r, BinReading) else BinReading.model_validate(r) for r in readings]
    features = np.array([[getattr(r, f) for f in FEATURES] for r in rows], dtype=np.float32)
    answer = await context.models.infer(MODEL_NAME, {"features": features}, key=call.key)
    # The inputs are watched for drift (a failing sensor, a recalibration): model.drift events.
    await context.models.observe(
        MODEL_NAME, [{f: getattr(r, f) for f in FEATURES} for r in rows], tenant=call.process.tenant
    )
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


__all__ = ["HAZARD_TOOL", "THRESHOLD", "BinReading", "ClassifyArgs", "hazard_classify"]
