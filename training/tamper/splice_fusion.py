"""Fuse the splice tile CNN with the shipped trees; decide by the committed rule; report; ship.

    python -m training.tamper.splice_fusion    # after training.tamper.splice (its image cache)
                                               # and training.tamper.splice_cnn --import-gpu

Scores, as the kiosk does (`kiosk.runtime.forensics.splice`): the release's trees and image
stage (models/splice_jpeg.npz) give each image's `trees_logit`; the candidate CNN
(data/splice/splice_cnn.tflite from an accelerator run, else the one in models/: after
new trees, `make splice` refits the fusion with the shipped CNN; through LiteRT) gives its tile map, pooled into `CNN_FEATURES`.
A logistic regression of those four is fitted on the validation images; its validation figures
are cross-fitted (5 folds by host picture, each scored by weights fitted on the other 4). The
rule in reports/tamper_ela/splice/cnn_trial.md decides: the candidate ships only if its
cross-fitted validation AUC beats the release's on both splices and copy-moves. Test images
are scored once, after, for both. Shipping copies the CNN to models/ and writes its manifest
entry (fusion weights and threshold in it); the trees' entry stays as it is.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import joblib
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from kiosk.contract.manifest import load_manifest, write_entry
from kiosk.contract.models import spec
from kiosk.runtime.forensics.splice import (
    CNN_FEATURES,
    CNN_MODEL_NAME,
    MODEL_NAME,
    TREES_LOGIT,
    ImageStage,
    TileCnn,
    Trees,
    cnn_features,
)
from kiosk.runtime.models.fusion import Fusion
from training.paths import REPO, WORK
from training.tamper.splice import (
    REPORT,
    TARGET_FALSE_ALARMS,
    host_groups,
    summary,
    threshold_at,
)
from training.tamper.splice_cnn import CANDIDATE, RUN

FEATURES = (TREES_LOGIT, *CNN_FEATURES)
FOLDS = 5
RESULTS = "## Results"  # the report keeps its rule above this heading as committed


def score_images(samples: list[dict], trees: Trees, stage: ImageStage, cnn: TileCnn) -> None:
    """Each sample's trees map (`tiles`), `trees_logit` and pooled CNN features, as the kiosk."""
    for sample in samples:
        features = sample["features"]
        rows, cols, count = features.shape
        sample["tiles"] = trees.predict(features.reshape(-1, count)).reshape(rows, cols)
        sample[TREES_LOGIT] = stage.logit(sample["tiles"])
        sample["cnn_tiles"] = cnn.logits(sample["image"])
        sample.update(cnn_features(sample["cnn_tiles"]))


def localisation(samples: list[dict], key: str) -> dict:
    """Mean per-image tile AUC of map `key` against the tiles >= 50 % pasted (tampered images
    with both kinds of tile), as `training.tamper.splice.summary` scores the trees' map."""
    aucs = []
    for sample in samples:
        truth = (sample["share"] >= 0.5).ravel()
        if sample["kind"] != "authentic" and 0 < truth.sum() < truth.size:
            aucs.append(roc_auc_score(truth, sample[key].ravel()))
    return {"tile_auc_mean": round(float(np.mean(aucs)), 4), "images": len(aucs)}


def fit(samples: list[dict]) -> Fusion:
    """Logistic regression of FEATURES, tampered vs authentic (weights in the raw scale)."""
    x = np.array([[s[f] for f in FEATURES] for s in samples])
    y = np.array([s["kind"] != "authentic" for s in samples])
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(x), y)
    weights = model.coef_[0] / scaler.scale_
    bias = float(model.intercept_[0] - weights @ scaler.mean_)
    return Fusion(FEATURES, tuple(round(float(w), 6) for w in weights), round(bias, 6))


def fused(fusion: Fusion, samples: list[dict]) -> np.ndarray:
    columns = {f: np.array([s[f] for s in samples]) for f in FEATURES}
    return 1.0 / (1.0 + np.exp(-np.clip(fusion.log_odds(columns), -50, 50)))


def host_folds(samples: list[dict], rounds: int) -> np.ndarray:
    """Fold of each sample by its host picture, dealt as training.tamper.splice deals the
    out-of-fold maps of its image stage."""
    pictures = sum(s["kind"] == "authentic" for s in samples) // rounds
    return (host_groups(samples, pictures) * 7919 + 13) % FOLDS


def with_scores(samples: list[dict], scores: np.ndarray) -> list[dict]:
    return [{**s, "score": float(v)} for s, v in zip(samples, scores, strict=True)]


def auc_row(metrics: dict, key: str) -> float:
    return metrics.get(key, {}).get("auc", float("nan"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--test-rounds", type=int, default=6)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument(
        "--cnn", type=Path, default=None,
        help="the CNN to fuse (default: data/splice/splice_cnn.tflite, else models/'s)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    models_dir = REPO / "models"
    shipped = models_dir / f"{CNN_MODEL_NAME}.tflite"
    cnn_path = args.cnn or (CANDIDATE if CANDIDATE.exists() else shipped)
    cache = WORK / "splice" / f"data_{args.rounds}_{args.test_rounds}_{args.seed}.pkl"
    data = joblib.load(cache)
    manifest = load_manifest(models_dir)
    trees = Trees.from_bytes((models_dir / manifest.models[MODEL_NAME].file).read_bytes())
    stage = ImageStage(trees.arrays)
    release_threshold = float(manifest.models[MODEL_NAME].threshold)
    cnn = TileCnn(cnn_path.read_bytes(), num_threads=args.threads)
    val, test = data["val"], data["test"]
    for samples in (val, test):
        score_images(samples, trees, stage, cnn)
    release = {
        split: with_scores(samples, [1 / (1 + np.exp(-s[TREES_LOGIT])) for s in samples])
        for split, samples in (("val", val), ("test", test))
    }
    # cross-fitted validation scores: each host's images by weights fitted on the other folds
    folds = host_folds(val, args.test_rounds)
    crossed = np.zeros(len(val))
    for fold in range(FOLDS):
        held = folds == fold
        fusion = fit([s for s, h in zip(val, held, strict=True) if not h])
        crossed[held] = fused(fusion, [s for s, h in zip(val, held, strict=True) if h])
    fusion = fit(val)
    val_scores = fused(fusion, val)
    authentic = np.array([s["kind"] == "authentic" for s in val])
    threshold = threshold_at(val_scores[authentic], TARGET_FALSE_ALARMS)
    crossed_threshold = threshold_at(crossed[authentic], TARGET_FALSE_ALARMS)
    tile_threshold = float(stage.tile_threshold)
    cnn_alone = np.array([s["cnn_top4"] for s in val])
    metrics = {
        "candidate": {
            "run": json.loads((RUN / "state.json").read_text()),
            "fusion": fusion.as_dict(),
            "threshold": round(threshold, 6),
        },
        "val_release": summary(release["val"], release_threshold, tile_threshold),
        "val_candidate_crossfit": summary(
            with_scores(val, crossed), crossed_threshold, tile_threshold
        ),
        "val_cnn_top4_alone": summary(
            with_scores(val, cnn_alone),
            threshold_at(cnn_alone[authentic], TARGET_FALSE_ALARMS),
            tile_threshold,
        ),
    }
    wins = {
        kind: auc_row(metrics["val_candidate_crossfit"], kind)
        > auc_row(metrics["val_release"], kind)
        for kind in ("splice", "copy_move")
    }
    metrics["decision"] = {"wins": wins, "shipped": all(wins.values())}
    # test, once, after the decision: the candidate as it would ship, the release as it is
    metrics["test_release"] = summary(release["test"], release_threshold, tile_threshold)
    metrics["test_candidate"] = summary(
        with_scores(test, fused(fusion, test)), threshold, tile_threshold
    )
    # the heat map stays the trees'; how the CNN's own tile map would localise, for the record
    metrics["localisation_tile_maps"] = {
        split: {"trees": localisation(samples, "tiles"), "cnn": localisation(samples, "cnn_tiles")}
        for split, samples in (("val", val), ("test", test))
    }
    (REPORT / "cnn_trial.json").write_text(json.dumps(metrics, indent=1) + "\n")
    write_markdown(metrics)
    print(json.dumps(metrics["decision"]), flush=True)
    if args.no_export or not metrics["decision"]["shipped"]:
        return
    path = shipped
    if cnn_path.resolve() != path.resolve():
        shutil.copy(cnn_path, path)
    cnn_spec = spec(CNN_MODEL_NAME)
    test_row = metrics["test_candidate"]["splice"]
    write_entry(
        models_dir,
        CNN_MODEL_NAME,
        path,
        architecture=cnn_spec.architecture,
        input_shape=list(cnn_spec.input_shape),
        input=cnn_spec.input,
        output=cnn_spec.output,
        positive=cnn_spec.positive,
        quantization="float16 weights, float32 compute",
        threshold=round(threshold, 6),
        fusion=fusion.as_dict(),
        metrics={
            "threshold": round(threshold, 6),
            "threshold_source": cnn_spec.threshold_source,
            "val_splice_auc_crossfit": auc_row(metrics["val_candidate_crossfit"], "splice"),
            "test_splice_auc": test_row["auc"],
            "test_splice_detected": test_row["detected"],
            "test_false_alarms": test_row["false_alarms"],
            "test_copy_move_auc": auc_row(metrics["test_candidate"], "copy_move"),
        },
        data_digest=hashlib.sha256(path.read_bytes()).hexdigest()[:16],
    )


def write_markdown(metrics: dict) -> None:
    """The results under the committed rule of reports/tamper_ela/splice/cnn_trial.md."""
    path = REPORT / "cnn_trial.md"
    path.write_text(render(metrics, path.read_text().split(RESULTS)[0].rstrip()))


def render(metrics: dict, rule: str) -> str:
    """The report: `rule` (the text committed before the trial), then the results."""
    run = metrics["candidate"]["run"]
    decision = metrics["decision"]
    rows = [
        key
        for key, row in metrics["test_candidate"].items()
        if isinstance(row, dict) and "auc" in row
    ]
    lines = [
        rule,
        "",
        RESULTS,
        "",
        "Written by `python -m training.tamper.splice_fusion` (numbers in cnn_trial.json). Run: "
        f"{run['steps']:,} steps of {run['images_per_batch']} images on {run['device']} in "
        f"{run['seconds'] / 60:.1f} min, {run['images']:,} images, {run['patches']:,} tiles; its "
        f"running AUC on fresh tiles (train pictures) ended at {run['curve'][-1]['fresh_tile_auc']}.",
        "",
        "**Decision (validation):** "
        + ", ".join(
            f"{kind} {auc_row(metrics['val_candidate_crossfit'], kind):.3f} vs release "
            f"{auc_row(metrics['val_release'], kind):.3f} ({'wins' if won else 'does not win'})"
            for kind, won in decision["wins"].items()
        )
        + f": the candidate **{'ships' if decision['shipped'] else 'does not ship'}**. The CNN "
        f"alone (its top-4 tile logits) has validation splice AUC "
        f"{auc_row(metrics['val_cnn_top4_alone'], 'splice'):.3f}.",
        "",
        f"Fusion (fitted on all validation images): {json.dumps(metrics['candidate']['fusion'])}; "
        f"threshold {metrics['candidate']['threshold']} (5 % false alarms on validation authentic "
        "images).",
        "",
        "| images | tampered | test AUC candidate | release | test detected candidate | release | "
        "test false alarms candidate | release | val AUC candidate (cross-fitted) | release |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key in rows:
        new, old = metrics["test_candidate"][key], metrics["test_release"][key]
        lines.append(
            f"| {key} | {new['n_tampered']} | {new['auc']:.3f} | {old['auc']:.3f} | "
            f"{new['detected']:.1%} | {old['detected']:.1%} | {new['false_alarms']:.1%} | "
            f"{old['false_alarms']:.1%} | {auc_row(metrics['val_candidate_crossfit'], key):.3f} | "
            f"{auc_row(metrics['val_release'], key):.3f} |"
        )
    lines += [
        "",
        "Test thresholds: the candidate's above; the release's from its manifest entry. The "
        "flagged tiles stay the trees' in both; the heat map is drawn from the CNN's tile map "
        "where the CNN is listed (its localisation below was the better on validation).",
    ]
    where = metrics.get("localisation_tile_maps")
    if where:  # added after the decision: it chose nothing
        lines += [
            "",
            "Localisation (mean per-image tile AUC, tampered images, tiles >= 50 % pasted as "
            "truth; computed after the decision, for the record): "
            + "; ".join(
                f"{split} trees {maps['trees']['tile_auc_mean']:.3f}, CNN "
                f"{maps['cnn']['tile_auc_mean']:.3f} ({maps['cnn']['images']} images)"
                for split, maps in where.items()
            )
            + ".",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
