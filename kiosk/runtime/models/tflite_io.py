"""Feeding and reading TFLite tensors whatever their type (float32, uint8, int8)."""

from __future__ import annotations

from typing import Any

import numpy as np

from kiosk.runtime.models.fusion import sigmoid
from kiosk.runtime.models.litert import make_interpreter


def quantize(values: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    """Real values -> the input tensor's dtype with its (scale, zero point)."""
    dtype = details["dtype"]
    if dtype == np.float32:
        return values.astype(np.float32)
    scale, zero_point = details["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(raw: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    if raw.dtype == np.float32:
        return raw
    scale, zero_point = details["quantization"]
    return (raw.astype(np.float32) - zero_point) * scale


class Model:
    """One interpreter with a single input and output, allocated once and reused per capture."""

    def __init__(self, interpreter: Any) -> None:
        self._interpreter = interpreter
        self._interpreter.allocate_tensors()
        self._input = interpreter.get_input_details()[0]
        self._output = interpreter.get_output_details()[0]
        self.input_shape = tuple(int(v) for v in self._input["shape"])

    def __call__(self, values: np.ndarray) -> np.ndarray:
        """Real-valued input of `input_shape` -> real-valued output."""
        if values.shape != self.input_shape:
            raise ValueError(f"input of shape {values.shape}, model expects {self.input_shape}")
        self._interpreter.set_tensor(self._input["index"], quantize(values, self._input))
        self._interpreter.invoke()
        return dequantize(self._interpreter.get_tensor(self._output["index"]), self._output)


class BinaryClassifier:
    """A classifier with one logit out: uint8 grayscale crop (H, W) -> probability of the positive
    class. The int8 logit keeps score resolution near 0 and 1, where thresholds sit."""

    def __init__(self, content: bytes, num_threads: int = 1) -> None:
        self.model = Model(make_interpreter(content, num_threads=num_threads))
        self.input_size = self.model.input_shape[1:3]

    def logit(self, crop: np.ndarray) -> float:
        if crop.shape != self.input_size:
            raise ValueError(f"crop of shape {crop.shape}, model expects {self.input_size}")
        return float(self.model(crop.astype(np.float32)[None, :, :, None]).reshape(-1)[0])

    def score(self, crop: np.ndarray) -> float:
        return sigmoid(self.logit(crop))
