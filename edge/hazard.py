"""On-device hazard classification: a rule by default, an ONNX model when one is given.

A classifier looks at readings in batches (one call per batch, not per reading: an ONNX
session call has a fixed cost) and says, per reading, whether hazardous waste is suspected.

- :class:`RuleHazard` (the default): VOC at or above ``voc_ppm`` or temperature at or above
  ``temp_c``. The simulated city's hazardous incidents add 50 ppm VOC and 25 °C, while a
  normal bin stays below about 5 ppm and 30 °C, so the rule separates them.
- :class:`OnnxHazard` (``kernos-edge run --hazard-model PATH``): loads the ONNX file with
  onnxruntime. The model takes one float32 input of shape ``[N, 3]`` — per reading the level
  (fraction of capacity), the temperature (°C) and VOC (ppm), in that order — and returns, as
  its first output, the probability of a hazard per reading, shaped ``[N]``, ``[N, 1]``, or
  ``[N, 2]`` (then column 1 is the hazard class). A reading is suspect at ``threshold`` or
  above.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from kernos.edge.errors import EdgeConfigError

__all__ = ["HazardClassifier", "OnnxHazard", "RuleHazard", "load_hazard_classifier"]


class HazardClassifier(Protocol):
    """Says, for a batch of readings, which ones suggest hazardous waste."""

    name: str
    """What it is, for the stats line (``rule``, ``onnx:model.onnx``)."""

    def suspects(
        self, level: Sequence[float], temp_c: Sequence[float], voc_ppm: Sequence[float]
    ) -> list[bool]:
        """One flag per reading (the sequences have equal lengths)."""
        ...


class RuleHazard:
    """Hazard suspected when VOC reaches ``voc_ppm`` or the temperature reaches ``temp_c``."""

    name = "rule"

    def __init__(self, *, voc_ppm: float = 20.0, temp_c: float = 40.0) -> None:
        self.voc_ppm = voc_ppm
        self.temp_c = temp_c

    def suspects(
        self, level: Sequence[float], temp_c: Sequence[float], voc_ppm: Sequence[float]
    ) -> list[bool]:
        """Plain comparisons; NaN compares false, so a missing value never suspects."""
        v_limit, t_limit = self.voc_ppm, self.temp_c
        return [v >= v_limit or t >= t_limit for t, v in zip(temp_c, voc_ppm, strict=True)]


class OnnxHazard:
    """An ONNX model run with onnxruntime on the CPU (see the module docstring for its shape)."""

    def __init__(self, path: str | os.PathLike[str], *, threshold: float = 0.5) -> None:
        import numpy as np
        import onnxruntime  # type: ignore[import-untyped]

        self._np = np
        self.path = Path(path)
        self.threshold = threshold
        self.name = f"onnx:{self.path.name}"
        if not self.path.is_file():
            raise EdgeConfigError(f"no hazard model at {self.path}")
        try:
            self._session = onnxruntime.InferenceSession(
                str(self.path), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise EdgeConfigError(f"cannot load hazard model {self.path}: {exc}") from exc
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise EdgeConfigError(
                f"hazard model {self.path} must take one input [N, 3], it takes {len(inputs)}"
            )
        self._input = inputs[0].name

    def suspects(
        self, level: Sequence[float], temp_c: Sequence[float], voc_ppm: Sequence[float]
    ) -> list[bool]:
        """Run the model once on the whole batch."""
        np = self._np
        if not len(level):
            return []
        features = np.column_stack([level, temp_c, voc_ppm]).astype(np.float32)
        # NaN rows are dropped by the filter anyway; zeros keep the model's arithmetic clean.
        features = np.nan_to_num(features, nan=0.0, posinf=0.0, neginf=0.0)
        output: Any = self._session.run(None, {self._input: features})[0]
        scores = np.asarray(output, dtype=np.float64)
        if scores.ndim == 2 and scores.shape[1] == 2:
            scores = scores[:, 1]
        scores = scores.reshape(-1)
        if scores.shape[0] != features.shape[0]:
            raise EdgeConfigError(
                f"hazard model {self.path} returned {scores.shape[0]} scores "
                f"for {features.shape[0]} readings"
            )
        flags: list[bool] = (scores >= self.threshold).tolist()
        return flags


def load_hazard_classifier(path: str | os.PathLike[str] | None) -> HazardClassifier:
    """The ONNX model at ``path``, or the rule when ``path`` is ``None``."""
    return RuleHazard() if path is None else OnnxHazard(path)
