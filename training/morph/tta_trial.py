"""Trial, validation only: does test-time augmentation of the morph CNN lift the fused score?

    OMP_NUM_THREADS=1 python -m training.morph.tta_trial   # -> reports/morph/flip_tta_trial.json

The CNN's logit averaged over views of the 128-px face crop by the kiosk's `tta_views` (`none`:
the crop alone, as the release before this trial; `flip`: the crop and its mirror;
`flip+shift2`: both at integer shifts 0, ±2 px in x and y, reflected border), each fused with the shipped trees' logit by a logistic regression
cross-fitted on validation (5 folds by person: train.py's `compare`), against the release in
models/ scored on the same validation crops (as train.py's `bundle_scores` does). Reads no test row:
the decision rules are in reports/morph/flip_tta_trial.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from kiosk.runtime.forensics.morph import CNN_MODEL_NAME, CnnScorer
from training.morph.data import OUT
from training.morph.train import REPORT, ValidationSet, val_summary
from training.paths import MODELS

VARIANTS = {"none": (False, 0), "flip": (True, 0), "flip+shift2": (True, 2)}  # (mirror, shift px)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=Path, default=OUT)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=REPORT / "flip_tta_trial.json")
    args = parser.parse_args(argv)
    v = ValidationSet.load(args.crops)
    content = (MODELS / f"{CNN_MODEL_NAME}.tflite").read_bytes()
    results: dict = {"n_val": {"morph": int(v.y.sum()), "bona_fide": int((v.y == 0).sum())}}
    results["release"] = val_summary(v.release, v.y)
    for variant in args.variants:
        tta = CnnScorer(content, 1, *VARIANTS[variant])  # the kiosk's `tta_views`
        tick = time.perf_counter()
        cnn = np.array([tta.logit(c) for c in v.crops], np.float64)
        ms = (time.perf_counter() - tick) / len(v.crops) * 1000
        results[variant] = {"cnn_ms_per_crop": round(ms, 2), **v.candidate(cnn)}
        print(variant, json.dumps(results[variant]), flush=True)
    results["release_auc_unrounded"] = float(roc_auc_score(v.y, v.release))
    print("release", json.dumps(results["release"]))
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
