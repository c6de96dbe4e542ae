"""Feeding and reading TFLite tensors whatever their type (float32, uint8, int8)."""

from __future__ import annotations

from typing import Any

import numpy as np


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
