"""One place that finds a TFLite interpreter: ai_edge_litert, then tflite_runtime, then TF Lite.

The kiosk never imports TensorFlow itself; the last fallback only exists for desktops that have
TensorFlow but neither runtime package.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

_BACKENDS = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")


def _interpreter_class() -> type:
    for module_name in _BACKENDS:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        return module.Interpreter
    raise ImportError(
        "no TFLite runtime found: install ai-edge-litert (pip install ai-edge-litert)"
    )


def make_interpreter(model: Path | bytes, num_threads: int = 1) -> Any:
    """Create an interpreter for a .tflite file (or its bytes); tensors are not yet allocated."""
    cls = _interpreter_class()
    if isinstance(model, bytes):
        return cls(model_content=model, num_threads=num_threads)
    return cls(model_path=str(model), num_threads=num_threads)
