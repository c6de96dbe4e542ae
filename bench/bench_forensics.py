"""Forensic pass latency on a 640x480 capture, one thread: each check, each model alone (int8 vs
float where both exist), the splice check without its tile CNN beside it, and `ForensicSuite.run` with every check in the manifest.

The capture is skimage's astronaut placed in a 640x480 frame with a ~100 px face, so the SR check
runs (face box from the kiosk's own detector). Float comparison files come from `data/runs/`
(written by `make tamper-eval` / `make sr-eval`) and are skipped when absent.

    .venv/bin/python bench/bench_forensics.py [--runs 10] [--reference MODELS_DIR]

`--reference`: another model bundle (an earlier release); each of its checks and its whole pass
are timed right after ours, in the same run, on the same capture.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from kiosk.config import load_config  # noqa: E402
from kiosk.runtime.forensics.capture import Artifacts, Capture  # noqa: E402
from kiosk.runtime.forensics.splice import SpliceCheck  # noqa: E402
from kiosk.runtime.forensics.suite import ForensicSuite  # noqa: E402
from kiosk.runtime.models.litert import make_interpreter  # noqa: E402
from kiosk.runtime.models.registry import ModelRegistry  # noqa: E402
from kiosk.runtime.models.tflite_io import Model  # noqa: E402
from kiosk.runtime.pipeline import CompliancePipeline  # noqa: E402
from kiosk.runtime.vision.analysis import FACE_TOO_SMALL  # noqa: E402
from training.timing import median_ms  # noqa: E402

RUNS_DIR = REPO / "data" / "runs"
FLOAT_FILES = {
    "tamper_ela": [("int8 (shipped)", None), ("float32", "tamper_ela/tamper_ela_float32.tflite")],
    "sr_x4": [
        ("float32", "sr_mse/sr_x4_float32.tflite"),
        ("float16", "sr_mse/sr_x4_float16.tflite"),
        ("int8", "sr_mse/sr_x4_int8.tflite"),
    ],
}


def capture_640x480() -> Capture:
    from skimage import data

    frame = np.full((480, 640, 3), 180, np.uint8)
    face = cv2.resize(data.astronaut(), (400, 400), interpolation=cv2.INTER_AREA)
    frame[40:440, 120:520] = face
    analysis = CompliancePipeline(load_config()).analyzer.analyze(frame)
    box = analysis.face.box if analysis.reason in (None, FACE_TOO_SMALL) else None
    return Capture(frame, box)


def model_rows(registry: ModelRegistry, runs: int) -> list[tuple[str, str, str]]:
    rows = []
    for name, variants in FLOAT_FILES.items():
        if name not in registry.entries:
            continue
        for label, relative in variants:
            path = RUNS_DIR / relative if relative else None
            if path is not None and not path.exists():
                continue
            content = registry.verified_bytes(name) if path is None else path.read_bytes()
            model = Model(make_interpreter(content, num_threads=1))
            values = np.random.default_rng(0).random(model.input_shape).astype(np.float32)
            if name == "tamper_ela":
                values *= 255
            milliseconds = median_ms(lambda model=model, values=values: model(values), runs)
            rows.append(
                (f"{name} model, {label}", f"{len(content) / 1024:.0f} KiB", f"{milliseconds:.1f}")
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--reference", type=Path, default=None, help="another model bundle")
    args = parser.parse_args()
    config = load_config()
    registry = ModelRegistry(config.models_dir)
    suite = ForensicSuite.from_config(config, registry)
    reference = None
    if args.reference is not None:
        reference = ForensicSuite.from_config(config, ModelRegistry(args.reference))
    capture = capture_640x480()
    rows = model_rows(registry, args.runs)
    for check in suite.checks:
        milliseconds = median_ms(lambda check=check: check.run(capture, Artifacts()), args.runs)
        rows.append((f"check '{check.key}' on 640x480", "", f"{milliseconds:.1f}"))
        theirs = [c for c in reference.checks if c.key == check.key] if reference else []
        for other in theirs:
            milliseconds = median_ms(lambda other=other: other.run(capture, Artifacts()), args.runs)
            rows.append((f"check '{check.key}', reference bundle", "", f"{milliseconds:.1f}"))
        if isinstance(check, SpliceCheck) and check.cnn is not None:  # the release beside it
            alone = SpliceCheck(check.trees, check.threshold)
            milliseconds = median_ms(lambda alone=alone: alone.run(capture, Artifacts()), args.runs)
            rows.append(("check 'splice', trees alone (no tile CNN)", "", f"{milliseconds:.1f}"))
    total = median_ms(lambda: suite.run(capture, Artifacts()), args.runs)
    rows.append(
        (f"ForensicSuite.run ({', '.join(c.key for c in suite.checks)})", "", f"{total:.1f}")
    )
    if reference is not None:
        theirs = median_ms(lambda: reference.run(capture, Artifacts()), args.runs)
        rows.append(("ForensicSuite.run, reference bundle", "", f"{theirs:.1f}"))
    face = "none" if capture.face is None else f"{capture.face[2] - capture.face[0]:.0f} px"
    print(f"640x480 capture, face box {face}, 1 thread, median of {args.runs} runs")
    print(f"{'item':<52} {'size':>9} {'ms':>9}")
    for item, size, milliseconds in rows:
        print(f"{item:<52} {size:>9} {milliseconds:>9}")
    print(f"target: whole pass <= 1000 ms -> {'met' if total <= 1000 else 'NOT met'}")


if __name__ == "__main__":
    main()
