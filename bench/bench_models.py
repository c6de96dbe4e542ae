"""Per-model numbers from one run: size, int8 latency (1 thread; the median of the medians of
blocks of 100 calls), the crop-level test metrics recorded by the export and the per-face
threshold shipped by training/verdicts.py (both in models/manifest.json; the FNR/FPR at that
threshold are per face and per source: reports/verdicts).

    .venv/bin/python bench/bench_models.py [--runs 1000] [--reference OLD/models]

`--reference DIR` times another bundle's file of each model in the same run, on the same crop,
ours and its timed in alternating blocks of 100 calls, so a busy host slows both alike.
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
    parser.add_argument("--reference", type=Path, default=None, help="another model bundle")
    args = parser.parse_args()
    registry = ModelRegistry(REPO / "models")
    reference = ModelRegistry(args.reference) if args.reference else None
    rng = np.random.default_rng(0)
    extra = " reference: KiB · int8 latency ms |" if reference else ""
    print(
        "| model | arch | size KiB | int8 latency ms | crop test EER % | crop test AUC | "
        f"shipped threshold (per face) | paper FNR/FPR % |{extra}\n"
        f"|---|---|---|---|---|---|---|---|{'---|' if reference else ''}"
    )
    for name in COMPLIANCE:
        entry = registry.entry(name)
        files = [registry.verified_bytes(name)]
        if reference:
            files.append(reference.verified_bytes(name))
        classifiers = [BinaryClassifier(content, num_threads=1) for content in files]
        crop = rng.integers(0, 255, classifiers[0].input_size, dtype=np.uint8)
        latencies = interleaved_ms(classifiers, crop, args.runs)
        metrics = entry.extra["metrics"]
        m = metrics["test_int8"]
        beside = f" {len(files[1]) / 1024:.0f} · {latencies[1]:.3f} |" if reference else ""
        print(
            f"| {name} | {entry.extra['architecture']} | {entry.extra['bytes'] / 1024:.0f} | "
            f"{latencies[0]:.3f} | {m['eer'] * 100:.2f} | {m['auc']:.4f} | "
            f"{entry.threshold:.3f} ({metrics['method']}) | {PAPER[name][0]} / {PAPER[name][1]} |"
            f"{beside}"
        )


def interleaved_ms(classifiers: list[BinaryClassifier], crop: np.ndarray, runs: int) -> list[float]:
    """Median ms per call of each classifier, timed in alternating blocks of 100 calls."""
    blocks: list[list[float]] = [[] for _ in classifiers]
    for start in range(0, runs, 100):
        n = min(100, runs - start)
        for c, times in zip(classifiers, blocks, strict=True):
            times.append(median_ms(lambda c=c: c.logit(crop), n, warmup=20 if not start else 1))
    return [float(np.median(times)) for times in blocks]


if __name__ == "__main__":
    main()
