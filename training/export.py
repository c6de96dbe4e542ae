"""Keras -> TFLite for every model of the project: one table of variants (float32, float16, int8),
each conversion logged with its time and size, and metadata embedded in every file.

The metadata is a JSON object (model name, variant, input shape, export date, git revision, plus
what the caller adds) stored as a flatbuffer `metadata` entry named `idkiosk`, as TFLite's own
`min_runtime_version` is: interpreters ignore it, so the kiosk loads the file unchanged, and
`read_metadata` tells where a file on a kiosk came from without the manifest.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from kiosk.contract.manifest import git_revision
from training.nets import logit_model
from training.paths import REPO
from training.tf_setup import tf

logger = logging.getLogger(__name__)

METADATA_NAME = "idkiosk"
Representative = Callable[[], Iterator[list[np.ndarray]]]


def _float32(converter: tf.lite.TFLiteConverter, _: Representative | None, __: bool) -> None:
    del converter  # defaults: float32 weights and ops


def _float16(converter: tf.lite.TFLiteConverter, _: Representative | None, __: bool) -> None:
    """float16 weights, float32 compute and tensors in and out: half the size, no calibration."""
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _int8(
    converter: tf.lite.TFLiteConverter, representative: Representative | None, integer_io: bool
) -> None:
    """Every op int8, calibrated on `representative`. With `integer_io` the tensors in and out are
    integers too (uint8 pixels in, int8 logit out, dequantized by the kiosk); without it they
    stay float32 (SR: its output is an image, not a score)."""
    if representative is None:
        raise ValueError("the int8 export needs a representative dataset for calibration")
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if integer_io:
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.int8


@dataclass(frozen=True)
class ExportVariant:
    suffix: str  # file name suffix of the exported file
    configure: Callable[[tf.lite.TFLiteConverter, Representative | None, bool], None]


EXPORT_VARIANTS: dict[str, ExportVariant] = {
    "float32": ExportVariant("_float32.tflite", _float32),
    "float16": ExportVariant("_float16.tflite", _float16),
    "int8": ExportVariant("_int8.tflite", _int8),
}


def convert(
    model: tf.keras.Model,
    variant: str,
    name: str,
    representative: Representative | None = None,
    integer_io: bool = True,
    **metadata: Any,
) -> bytes:
    """TFLite bytes of `model` as `variant` of EXPORT_VARIANTS, with the metadata embedded.

    `name` is the model's manifest name; `metadata` adds JSON-serialisable facts to the embedded
    record (the caller's preprocessing, labels...).
    """
    if variant not in EXPORT_VARIANTS:
        raise ValueError(f"unknown export variant {variant!r}; known: {', '.join(EXPORT_VARIANTS)}")
    start = time.perf_counter()
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    EXPORT_VARIANTS[variant].configure(converter, representative, integer_io)
    record = {
        "name": name,
        "variant": variant,
        "input_shape": [-1 if size is None else int(size) for size in model.input_shape],
        "exported": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_revision": git_revision(REPO),
        **metadata,
    }
    content = embed_metadata(converter.convert(), record)
    logger.info(
        "export %s %s: %.0f KiB in %.1f s",
        name,
        variant,
        len(content) / 1024,
        time.perf_counter() - start,
    )
    return content


def embed_metadata(content: bytes, record: dict[str, Any]) -> bytes:
    """`content` with `record` as JSON in the `idkiosk` metadata entry (replacing an old one)."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    model.metadata = [m for m in model.metadata or [] if _entry_name(m) != METADATA_NAME]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(record, sort_keys=True).encode(), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def read_metadata(content: bytes) -> dict[str, Any] | None:
    """The embedded `idkiosk` record of a TFLite file, or None for a file exported without one."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(content))
    for entry in model.metadata or []:
        if _entry_name(entry) == METADATA_NAME:
            return json.loads(bytes(model.buffers[entry.buffer].data).decode())
    return None


def _entry_name(entry: schema.MetadataT) -> str:
    name = entry.name
    return name.decode() if isinstance(name, bytes) else str(name)


def export_variants(
    model: tf.keras.Model, calibration: np.ndarray, out_stem: Path, **metadata: Any
) -> dict[str, Path]:
    """float32 and int8 files of a classifier ending in a sigmoid, exported at its logit;
    `calibration` are uint8 inputs (N, H, W) or (N, H, W, C). Written as `<out_stem><suffix>`."""
    exported = logit_model(model)

    def representative() -> Iterator[list[np.ndarray]]:
        for sample in calibration:
            pixels = sample.astype(np.float32)
            yield [(pixels[..., None] if pixels.ndim == 2 else pixels)[None]]

    paths = {}
    for variant in ("float32", "int8"):
        path = out_stem.parent / f"{out_stem.name}{EXPORT_VARIANTS[variant].suffix}"
        path.write_bytes(convert(exported, variant, out_stem.name, representative, **metadata))
        paths[variant] = path
    return paths
