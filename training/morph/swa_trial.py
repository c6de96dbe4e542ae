"""Trial, validation only: does a candidate CNN (averaged snapshots, cnn.py --average; a wider
net, --blocks) lift the fused score?

    OMP_NUM_THREADS=1 python -m training.morph.swa_trial --cnn NAME=FILE.tflite ...
        # -> reports/morph/swa_trial.json

Each candidate CNN file's logit (the mean over the kiosk's test-time views, as train.py scores a
candidate) is fused with the release trees' logit by a logistic regression cross-fitted on
validation (5 folds by person: train.py's `compare`), against the release in models/ scored on
the same validation crops as train.py's `bundle_scores` does (its own fusion weights). Reads no
test row: the decision rules are in reports/morph/swa_trial.md and wide_trial.md.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from kiosk.runtime.models.fusion import sigmoids
from training.morph.data import OUT
from training.morph.train import (
    REPORT,
    ValidationSet,
    cnn_logits,
    cross_fitted,
    val_summary,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=Path, default=OUT)
    parser.add_argument("--cnn", nargs="+", required=True, metavar="NAME=FILE")
    parser.add_argument("--out", type=Path, default=REPORT / "swa_trial.json")
    parser.add_argument(
        "--with-release-cnn", action="store_true",
        help="also each candidate fused with the release CNN and the trees (information only)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    candidates = dict(item.split("=", 1) for item in args.cnn)
    v = ValidationSet.load(args.crops)
    results: dict = {
        "n_val": {"morph": int(v.y.sum()), "bona_fide": int((v.y == 0).sum())},
        "release": {
            "cnn": val_summary(v.release_cnn, v.y),
            "fusion_own_weights": val_summary(v.release, v.y),
            "fusion_auc_unrounded": float(roc_auc_score(v.y, v.release)),
        },
    }
    print("release", json.dumps(results["release"]), flush=True)
    for name, path in candidates.items():
        cnn = cnn_logits(Path(path), v.crops)  # the kiosk's test-time views, as train.py
        results[name] = {"file": path, **v.candidate(cnn)}
        if args.with_release_cnn:  # an ensemble the kiosk cannot run yet: it decides nothing
            both = np.column_stack([cnn, v.release_cnn, v.trees_logit])
            names = ("cnn_logit", "release_cnn_logit", "trees_logit")
            fused = sigmoids(cross_fitted(both, v.y, v.persons, features=names))
            results[name]["with_release_cnn_cross_fitted"] = val_summary(fused, v.y)
        print(name, json.dumps(results[name]), flush=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
