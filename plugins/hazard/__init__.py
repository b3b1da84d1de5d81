"""The ``hazard`` plugin: a classifier of hazardous waste in bins, trained on the SIMULATED city.

:mod:`.train` builds a labelled set from the simulator (readings while a bin holds hazardous
waste are positives), fits a logistic regression with numpy and writes it as an ONNX file,
which is registered in the model registry (its digest recorded, verified before every load).
:mod:`.plugin` gives agents the governed tool ``hazard_classify``, which runs the registered
model through the kernel's model runtime (canary and shadow versions honoured).

The ONNX model's contract is the edge agent's (``kernos.edge.hazard``): one float32 input of
shape ``[N, 3]`` — level (fraction), temperature (°C), VOC (ppm) — and the hazard probability
as its first output, shape ``[N]``.
"""

from __future__ import annotations

MODEL_NAME = "hazard-classifier"
"""The registry name of the hazard classifier."""

FEATURES = ("level", "temp_c", "voc_ppm")
"""The model's input columns, in order."""

__all__ = ["FEATURES", "MODEL_NAME"]
