"""Train, evaluate and export the morph check (kiosk/runtime/forensics/morph.py).

    python -m training.morph.train [--no-export]   # after training.morph.data

Gradient-boosted trees (scikit-learn's histogram GBT, exported as arrays for the kiosk's numpy
evaluator) on the kiosk's texture features of the crops in `data/morph/crops_more.npz` (train split);
the size of the ensemble is chosen by validation AUC, and so is the threshold: the point where
BPCER (bona fide images flagged) is 10 % on validation bona fide images. The test split (people
never seen in training, as bona fide faces or as either contributor of a morph) gives the
reported numbers in ISO/IEC 30107-3 terms: APCER (morphs passed) at the validation thresholds
for BPCER 10 % and 1 %, and, marked as test-informed, APCER at the test's own BPCER points.
Writes reports/morph/ and, unless --no-export (or the release in models/ is better, below),
models/morph.npz with its manifest entry.

With the CNN of training/morph/cnn.py exported (data/morph/morph_cnn.tflite), its logits (by
LiteRT, as the kiosk runs it) are compared on validation with the trees and with their fusion
(a logistic regression of both logits, scored on validation by 5-fold cross-fitting with folds
by person). Validation AUC picks what ships; the fusion's final weights are fitted on all of
validation, and the shipped score's threshold is again validation BPCER 10 %. Test is scored
once, after the choice. A winning CNN or fusion gets the `morph_cnn` manifest entry (its
threshold and `fusion` = {"features": ["cnn_logit", "trees_logit"], "weights": [...], "bias": b};
CNN alone = weights 1, 0 and bias 0); the trees' own entry keeps theirs. The CNN's logit is the
mean over the test-time views the morph_cnn spec names (kiosk/contract/models.py `tta_mirror`,
`tta_shift_px`: the crop and its mirror at shifts 0 and +-2 px), here as in the kiosk, and the
entry records them (the fusion's weights are fitted on that mean).

The release already in models/ is scored on the same crops (as the kiosk builds its check) before
anything is written: the candidate replaces it only with a higher validation AUC (the fusion's
cross-fitted one; --always-export skips the rule), and the report sets both side by side on
validation and test, overall, on the first build's sources (faces68 + faces68_ytf) and per source.
A candidate CNN trained elsewhere (--cnn data/morph/...) is copied into models/ when it ships.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from kiosk.contract.manifest import MANIFEST, remove_entry, write_entry
from kiosk.contract.models import spec
from kiosk.runtime.forensics.morph import (
    CNN_MODEL_NAME,
    MODEL_NAME,
    MORPH_REMEDY,
    N_FEATURES,
    TREES_LOGIT,
    CnnScorer,
    cnn_tta,
    face_crop,
    features,
    morph_fusion,
    view_count,
)
from kiosk.runtime.models.fusion import CNN_LOGIT, Fusion, sigmoids
from kiosk.runtime.models.litert import make_interpreter
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.models.trees import Trees, listed_trees
from training.morph.data import METHODS, OLD_SOURCES, OUT
from training.paths import MODELS, REPORTS, WORK

REPORT = REPORTS / "morph"
CANDIDATE_CNN = WORK / "morph" / f"{CNN_MODEL_NAME}.tflite"  # training.morph.cnn writes it
SHIP_BPCER = 0.10  # the operating point of the target (APCER <= 10 % at BPCER 10 %)
# (trees, depth) tried; validation AUC picks one
CANDIDATES = ((300, 3), (300, 5))
MORPH_SOURCE = Path(features.__code__.co_filename)
# the candidate CNN's test-time views (mirror, shift px), as its entry will record them
TTA = (
    bool(spec(CNN_MODEL_NAME).parameter("tta_mirror")),
    int(spec(CNN_MODEL_NAME).parameter("tta_shift_px")),
)


def threshold_at_bpcer(bona_fide: np.ndarray, bpcer: float) -> float:
    """The lowest threshold flagging at most `bpcer` of these bona fide scores."""
    return float(np.quantile(bona_fide, 1 - bpcer, method="higher")) + 1e-9


def rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    flagged = scores >= threshold
    return {
        "apcer": round(float((~flagged[labels == 1]).mean()), 4),
        "bpcer": round(float(flagged[labels == 0].mean()), 4),
    }


def eer(scores: np.ndarray, labels: np.ndarray) -> float:
    best = 1.0
    for threshold in np.unique(scores):
        r = rates(scores, labels, threshold)
        best = min(best, max(r["apcer"], r["bpcer"]))
    return round(best, 4)


def block(scores: np.ndarray, labels: np.ndarray, thresholds: dict[str, float]) -> dict:
    """AUC, EER and APCER/BPCER at the validation thresholds; test-oracle APCER (marked)."""
    if labels.min() == labels.max():
        return {"n_morph": int(labels.sum()), "n_bona_fide": int((labels == 0).sum())}
    out: dict = {
        "n_morph": int(labels.sum()),
        "n_bona_fide": int((labels == 0).sum()),
        "auc": round(float(roc_auc_score(labels, scores)), 4),
        "eer": eer(scores, labels),
    }
    for name, threshold in thresholds.items():
        out[f"at_val_{name}"] = rates(scores, labels, threshold)
    bona = scores[labels == 0]
    for bpcer in (0.01, 0.10):
        oracle = threshold_at_bpcer(bona, bpcer)
        key = f"test_informed_apcer_at_bpcer_{round(bpcer * 100)}"
        out[key] = rates(scores, labels, oracle)["apcer"]
    return out


def bootstrap_auc(scores: np.ndarray, labels: np.ndarray, seed: int, rounds: int = 300) -> list:
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(rounds):
        pick = rng.integers(len(labels), size=len(labels))
        if labels[pick].min() != labels[pick].max():
            values.append(roc_auc_score(labels[pick], scores[pick]))
    return [round(float(v), 4) for v in np.percentile(values, [2.5, 97.5])]


def evaluate(data: dict, scores: np.ndarray, thresholds: dict[str, float], split: str) -> dict:
    """Overall, per blending method (vs all bona fide) and per post-processing (like for like)."""
    rows = data["split"] == split
    s, y = scores[rows], data["y"][rows]
    out = {"all": block(s, y, thresholds)}
    out["all"]["auc_95ci_bootstrap"] = bootstrap_auc(s, y, seed=1)
    method = data["method"][rows]
    for name in METHODS:
        keep = (method == name) | (y == 0)
        out[f"method_{name}"] = block(s[keep], y[keep], thresholds)
    for field in ("final", "resample", "blur"):
        values = data[field][rows]
        for value in sorted(set(values)):
            keep = values == value
            out[f"{field}_{value}"] = block(s[keep], y[keep], thresholds)
    weight = data["w"][rows]
    for low, high in ((0.3, 0.4), (0.4, 0.6), (0.6, 0.7)):
        keep = (y == 0) | ((weight >= low) & (weight < high + 1e-9))
        out[f"weight_{low}-{high}"] = block(s[keep], y[keep], thresholds)
    out.update(by_source(data, scores, thresholds, rows))
    return out


def by_source(data: dict, scores: np.ndarray, thresholds: dict[str, float], rows: np.ndarray):
    """Per face source (like for like: a source's morphs and bona fide images) and the first
    build's sources together (`old_sources`: faces68 + faces68_ytf, the earlier test set)."""
    if "source" not in data:
        return {}
    source, s, y = data["source"][rows], scores[rows], data["y"][rows]
    out = {}
    old = np.isin(source, OLD_SOURCES)
    if old.any() and not old.all():
        out["old_sources"] = block(s[old], y[old], thresholds)
        out["old_sources"]["auc_95ci_bootstrap"] = bootstrap_auc(s[old], y[old], seed=1)
    for name in sorted(set(source)):
        keep = source == name
        out[f"source_{name}"] = block(s[keep], y[keep], thresholds)
    return out


def fit(
    x: np.ndarray, y: np.ndarray, trees: int, depth: int, seed: int
) -> HistGradientBoostingClassifier:
    # Morphs are 3 of every 5 images: weigh the classes equally.
    model = HistGradientBoostingClassifier(
        max_iter=trees,
        max_depth=depth,
        learning_rate=0.1,
        early_stopping=False,
        class_weight="balanced",
        random_state=seed,
    )
    return model.fit(x, y)


def to_arrays(model: HistGradientBoostingClassifier, n_features: int) -> dict[str, np.ndarray]:
    """The fitted trees in the layout `Trees` evaluates (leaf values already shrunk: rate 1)."""
    nodes = [predictor[0].nodes for predictor in model._predictors]
    width = max(len(n) for n in nodes)

    def stack(get, fill, dtype):
        out = np.full((len(nodes), width), fill, dtype)
        for index, tree in enumerate(nodes):
            out[index, : len(tree)] = get(tree)
        return out

    def leaf(tree: np.ndarray) -> np.ndarray:
        return tree["is_leaf"].astype(bool)

    return {
        "feature": stack(lambda t: np.where(leaf(t), -1, t["feature_idx"]), -1, np.int32),
        "threshold": stack(lambda t: t["num_threshold"], 0.0, np.float64),
        "left": stack(lambda t: np.where(leaf(t), -1, t["left"]), -1, np.int32),
        "right": stack(lambda t: np.where(leaf(t), -1, t["right"]), -1, np.int32),
        "value": stack(lambda t: t["value"], 0.0, np.float32),
        "bias": np.array(float(np.ravel(model._baseline_prediction)[0])),
        "rate": np.array(1.0),
        "depth": np.array(max(int(t["depth"].max()) for t in nodes)),
        "n_features": np.array(n_features),
    }


def featurize(crops_path: Path) -> dict[str, np.ndarray]:
    """The stored crops' labels and provenance plus their features by the kiosk's own code,
    cached beside the crops per version of that code (a feature change recomputes them)."""
    digest = hashlib.sha256(MORPH_SOURCE.read_bytes()).hexdigest()[:12]
    cache = crops_path.with_name(f"{crops_path.stem}_features_{digest}.npz")
    with np.load(crops_path) as stored:
        data = {key: stored[key] for key in stored.files if key != "crop"}
        if cache.exists() and cache.stat().st_mtime > crops_path.stat().st_mtime:
            with np.load(cache) as cached:
                data["x"] = cached["x"]
        else:
            data["x"] = np.stack([features(crop) for crop in stored["crop"]])
            np.savez_compressed(cache, x=data["x"])
    return data


@functools.cache
def load_crops(crops_path: Path) -> np.ndarray:
    """The stored face crops (~1.2 GB for the four-source build), read once for the candidate's
    CNN and the release's alike."""
    with np.load(crops_path) as stored:
        return stored["crop"]


def bundle_scores(
    models_dir: Path, x: np.ndarray, crops_path: Path
) -> tuple[np.ndarray, dict] | None:
    """P(morph) of every crop by the morph check in `models_dir` as the kiosk builds it (its
    trees, and its CNN by its fusion weights when listed) and that bundle's own threshold: the
    release a candidate must beat (None: no morph model there). Scored before an export."""
    if not (models_dir / MANIFEST).exists():
        return None
    registry = ModelRegistry(models_dir)
    listed = listed_trees(registry, MODEL_NAME, MORPH_REMEDY)
    if listed is None:
        return None
    trees, threshold = listed
    logit = trees.logits(x.astype(np.float32))
    about = {"model": "trees", "threshold": threshold}
    if CNN_MODEL_NAME in registry.entries:
        entry = registry.entry(CNN_MODEL_NAME)
        mirror, shift_px = cnn_tta(entry.extra)  # the release's own views (none before them)
        scorer = CnnScorer(registry.verified_bytes(CNN_MODEL_NAME), 1, mirror, shift_px)
        cnn = np.array([scorer.logit(crop) for crop in load_crops(crops_path)], np.float64)
        fusion = morph_fusion(entry.extra)
        logit = fusion.log_odds({CNN_LOGIT: cnn, TREES_LOGIT: logit})
        about = {
            "model": str(entry.extra.get("shipped", "fusion")),
            "threshold": entry.threshold,
            "sha256": entry.sha256,
            "data": entry.extra.get("metrics", {}).get("data"),
            "cnn_views": scorer.views,
        }
    return sigmoids(logit), about


@dataclass(frozen=True)
class ValidationSet:
    """What a validation-only trial (tta_trial.py, swa_trial.py) scores candidates against: the
    validation rows' labels, persons (fusion folds), crops and trees' logit, and the release in
    `MODELS` as the kiosk scores it (its CNN with its own views, its own fusion weights)."""

    y: np.ndarray
    persons: np.ndarray
    crops: np.ndarray
    trees_logit: np.ndarray
    release_cnn: np.ndarray
    release: np.ndarray  # P(morph)

    @classmethod
    def load(cls, crops_path: Path) -> ValidationSet:
        data = featurize(crops_path)
        val = data["split"] == "val"
        with np.load(crops_path) as stored:
            crops = stored["crop"][val]  # validation rows only; no test row is read
        with np.load(MODELS / f"{MODEL_NAME}.npz") as stored:
            trees = Trees({key: stored[key] for key in stored.files})
        trees_logit = trees.logits(data["x"][val].astype(np.float32))
        entry = ModelRegistry(MODELS).entry(CNN_MODEL_NAME)
        own = CnnScorer(
            (MODELS / f"{CNN_MODEL_NAME}.tflite").read_bytes(), 1, *cnn_tta(entry.extra)
        )
        release_cnn = np.array([own.logit(crop) for crop in crops], np.float64)
        logits = {CNN_LOGIT: release_cnn, TREES_LOGIT: trees_logit}
        release = sigmoids(morph_fusion(entry.extra).log_odds(logits))
        return cls(data["y"][val], data["a"][val], crops, trees_logit, release_cnn, release)

    def cross_fitted(self, cnn: np.ndarray) -> np.ndarray:
        """P(morph) of `cnn`'s logit fused with the trees', cross-fitted by person."""
        return sigmoids(
            cross_fitted(np.column_stack([cnn, self.trees_logit]), self.y, self.persons)
        )

    def candidate(self, cnn: np.ndarray) -> dict:
        """A trial's record of a candidate CNN logit: the CNN alone and fused (cross-fitted)."""
        fused = self.cross_fitted(cnn)
        return {
            "cnn": val_summary(cnn, self.y),
            "fusion_cross_fitted": val_summary(fused, self.y),
            "cnn_auc_unrounded": float(roc_auc_score(self.y, cnn)),
            "fusion_auc_unrounded": float(roc_auc_score(self.y, fused)),
        }


def cnn_logits(model_path: Path, crops: np.ndarray, tta: tuple[bool, int] = TTA) -> np.ndarray:
    """The exported CNN's logit of every crop, through LiteRT as the kiosk runs it: the mean over
    the test-time views `tta` (mirror, shift px; the shipped ones by default)."""
    scorer = CnnScorer(model_path.read_bytes(), 1, *tta)
    return np.array([scorer.logit(crop) for crop in crops], np.float64)


def tta_note(views: int) -> str:
    mirror, shift_px = TTA
    what = "the crop" + (" and its mirror" if mirror else "")
    if shift_px:
        what += f", each at shifts 0 and ±{shift_px} px in x and in y (reflected border)"
    return f"the CNN's logit is the mean over {views} test-time views: {what}"


FEATURES = (CNN_LOGIT, TREES_LOGIT)  # the columns of z, as the kiosk's fusion names them
# the exported CNN's input tensor type -> its manifest `quantization` (training/morph/cnn.py)
QUANTIZATION = {
    "uint8": "int8 (full integer, representative dataset of 300 training crops)",
    "float32": "float16 weights, float32 compute (int8 cost 1.6 points of validation AUC)",
}


def quantization(path: Path) -> str:
    details = make_interpreter(path.read_bytes()).get_input_details()[0]
    return QUANTIZATION[np.dtype(details["dtype"]).name]


CNN_ALONE = Fusion(FEATURES, (1.0, 0.0), 0.0)


def fit_fusion(z: np.ndarray, y: np.ndarray, features: tuple[str, ...] = FEATURES) -> Fusion:
    """Logistic regression of the logits in z's columns (`features`: the CNN's and the trees');
    nearly unregularised (a weight per column and a bias)."""
    model = LogisticRegression(C=100.0, max_iter=1000).fit(z, y)
    weights = tuple(round(float(w), 6) for w in model.coef_[0])
    return Fusion(features, weights, round(float(model.intercept_[0]), 6))


def fused(fusion: Fusion, z: np.ndarray) -> np.ndarray:
    """The fused logit of each row of z (columns: the fusion's features), by the kiosk's own
    formula."""
    return fusion.log_odds(dict(zip(fusion.features, z.T, strict=True)))


def cross_fitted(
    z: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    folds: int = 5,
    features: tuple[str, ...] = FEATURES,
) -> np.ndarray:
    """Out-of-fold fused logits: each fold scored by weights fitted on the others."""
    out = np.zeros(len(y))
    for fit_rows, score_rows in GroupKFold(folds).split(z, y, groups):
        out[score_rows] = fused(fit_fusion(z[fit_rows], y[fit_rows], features), z[score_rows])
    return out


def val_summary(scores: np.ndarray, y: np.ndarray) -> dict:
    """AUC, EER and APCER/BPCER at this set's own BPCER 10 % and 1 % thresholds."""
    bona = scores[y == 0]
    return {
        "auc": round(float(roc_auc_score(y, scores)), 4),
        "eer": eer(scores, y),
        "at_bpcer10": rates(scores, y, threshold_at_bpcer(bona, 0.10)),
        "at_bpcer1": rates(scores, y, threshold_at_bpcer(bona, 0.01)),
    }


def write_markdown(metrics: dict) -> None:
    test, val = metrics["test"], metrics["val"]
    shipped = metrics["shipped"]
    views = (metrics.get("cnn_tta") or {}).get("views")
    tta = f"; {tta_note(views)}" if views else ""
    what = {
        "trees": f"the trees alone ({metrics['trees']} trees, depth {metrics['depth']})",
        "cnn": f"the CNN alone{tta}",
        "fusion": "the fusion of the CNN and the trees (logistic regression of their logits, "
        f"weights {json.dumps(metrics.get('fusion'))}{tta})",
    }[shipped]
    lines = [
        "# Morph attack detection (S-MAD) — measured",
        "",
        "Written by `python -m training.morph.train` (`make morph`; the CNN first: "
        "`python -m training.morph.cnn`); numbers in `metrics.json`.",
        "**All morphs are synthetic** (made here from real faces; no morph database is obtainable).",
        "Test = people never seen in training (bona fide faces and both contributors of every morph).",
        f"Faces: {' + '.join(metrics['sources'])} (crops: data/morph/{metrics['crops']}).",
        f"{'Shipped' if metrics['replaces_bundle'] else 'Candidate (NOT shipped)'}: **{what}**, "
        f"chosen on validation AUC (below). Its threshold "
        f"**{metrics['threshold']:.4f}** = validation BPCER 10 % (chosen on validation only). "
        f"Tree model size chosen on validation AUC: {metrics['trees']} trees, depth "
        f"{metrics['depth']}.",
        "",
    ]
    lines += bundle_markdown(metrics)
    comparison = metrics.get("comparison_val")
    if comparison:
        lines += [
            "## The choice, on validation only",
            "",
            "| model (validation) | AUC | EER | APCER / BPCER at val BPCER 10 % | "
            "APCER / BPCER at val BPCER 1 % |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, row in comparison.items():
            b10, b1 = row["at_bpcer10"], row["at_bpcer1"]
            lines.append(
                f"| {name} | {row['auc']:.3f} | {row['eer']:.3f} | "
                f"{b10['apcer']:.3f} / {b10['bpcer']:.3f} | {b1['apcer']:.3f} / {b1['bpcer']:.3f} |"
            )
        lines += [
            "",
            "Fusion on validation: out-of-fold scores (5 folds by person; weights fitted on the "
            "other 4). The CNN's kept epoch was also chosen on validation AUC (slightly "
            "optimistic for the CNN and the fusion alike). CNN training: "
            f"{metrics.get('cnn_training', 'not run')}.",
            "",
        ]
    lines += [
        f"## Test, scored once after the choice: the candidate's {shipped} score"
        f"{' (shipped)' if metrics['replaces_bundle'] else ''}",
        "",
        "| test set | morphs | bona fide | AUC | EER | APCER / BPCER at val BPCER 10 % | "
        "APCER / BPCER at val BPCER 1 % | APCER at test BPCER 10 % † | APCER at test BPCER 1 % † |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in test.items():
        if "auc" not in row:
            continue
        b10, b1 = row["at_val_bpcer10"], row["at_val_bpcer1"]
        lines.append(
            f"| {name} | {row['n_morph']} | {row['n_bona_fide']} | {row['auc']:.3f} | "
            f"{row['eer']:.3f} | {b10['apcer']:.3f} / {b10['bpcer']:.3f} | "
            f"{b1['apcer']:.3f} / {b1['bpcer']:.3f} | "
            f"{row['test_informed_apcer_at_bpcer_10']:.3f} | "
            f"{row['test_informed_apcer_at_bpcer_1']:.3f} |"
        )
    lines += [
        "",
        "† test-informed: the threshold is set on the test bona fide scores themselves (as "
        "FATE-MORPH-style APCER@BPCER figures are); not a figure the kiosk's threshold reaches.",
        f"Test AUC 95 % bootstrap interval (images resampled): {test['all']['auc_95ci_bootstrap']}.",
        f"Validation (shipped score): AUC {val['all']['auc']:.3f}, EER {val['all']['eer']:.3f}.",
        f"Logistic-regression baseline on the tree features: test AUC "
        f"{metrics['baseline_logistic_test_auc']:.3f} (not shipped).",
        "Per-method rows: that method's morphs against all bona fide test images. Per "
        "post-processing rows: morphs and bona fide images that got that step (like for like).",
    ]
    by_model = metrics.get("test_by_model")
    if by_model:
        lines += [
            "",
            "Every candidate on test (scored after the choice, each at its own validation BPCER "
            "10 % threshold; informed nothing): "
            + "; ".join(
                f"{name} AUC {row['auc']:.3f}, APCER {row['at_val_bpcer10']['apcer']:.3f} at "
                f"BPCER {row['at_val_bpcer10']['bpcer']:.3f}"
                for name, row in by_model.items()
            )
            + ".",
        ]
    timing = ", ".join(f"{k} {v:.1f} ms" for k, v in metrics["timing_ms"].items())
    lines += [
        "",
        f"Images: {json.dumps(metrics['images'])}; dropped (detector found not exactly one "
        f"face, or a face < 40 px): {json.dumps(metrics['dropped'])}.",
        f"Candidates (trees, depth) -> validation AUC: {json.dumps(metrics['candidates'])}.",
        f"Time per face crop on this (shared, loaded) x86 CPU, one thread: {timing}.",
    ]
    (REPORT / "README.md").write_text("\n".join(lines) + "\n")


def bundle_markdown(metrics: dict) -> list[str]:
    """The candidate beside the release it had to beat, on the same validation and test crops."""
    before = metrics.get("bundle_before")
    if not before:
        return []
    verdict = "replaces it" if metrics["replaces_bundle"] else "does not replace it: models/ kept"
    own = before["thresholds"]["bundle_threshold"]
    lines = [
        "## Candidate vs the release in models/ before this run (the one to beat)",
        "",
        f"Rule: the candidate ships only with a higher validation AUC than the release on the "
        f"same validation crops. Candidate {metrics['candidate_val_auc']:.4f} (fusion: "
        f"cross-fitted), release ({before['model']}, scored with its own "
        f"{before.get('cnn_views', 1)} CNN view(s)) {before['val_auc']:.4f}: the candidate "
        f"**{verdict}**. The release's fusion weights and kept CNN epoch were chosen on "
        "validation faces, all in this validation split (the candidate's fusion is "
        "cross-fitted): the release's validation figure is, if anything, optimistic. Test rows "
        "below were scored after that choice.",
        "",
        "| split: rows | morphs | bona fide | candidate AUC | candidate APCER / BPCER at its "
        f"val BPCER 10 % | release AUC | release APCER / BPCER at its threshold {own:.4f} | "
        "release APCER / BPCER at this val BPCER 10 % |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for split in ("val", "test"):
        for name, row in metrics[split].items():
            if "auc" not in row or not (
                name in ("all", "old_sources") or name.startswith(("source_", "method_"))
            ):
                continue
            old = before[split][name]
            mine, theirs, same = (
                row["at_val_bpcer10"],
                old["at_val_bundle_threshold"],
                old["at_val_bpcer10"],
            )
            lines.append(
                f"| {split}: {name} | {row['n_morph']} | {row['n_bona_fide']} | "
                f"{row['auc']:.3f} | {mine['apcer']:.3f} / {mine['bpcer']:.3f} | "
                f"{old['auc']:.3f} | {theirs['apcer']:.3f} / {theirs['bpcer']:.3f} | "
                f"{same['apcer']:.3f} / {same['bpcer']:.3f} |"
            )
    lines += [
        "",
        "`old_sources` = faces68 + faces68_ytf rows only (the earlier test set's people and, with "
        "the same seed, the same images); `source_*` rows: that source's morphs and bona fide "
        "images; `method_*` rows: that method's morphs against all bona fide images.",
        "",
    ]
    return lines


def compare(
    data: dict, trees_logit: np.ndarray, cnn_logit: np.ndarray | None
) -> tuple[str, dict[str, Fusion | None], dict]:
    """What ships, by validation AUC: trees, CNN or their fusion (cross-fitted on validation);
    each candidate's final weights, the fusion's fitted on all of validation (None: trees)."""
    val = data["split"] == "val"
    y = data["y"][val]
    comparison = {"trees": val_summary(trees_logit[val], y)}
    if cnn_logit is None:
        return "trees", {"trees": None}, comparison
    z = np.column_stack([cnn_logit, trees_logit])
    comparison["cnn"] = val_summary(cnn_logit[val], y)
    comparison["fusion"] = val_summary(cross_fitted(z[val], y, data["a"][val]), y)
    shipped = max(comparison, key=lambda name: comparison[name]["auc"])
    fusions = {"trees": None, "cnn": CNN_ALONE, "fusion": fit_fusion(z[val], y)}
    return shipped, fusions, comparison


def timing(trees: Trees, cnn_path: Path | None) -> dict[str, float]:
    """ms per face crop, one at a time as the kiosk scores it."""
    crops = np.random.default_rng(0).integers(0, 256, (20, 128, 128, 3), dtype=np.uint8)

    def ms(step) -> float:
        step(crops[0])
        tick = time.perf_counter()
        for crop in crops:
            step(crop)
        return (time.perf_counter() - tick) / len(crops) * 1000

    out = {
        "crop": ms(lambda c: face_crop(c, (20.0, 20.0, 100.0, 100.0))),
        "features": ms(features),
        "features + trees": ms(lambda c: trees.logits(features(c)[None])),
    }
    if cnn_path is not None:
        scorer = CnnScorer(cnn_path.read_bytes(), 1, *TTA)
        label = f"CNN (LiteRT, {scorer.views} views)"
        out[label] = ms(scorer.logit)
        out["features + trees + CNN"] = out["features + trees"] + out[label]
    return {k: round(v, 2) for k, v in out.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", dest="features", type=Path, default=OUT)
    parser.add_argument("--cnn", type=Path, default=CANDIDATE_CNN, help="the candidate CNN")
    parser.add_argument("--no-cnn", action="store_true", help="the trees only")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument(
        "--cnn-history",
        type=Path,
        default=REPORT / "cnn_history.csv",
        help="the CNN's training history (training.morph.cnn --history)",
    )
    parser.add_argument(
        "--always-export", action="store_true",
        help="export even when the bundle in models/ scores higher on validation AUC",
    )  # fmt: skip
    args = parser.parse_args(argv)
    data = featurize(args.features)
    x, y = data["x"].astype(np.float64), data["y"]
    if x.shape[1] != N_FEATURES:
        raise SystemExit(
            f"{args.features} holds {x.shape[1]} features, the kiosk {N_FEATURES}: rebuild it"
        )
    train, val, test = (data["split"] == name for name in ("train", "val", "test"))
    started = time.time()
    candidates, best = {}, None
    for trees, depth in CANDIDATES:
        model = fit(x[train], y[train], trees, depth, args.seed)
        auc = roc_auc_score(y[val], model.predict_proba(x[val])[:, 1])
        candidates[f"{trees}x{depth}"] = round(float(auc), 4)
        print(f"{trees} trees depth {depth}: val AUC {auc:.4f} ({time.time() - started:.0f} s)")
        if best is None or auc > best[0]:
            best = (auc, trees, depth, model)
    _, trees, depth, model = best
    arrays = to_arrays(model, N_FEATURES)
    trees_logit = Trees(arrays).logits(x.astype(np.float32))
    assert np.allclose(sigmoids(trees_logit), model.predict_proba(x)[:, 1], atol=1e-4), (
        "tree export differs"
    )
    cnn_path = None if args.no_cnn or not args.cnn.exists() else args.cnn
    cnn_logit = None
    if cnn_path is not None:
        cnn_logit = cnn_logits(cnn_path, load_crops(args.features))
    shipped, fusions, comparison = compare(data, trees_logit, cnn_logit)
    fusion = fusions[shipped]
    print(f"validation: {json.dumps(comparison)}\nshipped: {shipped}")

    def threshold_of(scores: np.ndarray, bpcer: float) -> float:
        return threshold_at_bpcer(scores[val & (y == 0)], bpcer)

    candidate_scores = {"trees": sigmoids(trees_logit)}
    if cnn_logit is not None:
        z = np.column_stack([cnn_logit, trees_logit])
        candidate_scores["cnn"] = sigmoids(cnn_logit)
        candidate_scores["fusion"] = sigmoids(fused(fusions["fusion"], z))
    scores = candidate_scores[shipped]
    thresholds = {"bpcer10": threshold_of(scores, 0.10), "bpcer1": threshold_of(scores, 0.01)}
    bundle = bundle_scores(MODELS, x, args.features)  # before an export replaces it
    candidate_val_auc = comparison[shipped]["auc"]  # the fusion's cross-fitted
    replaces = bundle is None or args.always_export
    against = None
    if bundle is not None:
        bundle_score, about = bundle
        bundle_thresholds = {
            "bundle_threshold": float(about["threshold"]),
            "bpcer10": threshold_of(bundle_score, 0.10),
        }
        bundle_val_auc = round(float(roc_auc_score(y[val], bundle_score[val])), 4)
        replaces = replaces or candidate_val_auc > bundle_val_auc
        print(f"validation AUC: candidate {candidate_val_auc}, models/ {bundle_val_auc}")
    # Test from here on: the choice above is made.
    if bundle is not None:
        against = {
            **about,
            "val_auc": bundle_val_auc,
            "thresholds": {k: round(v, 6) for k, v in bundle_thresholds.items()},
            "val": evaluate(data, bundle_score, bundle_thresholds, "val"),
            "test": evaluate(data, bundle_score, bundle_thresholds, "test"),
        }
    test_by_model = {
        name: block(s[test], y[test], {"bpcer10": threshold_of(s, 0.10)})
        for name, s in candidate_scores.items()
    }
    baseline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    baseline.fit(x[train], y[train])
    baseline_auc = roc_auc_score(y[test], baseline.predict_proba(x[test])[:, 1])
    history = args.cnn_history
    metrics = {
        "shipped": shipped,
        "replaces_bundle": replaces,
        "candidate_val_auc": candidate_val_auc,
        "bundle_before": against,
        "crops": args.features.name,
        "sources": sorted(set(data["source"])) if "source" in data else list(OLD_SOURCES),
        "threshold": round(thresholds["bpcer10"], 6),
        "thresholds_from_val": {k: round(v, 6) for k, v in thresholds.items()},
        "fusion": None if fusion is None else fusion.as_dict(),
        "cnn_tta": None
        if cnn_path is None
        else {
            "mirror": TTA[0],
            "shift_px": TTA[1],
            "views": view_count(*TTA),
        },
        "trees": trees,
        "depth": depth,
        "candidates": candidates,
        "comparison_val": comparison,
        "val": evaluate(data, scores, thresholds, "val"),
        "test": evaluate(data, scores, thresholds, "test"),
        "test_by_model": test_by_model,
        "trees_threshold": round(threshold_of(candidate_scores["trees"], 0.10), 6),
        "baseline_logistic_test_auc": round(float(baseline_auc), 4),
        "images": {
            split: {
                "morph": int(y[data["split"] == split].sum()),
                "bona_fide": int((y[data["split"] == split] == 0).sum()),
            }
            for split in ("train", "val", "test")
        },
        "dropped": {k[8:]: int(v) for k, v in data.items() if k.startswith("dropped_")},
        "timing_ms": timing(Trees(arrays), cnn_path),
        "seed": args.seed,
        "synthetic_morphs": True,
    }
    metrics["feature_ms"] = metrics["timing_ms"]["features"]
    metrics["check_ms"] = metrics["timing_ms"].get(
        "features + trees + CNN", metrics["timing_ms"]["features + trees"]
    )
    if cnn_path is not None and history.exists():
        epochs = np.genfromtxt(history, delimiter=",", names=True)
        metrics["cnn_training"] = (
            f"{len(epochs)} epochs, best Keras (float) validation AUC "
            f"{float(np.max(epochs['val_auc'])):.3f} at epoch {int(np.argmax(epochs['val_auc'])) + 1}"
            f" (history: {history.name})"
        )
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    write_markdown(metrics)
    print(json.dumps(metrics["test"]["all"], indent=1))
    if args.no_export or not replaces:
        return
    target = MODELS / f"{CNN_MODEL_NAME}.tflite"
    if cnn_path is not None and cnn_path.resolve() != target.resolve():
        cnn_path = Path(shutil.copyfile(cnn_path, target))  # a candidate trained elsewhere
    export(metrics, arrays, test_by_model, cnn_path, fusion)


def export(
    metrics: dict,
    arrays: dict[str, np.ndarray],
    test_by_model: dict,
    cnn_path: Path | None,
    fusion: Fusion | None,
) -> None:
    """models/morph.npz with its entry (the trees alone: their own threshold and test figures)
    and, when the CNN or the fusion won, the `morph_cnn` entry with the shipped threshold."""
    path = MODELS / f"{MODEL_NAME}.npz"
    np.savez_compressed(path, **arrays)
    model_spec = spec(MODEL_NAME)
    trees_test = test_by_model["trees"]
    digest = hashlib.sha256(json.dumps(metrics["images"]).encode()).hexdigest()[:16]
    data_note = f"synthetic morphs of {' + '.join(metrics['sources'])}, split by person/photo"
    write_entry(
        MODELS,
        MODEL_NAME,
        path,
        **model_spec.entry_fields(),
        quantization="none (tree arrays: float64 split thresholds, float32 leaf values; numpy)",
        threshold=metrics["trees_threshold"],
        metrics={
            "threshold": metrics["trees_threshold"],
            **_test_figures(trees_test),
            "threshold_source": model_spec.threshold_source,
            "data": data_note,
        },
        data_digest=digest,
    )
    if fusion is None or cnn_path is None:  # the trees alone ship: an older CNN entry would
        remove_entry(MODELS, CNN_MODEL_NAME)  # fuse with them by weights fitted on other trees
        return
    cnn_spec = spec(CNN_MODEL_NAME)
    overall = metrics["test"]["all"]
    write_entry(
        MODELS,
        CNN_MODEL_NAME,
        cnn_path,
        **cnn_spec.entry_fields(),
        quantization=quantization(cnn_path),
        threshold=metrics["threshold"],
        fusion=fusion.as_dict(),
        tta_mirror=int(TTA[0]),
        tta_shift_px=TTA[1],
        shipped=metrics["shipped"],
        metrics={
            "threshold": metrics["threshold"],
            "val_auc": metrics["comparison_val"][metrics["shipped"]]["auc"],
            **_test_figures(overall),
            "threshold_source": cnn_spec.threshold_source,
            "data": data_note,
        },
        data_digest=digest,
    )


def _test_figures(row: dict) -> dict:
    """A test row's figures as a manifest entry's metrics name them."""
    at = row["at_val_bpcer10"]
    return {
        "test_auc": row["auc"],
        "test_eer": row["eer"],
        "test_apcer_at_val_bpcer10": at["apcer"],
        "test_bpcer_at_val_bpcer10": at["bpcer"],
    }


if __name__ == "__main__":
    main()
