"""JPEG forensics numbers: the shipped detector's latency on a 640x480 capture (1 thread, int8,
through the kiosk check), its manifest metrics, and the anti-forensic generator's size and
latency per 256x256 image (Keras, CPU, 1 thread; needs the training extras and a trained GAN).

    .venv/bin/python bench/bench_jpeg.py [--runs 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from kiosk.config import load_config  # noqa: E402
from kiosk.runtime.forensics.capture import Artifacts, Capture  # noqa: E402
from kiosk.runtime.forensics.jpeg import MODEL_NAME, make_jpeg_check  # noqa: E402
from kiosk.runtime.models.registry import ModelRegistry  # noqa: E402
from training.timing import median_ms  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    registry = ModelRegistry(REPO / "models")
    check = make_jpeg_check(registry, load_config())
    if check is None:
        raise SystemExit(f"{MODEL_NAME} is not in models/manifest.json: run `make jpeg-forensics`")
    entry = registry.entry(MODEL_NAME)
    capture = Capture(np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8))
    detector_ms = median_ms(lambda: check.run(capture, Artifacts()), args.runs)
    captures = entry.extra["metrics"]["test_captures_int8"]
    rows = [
        (
            "detector file",
            f"{entry.file}, {(REPO / 'models' / entry.file).stat().st_size / 1024:.0f} KiB int8",
        ),
        (
            "detector latency, 640x480 capture (1 thread)",
            f"{detector_ms:.1f} ms ({check.run(capture, Artifacts())['patches']} patches)",
        ),
        ("threshold (2 % false alarms, validation patches)", f"{entry.threshold:.4f}"),
        (
            "held-out captures: false alarms on never-JPEG",
            f"{100 * captures['uncompressed_false_alarm']:.1f} %",
        ),
    ]
    rows += [
        (f"held-out captures: {m} QF50 detected", f"{100 * captures[f'{m}_qf50_detected']:.1f} %")
        for m in ("J", "F1", "F2", "GAN")
    ]
    try:
        from training.jpeg.gan import load_generator
        from training.tf_setup import tf
    except ImportError:
        rows.append(("generator", "skipped: TensorFlow (training extras) not installed"))
    else:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        try:
            generator = load_generator(64)
        except FileNotFoundError:
            rows.append(("generator", "skipped: no trained GAN under data/jpeg/runs/gan_64"))
        else:
            image = np.random.default_rng(1).uniform(-1, 1, (1, 256, 256, 1)).astype(np.float32)
            ms = median_ms(lambda: generator(image, training=False), max(3, args.runs // 4))
            rows.append(("generator parameters", f"{generator.count_params():,}"))
            rows.append(("generator latency, 256x256 (Keras CPU, 1 thread)", f"{ms:.0f} ms"))
    print("| quantity | value |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")


if __name__ == "__main__":
    main()
