"""Per-model numbers from one run: size, int8 latency (median of N runs, 1 thread), the
crop-level test metrics recorded by the export and the per-face threshold shipped by
training/verdicts.py (both in models/manifest.json; the FNR/FPR at that threshold are per face
and per source: reports/verdicts).

    .venv/bin/python bench/bench_models.py [--runs 1000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from kiosk.contract.models import COMPLIANCE  # noqa: E402
from kiosk.runtime.models.registry import ModelRegistry  # noqa: E402
from kiosk.runtime.models.tflite_io import BinaryClassifier  # noqa: E402
from training.timing import median_ms  # noqa: E402

PAPER = {"eyes_closed": (2.12, 2.58), "mouth_open": (5.12, 5.68), "veil": (4.21, 4.68)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    registry = ModelRegistry(REPO / "models")
    rng = np.random.default_rng(0)
    print(
        "| model | arch | size KiB | int8 latency ms | crop test EER % | crop test AUC | "
        "shipped threshold (per face) | paper FNR/FPR % |\n|---|---|---|---|---|---|---|---|"
    )
    for name in COMPLIANCE:
        entry = registry.entry(name)
        classifier = BinaryClassifier(registry.verified_bytes(name), num_threads=1)
        crop = rng.integers(0, 255, classifier.input_size, dtype=np.uint8)
        latency = median_ms(lambda c=classifier, x=crop: c.logit(x), args.runs, warmup=20)
        metrics = entry.extra["metrics"]
        m = metrics["test_int8"]
        print(
            f"| {name} | {entry.extra['architecture']} | {entry.extra['bytes'] / 1024:.0f} | "
            f"{latency:.3f} | {m['eer'] * 100:.2f} | {m['auc']:.4f} | "
            f"{entry.threshold:.3f} ({metrics['method']}) | {PAPER[name][0]} / {PAPER[name][1]} |"
        )


if __name__ == "__main__":
    main()
