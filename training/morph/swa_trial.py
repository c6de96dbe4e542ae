"""Trial, validation only: do averaged CNN snapshots (cnn.py --average) lift the fused score?

    OMP_NUM_THREADS=1 python -m training.morph.swa_trial --cnn NAME=FILE.tflite ...
        # -> reports/morph/swa_trial.json

Each candidate CNN file's logit (the mean over the kiosk's test-time views, as train.py scores a
candidate) is fused with the release trees' logit by a logistic regression cross-fitted on
validation (5 folds by person: train.py's `compare`), against the release in models/ scored on
the same validation crops as train.py's `bundle_scores` does (its own fusion weights). Reads no
test row: the decision rules are in reports/morph/swa_trial.md.
"""

from __future__ import annotations

import argparse
import json
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
from training.morph.train import REPORT, cnn_logits, cross_fitted, featurize, sigmoid, val_summary
from training.paths import MODELS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=Path, default=OUT)
    parser.add_argument("--cnn", nargs="+", required=True, metavar="NAME=FILE")
    parser.add_argument("--out", type=Path, default=REPORT / "swa_trial.json")
    args = parser.parse_args(argv)
    candidates = dict(item.split("=", 1) for item in args.cnn)
    data = featurize(args.crops)
    val = data["split"] == "val"
    y = data["y"][val]
    with np.load(args.crops) as stored:
        crops = stored["crop"][val]  # validation rows only; no test row is read
    with np.load(MODELS / f"{MODEL_NAME}.npz") as stored:
        trees = Trees({key: stored[key] for key in stored.files})
    trees_logit = trees.logits(data["x"][val].astype(np.float32))
    entry = ModelRegistry(MODELS).entry(CNN_MODEL_NAME)
    own = CnnScorer((MODELS / f"{CNN_MODEL_NAME}.tflite").read_bytes(), 1, *cnn_tta(entry.extra))
    release_cnn = np.array([own.logit(c) for c in crops], np.float64)
    release = sigmoid(
        morph_fusion(entry.extra).log_odds({CNN_LOGIT: release_cnn, TREES_LOGIT: trees_logit})
    )
    results: dict = {
        "n_val": {"morph": int(y.sum()), "bona_fide": int((y == 0).sum())},
        "release": {
            "cnn": val_summary(release_cnn, y),
            "fusion_own_weights": val_summary(release, y),
            "fusion_auc_unrounded": float(roc_auc_score(y, release)),
        },
    }
    print("release", json.dumps(results["release"]), flush=True)
    for name, path in candidates.items():
        cnn = cnn_logits(Path(path), crops)  # the kiosk's test-time views, as train.py
        fused = sigmoid(cross_fitted(np.column_stack([cnn, trees_logit]), y, data["a"][val]))
        results[name] = {
            "file": path,
            "cnn": val_summary(cnn, y),
            "fusion_cross_fitted": val_summary(fused, y),
            "cnn_auc_unrounded": float(roc_auc_score(y, cnn)),
            "fusion_auc_unrounded": float(roc_auc_score(y, fused)),
        }
        print(name, json.dumps(results[name]), flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
