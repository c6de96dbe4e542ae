"""Fuse the splice tile CNN with the shipped trees; decide by the committed rule; report; ship.

    python -m training.tamper.splice_fusion    # after training.tamper.splice (its image cache)
                                               # and training.tamper.splice_cnn --import-gpu
    python -m training.tamper.splice_fusion --report cnn_v2_trial --margin -0.005 \
        --candidate-bundle DIR                 # validation only; DIR: models/ with the candidate

Scores, as the kiosk does (`kiosk.runtime.forensics.splice`): the release's trees and image
stage (models/splice_jpeg.npz) give each image's `trees_logit`; the candidate CNN
(data/splice/splice_cnn.tflite from an accelerator run, else the one in models/: after new
trees, `make splice` refits the fusion with the shipped CNN; through LiteRT) gives its tile
map, pooled into `CNN_FEATURES`. A logistic regression of those four is fitted on the
validation images; its validation figures are cross-fitted (5 folds by host picture, each
scored by weights fitted on the other 4). The rule of the trial's report decides (`--report
NAME`: reports/tamper_ela/splice/NAME.md, committed first): the candidate ships only if its
cross-fitted validation AUC beats the release's (plus `--margin`) on both splices and
copy-moves. The release is what models/ holds: the trees alone, or the listed CNN fused with
them, whose fusion is then cross-fitted the same way for the comparison. Test images are
scored once, after, for both. Shipping copies the CNN to models/ and writes its manifest entry
(fusion weights and threshold in it); the trees' entry stays as it is. `--candidate-bundle`
stops before the test for a rule with another validation step (a copy of models/ with the
candidate, for `bench/cli_splice.py --bundle`); `--withdrawn WHY` records a candidate the rule
shipped but its test took back (marked as a test-informed decision).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import joblib
import numpy as np
from scipy.special import expit
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
    cnn_features,
)
from kiosk.runtime.models.fusion import Fusion
from kiosk.runtime.models.trees import Trees
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


def score_images(samples: list[dict], trees: Trees, stage: ImageStage) -> None:
    """Each sample's trees map (`tiles`) and image-stage logit, as the kiosk computes them."""
    for sample in samples:
        features = sample["features"]
        rows, cols, count = features.shape
        sample["tiles"] = trees.predict(features.reshape(-1, count)).reshape(rows, cols)
        sample[TREES_LOGIT] = stage.logit(sample["tiles"])


def score_cnn(samples: list[dict], cnn: TileCnn, key: str) -> None:
    """A CNN's tile map (`<key>_tiles`) and its pooled features (`key`) of each sample."""
    for sample in samples:
        sample[f"{key}_tiles"] = cnn.logits(sample["image"])
        sample[key] = cnn_features(sample[f"{key}_tiles"])


def columns(samples: list[dict], key: str) -> dict[str, np.ndarray]:
    """FEATURES as columns: the trees' logit and CNN `key`'s pooled logits."""
    out = {TREES_LOGIT: np.array([s[TREES_LOGIT] for s in samples])}
    out.update({f: np.array([s[key][f] for s in samples]) for f in CNN_FEATURES})
    return out


def localisation(samples: list[dict], key: str) -> dict:
    """Mean per-image tile AUC of map `key` against the tiles >= 50 % pasted (tampered images
    with both kinds of tile), as `training.tamper.splice.summary` scores the trees' map."""
    aucs = []
    for sample in samples:
        truth = (sample["share"] >= 0.5).ravel()
        if sample["kind"] != "authentic" and 0 < truth.sum() < truth.size:
            aucs.append(roc_auc_score(truth, sample[key].ravel()))
    return {"tile_auc_mean": round(float(np.mean(aucs)), 4), "images": len(aucs)}


def fit(samples: list[dict], key: str) -> Fusion:
    """Logistic regression of FEATURES, tampered vs authentic (weights in the raw scale)."""
    values = columns(samples, key)
    x = np.column_stack([values[f] for f in FEATURES])
    y = np.array([s["kind"] != "authentic" for s in samples])
    scaler = StandardScaler().fit(x)
    model = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(x), y)
    weights = model.coef_[0] / scaler.scale_
    bias = float(model.intercept_[0] - weights @ scaler.mean_)
    return Fusion(FEATURES, tuple(round(float(w), 6) for w in weights), round(bias, 6))


def fused(fusion: Fusion, samples: list[dict], key: str) -> np.ndarray:
    return expit(fusion.log_odds(columns(samples, key)))


def cross_fitted(samples: list[dict], key: str, folds: np.ndarray) -> np.ndarray:
    """Each host's images scored by a fusion fitted on the other folds' images."""
    out = np.zeros(len(samples))
    for fold in range(FOLDS):
        held = folds == fold
        fusion = fit([s for s, h in zip(samples, held, strict=True) if not h], key)
        out[held] = fused(fusion, [s for s, h in zip(samples, held, strict=True) if h], key)
    return out


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
    parser.add_argument("--report", default="cnn_trial", help="reports/tamper_ela/splice/<name>")
    parser.add_argument(
        "--withdrawn", metavar="WHY",
        help="record that a candidate the rule shipped was taken back after its test, and why "
        "(a test-informed decision: the report marks it); implies --no-export",
    )  # fmt: skip
    parser.add_argument(
        "--candidate-bundle", type=Path,
        help="validation only: print the decision, write a copy of models/ with the candidate in "
        "it here (for a rule that also judges it through kiosk forensics), score no test image",
    )  # fmt: skip
    parser.add_argument(
        "--margin", type=float, default=0.0,
        help="the candidate wins with a validation AUC above the release's plus this "
        "(negative: non-inferiority, as a rule may allow)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if not (REPORT / f"{args.report}.md").exists():
        parser.error(
            f"{REPORT / args.report}.md holds the trial's decision rule, written (and committed) "
            "before the candidate is scored: write it first"
        )
    models_dir = REPO / "models"
    shipped = models_dir / f"{CNN_MODEL_NAME}.tflite"
    cnn_path = args.cnn or (CANDIDATE if CANDIDATE.exists() else shipped)
    cache = WORK / "splice" / f"data_{args.rounds}_{args.test_rounds}_{args.seed}.pkl"
    data = joblib.load(cache)
    manifest = load_manifest(models_dir)
    trees = Trees.from_bytes((models_dir / manifest.models[MODEL_NAME].file).read_bytes())
    stage = ImageStage(trees.arrays)
    val, test = data["val"], data["test"]
    folds = host_folds(val, args.test_rounds)
    candidate = TileCnn(cnn_path.read_bytes(), num_threads=args.threads)
    for samples in (val, test):
        score_images(samples, trees, stage)
        score_cnn(samples, candidate, "cnn")
    # The release as the kiosk runs it: the trees alone, or fused with the listed CNN by its
    # entry's weights (fitted on these validation images: the rule compares the candidate with
    # its cross-fitted figures instead, the same procedure as the candidate's).
    entry = manifest.models.get(CNN_MODEL_NAME)
    if entry is None:
        release_model = "trees"
        release_threshold = float(manifest.models[MODEL_NAME].threshold)
        release = {name: sigmoid_of(samples) for name, samples in (("val", val), ("test", test))}
        release_rule = release["val"]
    else:
        release_model = "trees+cnn"
        release_threshold = float(entry.threshold)
        known = {TREES_LOGIT, *CNN_FEATURES}
        release_fusion = Fusion.from_entry(entry.extra, CNN_MODEL_NAME, known)
        shipped_cnn = TileCnn(shipped.read_bytes(), num_threads=args.threads)
        for samples in (val, test):
            score_cnn(samples, shipped_cnn, "release")
        release = {
            name: fused(release_fusion, samples, "release")
            for name, samples in (("val", val), ("test", test))
        }
        release_rule = cross_fitted(val, "release", folds)
    crossed = cross_fitted(val, "cnn", folds)
    fusion = fit(val, "cnn")
    val_scores = fused(fusion, val, "cnn")
    authentic = np.array([s["kind"] == "authentic" for s in val])
    threshold = threshold_at(val_scores[authentic], TARGET_FALSE_ALARMS)
    tile_threshold = float(stage.tile_threshold)

    def val_summary(scores: np.ndarray) -> dict:
        """Validation figures of image scores at their own 5 %-false-alarm point."""
        cut = threshold_at(scores[authentic], TARGET_FALSE_ALARMS)
        return summary(with_scores(val, scores), cut, tile_threshold)

    cnn_alone = np.array([s["cnn"]["cnn_top4"] for s in val])
    metrics = {
        "candidate": {
            "cnn": str(cnn_path.relative_to(REPO))
            if cnn_path.is_relative_to(REPO)
            else str(cnn_path),
            # the accelerator run it came from, when it is the imported candidate
            "run": json.loads((RUN / "state.json").read_text())
            if cnn_path.resolve() == CANDIDATE.resolve()
            else {},
            "sha256": hashlib.sha256(cnn_path.read_bytes()).hexdigest(),
            "fusion": fusion.as_dict(),
            "threshold": round(threshold, 6),
        },
        "report": args.report,
        "no_export": args.no_export and not args.withdrawn,
        "release_model": release_model,
        "margin": args.margin,
        "val_release": val_summary(release_rule),
        "val_candidate_crossfit": val_summary(crossed),
        "val_cnn_top4_alone": val_summary(cnn_alone),
    }
    wins = {
        kind: auc_row(metrics["val_candidate_crossfit"], kind)
        > auc_row(metrics["val_release"], kind) + args.margin
        for kind in ("splice", "copy_move")
    }
    metrics["decision"] = {"wins": wins, "shipped": all(wins.values())}
    if args.withdrawn:
        metrics["decision"]["withdrawn"] = args.withdrawn
        args.no_export = True
    if args.candidate_bundle:
        print(json.dumps({key: metrics[key] for key in ("decision", "release_model")}))
        for key in ("val_candidate_crossfit", "val_release"):
            print(key, {k: auc_row(metrics[key], k) for k in ("splice", "copy_move")})
        shutil.copytree(models_dir, args.candidate_bundle, dirs_exist_ok=True)
        ship(cnn_path, fusion, threshold, metrics, args.candidate_bundle)
        return
    # test, once, after the decision: the candidate as it would ship, the release as it is
    metrics["test_release"] = summary(
        with_scores(test, release["test"]), release_threshold, tile_threshold
    )
    metrics["test_candidate"] = summary(
        with_scores(test, fused(fusion, test, "cnn")), threshold, tile_threshold
    )
    # how the candidate CNN's own tile map localises beside the trees' (it draws the heat map)
    metrics["localisation_tile_maps"] = {
        split: {"trees": localisation(samples, "tiles"), "cnn": localisation(samples, "cnn_tiles")}
        for split, samples in (("val", val), ("test", test))
    }
    (REPORT / f"{args.report}.json").write_text(json.dumps(metrics, indent=1) + "\n")
    write_markdown(metrics, REPORT / f"{args.report}.md")
    print(json.dumps(metrics["decision"]), flush=True)
    if args.no_export or not metrics["decision"]["shipped"]:
        return
    ship(cnn_path, fusion, threshold, metrics, models_dir)


def sigmoid_of(samples: list[dict]) -> np.ndarray:
    return expit(np.array([s[TREES_LOGIT] for s in samples]))


def ship(cnn_path: Path, fusion: Fusion, threshold: float, metrics: dict, models_dir: Path) -> None:
    """The CNN into `models_dir` and its manifest entry (fusion weights, threshold, figures)."""
    path = models_dir / f"{CNN_MODEL_NAME}.tflite"
    if cnn_path.resolve() != path.resolve():
        shutil.copy(cnn_path, path)
    cnn_spec = spec(CNN_MODEL_NAME)
    test = metrics.get("test_candidate", {})
    write_entry(
        models_dir,
        CNN_MODEL_NAME,
        path,
        **cnn_spec.entry_fields(),
        quantization="float16 weights, float32 compute",
        threshold=round(threshold, 6),
        fusion=fusion.as_dict(),
        metrics={
            "threshold": round(threshold, 6),
            "threshold_source": cnn_spec.threshold_source,
            "val_splice_auc_crossfit": auc_row(metrics["val_candidate_crossfit"], "splice"),
            **(
                {
                    "test_splice_auc": test["splice"]["auc"],
                    "test_splice_detected": test["splice"]["detected"],
                    "test_false_alarms": test["splice"]["false_alarms"],
                    "test_copy_move_auc": auc_row(test, "copy_move"),
                }
                if test
                else {}
            ),
        },
        data_digest=hashlib.sha256(path.read_bytes()).hexdigest()[:16],
    )


def write_markdown(metrics: dict, path: Path) -> None:
    """The results under the committed rule of the trial's report `path`."""
    path.write_text(render(metrics, path.read_text().split(RESULTS)[0].rstrip()))


RELEASES = {
    "trees": "the trees alone, as shipped",
    "trees+cnn": "the shipped CNN fused with the trees; its validation figures cross-fitted as "
    "the candidate's, its test figures as shipped (entry weights and threshold)",
}


def options(metrics: dict) -> str:
    """The command-line options a report was written with (none for the first trial)."""
    out = ""
    if metrics.get("report", "cnn_trial") != "cnn_trial":
        out += f" --report {metrics['report']}"
    if metrics.get("margin"):
        out += f" --margin {metrics['margin']}"
    return out + (" --no-export" if metrics.get("no_export") else "")


def describe(run: dict) -> str:
    """The accelerator run in a sentence."""
    return (
        f"Run: {run['steps']:,} steps of {run['images_per_batch']} images on {run['device']} in "
        f"{run['seconds'] / 60:.1f} min, {run['images']:,} images, {run['patches']:,} tiles"
        + (f" (from {run['init']})" if run.get("init") else "")
        + (", a quarter of hosts resampled" if run.get("host_resample") else "")
        + "; its running AUC on fresh tiles (train pictures) ended at "
        f"{run['curve'][-1]['fresh_tile_auc']}."
    )


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
        f"Written by `python -m training.tamper.splice_fusion{options(metrics)}` (numbers in "
        f"{metrics.get('report', 'cnn_trial')}.json). "
        + (
            describe(run)
            if run
            else f"CNN: {metrics['candidate'].get('cnn')} (no run record here)."
        )
        + (
            f" Release: {RELEASES[metrics['release_model']]}." if "release_model" in metrics else ""
        ),
        "",
        "**Decision (validation):** "
        + ", ".join(
            f"{kind} {auc_row(metrics['val_candidate_crossfit'], kind):.3f} vs release "
            f"{auc_row(metrics['val_release'], kind):.3f} ({'wins' if won else 'does not win'})"
            for kind, won in decision["wins"].items()
        )
        + f": the candidate **{'ships' if decision['shipped'] else 'does not ship'}**"
        + (
            f" by the rule — **withdrawn after its test (‡, a test-informed decision): "
            f"{decision['withdrawn']}**"
            if decision.get("withdrawn")
            else ""
        )
        + ". The CNN "
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
