"""Export a trained classifier to TFLite. One table of variants; each export is logged with its
time and size. The int8 variant is what kiosks run; float32 is kept for the int8-vs-float report."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from training.nets import logit_model
from training.tf_setup import tf


def _float32(converter: tf.lite.TFLiteConverter, _: Callable[[], Iterator]) -> None:
    del converter  # defaults: float32 in, float32 out


def _int8(converter: tf.lite.TFLiteConverter, representative: Callable[[], Iterator]) -> None:
    """Full-integer: every op int8, uint8 pixels in, int8 logit out (dequantized by the kiosk)."""
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.uint8
    converter.inference_output_type = tf.int8


EXPORT_VARIANTS: dict[str, tuple[str, Callable]] = {
    # name: (file suffix, converter setup)
    "float32": ("_float32.tflite", _float32),
    "int8": ("_int8.tflite", _int8),
}


def export_variants(
    model: tf.keras.Model, calibration: np.ndarray, out_stem: Path
) -> dict[str, Path]:
    """Convert `model` (ending in a sigmoid) at its logit; `calibration` are uint8 crops (N, H, W)."""
    exported = logit_model(model)

    def representative() -> Iterator[list[np.ndarray]]:
        for crop in calibration:
            yield [crop.astype(np.float32)[None, :, :, None]]

    paths = {}
    for name, (suffix, configure) in EXPORT_VARIANTS.items():
        start = time.perf_counter()
        converter = tf.lite.TFLiteConverter.from_keras_model(exported)
        configure(converter, representative)
        path = out_stem.parent / f"{out_stem.name}{suffix}"
        path.write_bytes(converter.convert())
        print(
            f"export {name}: {path.stat().st_size / 1024:.0f} KiB in "
            f"{time.perf_counter() - start:.1f} s -> {path}",
            flush=True,
        )
        paths[name] = path
    return paths
