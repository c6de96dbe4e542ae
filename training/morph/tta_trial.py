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

from kiosk.runtime.forensics.morph import (
    CNN_MODEL_NAME,
    MODEL_NAME,
    TREES_LOGIT,
    CnnScorer,
    cnn_tta,
    morph_fusion,
)
from kiosk.runtime.forensics.splice import Trees
from kiosk.runtime.models.fusion import CNN_LOGIT
from kiosk.runtime.models.registry import ModelRegistry
from training.morph.data import OUT
from training.morph.train import (
    REPORT,
    cross_fitted,
    featurize,
    sigmoid,
    val_summary,
)
from training.paths import MODELS

VARIANTS = {"none": (False, 0), "flip": (True, 0), "flip+shift2": (True, 2)}  # (mirror, shift px)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=Path, default=OUT)
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--out", type=Path, default=REPORT / "flip_tta_trial.json")
    args = parser.parse_args(argv)
    data = featurize(args.crops)
    val = data["split"] == "val"
    y = data["y"][val]
    with np.load(args.crops) as stored:
        crops = stored["crop"][val]  # validation rows only; no test row is read
    with np.load(MODELS / f"{MODEL_NAME}.npz") as stored:
        trees = Trees({key: stored[key] for key in stored.files})
    trees_logit = trees.logits(data["x"][val].astype(np.float32))
    content = (MODELS / f"{CNN_MODEL_NAME}.tflite").read_bytes()
    results: dict = {"n_val": {"morph": int(y.sum()), "bona_fide": int((y == 0).sum())}}
    entry = ModelRegistry(MODELS).entry(CNN_MODEL_NAME)
    own = CnnScorer(content, 1, *cnn_tta(entry.extra))  # the release's own views
    release_cnn = np.array([own.logit(c) for c in crops], np.float64)
    # the release as the kiosk (and train.py's bundle_scores) scores it, on validation rows only
    release = sigmoid(
        morph_fusion(entry.extra).log_odds({CNN_LOGIT: release_cnn, TREES_LOGIT: trees_logit})
    )
    results["release"] = val_summary(release, y)
    for variant in args.variants:
        tta = CnnScorer(content, 1, *VARIANTS[variant])  # the kiosk's `tta_views`
        tick = time.perf_counter()
        cnn = np.array([tta.logit(c) for c in crops], np.float64)
        ms = (time.perf_counter() - tick) / len(crops) * 1000
        z = np.column_stack([cnn, trees_logit])
        fused = sigmoid(cross_fitted(z, y, data["a"][val]))
        results[variant] = {
            "cnn_ms_per_crop": round(ms, 2),
            "cnn": val_summary(cnn, y),
            "fusion_cross_fitted": val_summary(fused, y),
            "cnn_auc_unrounded": float(roc_auc_score(y, cnn)),
            "fusion_auc_unrounded": float(roc_auc_score(y, fused)),
        }
        print(variant, json.dumps(results[variant]), flush=True)
    results["release_auc_unrounded"] = float(roc_auc_score(y, release))
    print("release", json.dumps(results["release"]))
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
