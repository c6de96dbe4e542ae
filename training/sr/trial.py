"""Validation-only comparison of SR candidates before anything is shipped or benchmarked.

Each candidate (the model in models/, and optionally a trained run exported to float16 TFLite) is
run on the whole validation photos (train.py's held-out split) through the kiosk's 128x128 tiling,
once per self-ensemble size (`kiosk.runtime.forensics.sr.self_ensemble`), and timed on one
128x128 -> 512x512 face with one thread (the SR check's model cost; n transforms cost n
inferences). No benchmark picture is read. Per-photo PSNRs are kept so that candidates can be
compared photo by photo.

    python -m training.sr.trial --run sr_mse_decay --ensembles 1 2 4 8 --out reports/sr/trial.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from training.export import convert
from training.paths import MODELS, data_root
from training.sr.evaluate import (
    FACE_SIDE,
    latency_ms,
    psnr_ssim,
    tflite_upscaler,
    validation_images,
)
from training.sr.nets import make_generator
from training.sr.train import load_architecture, run_dir
from training.tf_setup import limit_threads


def float16_export(run: str) -> bytes:
    """The run's generator as the fixed 128x128 float16 TFLite file the kiosk would load."""
    architecture = load_architecture("mse", run)
    generator = make_generator(architecture["channels"], architecture["blocks"], size=FACE_SIDE)
    generator.load_weights(run_dir("mse", run) / "generator.weights.h5")
    return convert(generator, "float16", "sr_x4", None, integer_io=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="a trained run under runs/ to compare with models/sr_x4")
    parser.add_argument("--ensembles", type=int, nargs="+", default=[1])
    parser.add_argument("--out", type=Path, required=True, help="JSON with every figure")
    parser.add_argument("--data-root")
    args = parser.parse_args(argv)
    limit_threads(1)
    validation = validation_images(data_root(args.data_root))
    candidates = {"models/sr_x4.tflite": (MODELS / "sr_x4.tflite").read_bytes()}
    if args.run:
        content = float16_export(args.run)
        (run_dir("mse", args.run) / "sr_x4_float16.tflite").write_bytes(content)
        candidates[f"{args.run} float16"] = content
    results: dict = {"validation_photos": [name for name, _, _ in validation], "candidates": {}}
    for label, content in candidates.items():
        rows = results["candidates"][label] = {}
        for n in args.ensembles:
            upscale = tflite_upscaler(content, n)
            scores = np.array([psnr_ssim(upscale(lr), hr) for _, hr, lr in validation])
            rows[str(n)] = {
                "psnr": round(float(scores[:, 0].mean()), 3),
                "ssim": round(float(scores[:, 1].mean()), 4),
                "face_ms_128_to_512": latency_ms(content, n, runs=15),
                "per_photo_psnr": [round(float(v), 4) for v in scores[:, 0]],
            }
            print(label, n, {k: v for k, v in rows[str(n)].items() if k != "per_photo_psnr"})
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
