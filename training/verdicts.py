"""Thresholds, fusion and per-source tables from the per-face rows of `training.evaluate_faces`.

Protocol (issue 12 items 3-5):
- Choices (threshold, fusion weights) use only the *validation* split of every source, faces cut
  by the kiosk pipeline; weak-label and synthetic sources are reported, never chosen on.
- The threshold is the one that holds across sources: on validation it minimises the worst
  per-source error (FNR of a source of failures, FPR of a source of compliant faces).
- Fusion: a logistic regression of the CNN logit and the check's landmark measure, each source
  weighted equally, fitted on validation; shipped only if it beats the CNN alone on the held-out
  sources (a choice that looked at test data: marked in the tables).
- Reported on every split but validation ("test" rows: the test split of sources the models were
  trained on, train + test of sources they never saw); end-to-end rates count a face the detector
  missed as an error. Leave-one-source-out: the choices are made again without any row of one
  held-out dataset and reported on all of it.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import det_curve

from kiosk.contract.fileio import write_atomically
from kiosk.contract.manifest import ModelEntry, load_manifest, write_entry
from kiosk.runtime.models.fusion import CNN_LOGIT, Fusion, logit, sigmoids
from training.evaluate_faces import FINGERPRINT, faces_file
from training.metrics import eer_point
from training.paths import MODELS, REPORTS
from training.review import several_people

logger = logging.getLogger(__name__)

MISS = ("no_face", "several_faces")  # the detector failed the applicant
MIN_UNIT = 15  # detected validation faces a source needs to take part in a choice
CROP_KEYS = ("n", "positives", "auc", "eer")
MIN_COMPARED = 30  # faces a source needs for its error to decide whether fusion ships
RESAMPLES = 300  # bootstrap resamples behind an EER's 95 % interval
# Thresholds of models/manifest.json before issue 12 (reports compare against them).
BEFORE = {
    "eyes_closed": 0.3393464684486389,
    "mouth_open": 0.2827220559120178,
    "veil": 0.859516978263855,
}


@dataclass(frozen=True)
class EvalSet:
    name: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]
    held_out: bool
    target: float  # EER target of item 4 (nan: none)


@dataclass(frozen=True)
class Verdict:
    model: str
    label: str  # label column
    cnn: str  # CNN score column
    geometry: str | None  # landmark measure column
    sign: float  # +1: a larger measure means the failure
    trained_on: tuple[str, ...]  # datasets whose train split trained the CNN
    weak: tuple[str, ...]  # sources with weak labels: reported, not chosen on
    sets: tuple[EvalSet, ...]
    # More CNN score columns the fusion may use, as their logits: column -> fusion feature (the
    # kiosk check's name). Rows without the column (an older file) fit the fusion without it.
    more_scores: tuple[tuple[str, str], ...] = ()

    @property
    def feature(self) -> str:
        return {"ear_min": "eye_aspect_ratio", "mouth_opening": "mouth_opening"}[self.geometry]


VERDICTS = {
    v.model: v
    for v in (
        # The eye CNN trains on the train split of faces68, CEW and mask/without_mask (pipeline
        # crops); faces68_ytf is the source it never saw (eyes reviewed by eye on a sample:
        # training/review.py), and its reviewed closed faces the only unseen closed ones.
        Verdict(
            "eyes_closed", "eyes", "eyes_cnn", "ear_min", -1.0,
            ("faces68", "eyes_closed_faces", "mask"), (),
            (
                EvalSet("CEW test closed vs YTF reviewed open (YTF never trained on)", ("eyes_closed_faces",), ("faces68_ytf",), True, 0.03),
                EvalSet("YTF reviewed: closed vs open (never trained on)", ("faces68_ytf",), ("faces68_ytf",), True, 0.03),
                EvalSet("CEW test closed vs mask/without_mask test open", ("eyes_closed_faces",), ("mask/without_mask",), False, 0.03),
                EvalSet("CEW test closed vs all open (YTF, mask test)", ("eyes_closed_faces",), ("faces68_ytf", "mask/without_mask"), False, 0.03),
                EvalSet("faces68 test (hand EAR labels)", ("faces68",), ("faces68",), False, 0.03),
            ),
            (("eyes_cnn_lower", "lower_eye_cnn_logit"),),
        ),
        # The shipped mouth CNN never saw CEW nor YouTube's faces (both reviewed by eye).
        # training/collect.py can add CEW's train-split mouths to the mouth crops (a trial): a
        # mouth CNN trained on those must add "eyes_closed_faces" to trained_on (and the CEW set
        # becomes its test split) before it is judged here.
        Verdict(
            "mouth_open", "mouth", "mouth_cnn", "mouth_opening", 1.0, ("mouth", "faces68"), (),
            (
                EvalSet("faces68 test, OFIQ rule on hand landmarks", ("faces68",), ("faces68",), True, 0.06),
                EvalSet("CEW mouths reviewed by eye (never trained on)", ("eyes_closed_faces",), ("eyes_closed_faces",), True, 0.06),
                EvalSet("YouTube mouths reviewed by eye (never trained on)", ("faces68_ytf",), ("faces68_ytf",), True, 0.06),
                EvalSet("mouth/ test (reviewed by eye, training source)", ("mouth",), ("mouth",), False, 0.06),
            ),
        ),
        Verdict(
            "veil", "veil", "veil_cnn", None, 1.0, ("mask", "faces68", "mouth"),
            ("synthetic/faces68", "synthetic/mask/without_mask"),
            (
                EvalSet("Kaggle crowd crops: with vs without mask", ("mask_kaggle_faces/with_mask",), ("mask_kaggle_faces/without_mask",), True, 0.025),
                EvalSet("web mask portraits vs held-out clean faces", ("mask_web_types",), ("faces68_ytf", "eyes_closed_faces", "mask_kaggle_faces/without_mask"), True, 0.025),
                EvalSet("all held-out real masks vs held-out clean faces", ("mask_kaggle_faces/with_mask", "mask_web_types"), ("faces68_ytf", "eyes_closed_faces", "mask_kaggle_faces/without_mask"), True, 0.025),
                EvalSet("mask/ test: real masks vs without (training source)", ("mask/with_mask",), ("mask/without_mask",), False, 0.025),
                EvalSet("synthetic overlays vs the same faces clean (test)", ("synthetic/faces68", "synthetic/mask/without_mask"), ("faces68", "mask/without_mask"), False, 0.025),
            ),
        ),
    )
}  # fmt: skip


class Faces:
    """The per-face rows as columns."""

    def __init__(self, rows: list[dict[str, str]]) -> None:
        self.n = len(rows)
        col = lambda k: np.array([r[k] for r in rows])  # noqa: E731
        num = lambda k: np.array([float(r[k]) if r.get(k) else np.nan for r in rows])  # noqa: E731
        for key in ("dataset", "split", "source", "outcome", "group"):
            setattr(self, key, col(key))
        numeric = ("eyes", "mouth", "veil", "eyes_cnn", "ear_min", "mouth_cnn", "mouth_opening")
        for key in (*numeric, "veil_cnn", "eyes_cnn_lower"):  # an absent column: NaN
            setattr(self, key, num(key))
        self.detected = self.outcome == "ok"
        # "several faces" on a photo reviewed as several people is the right answer, not a miss
        reviewed = np.isin([r.get("path", "") for r in rows], sorted(several_people()))
        self.several_people = (self.outcome == "several_faces") & reviewed
        self.missed = np.isin(self.outcome, MISS) & ~self.several_people
        self.fingerprints = {
            column: np.array([r.get(column) or "" for r in rows])
            for column in (*FINGERPRINT.values(), "face_models")
        }
        self.models: dict[str, str] = {}  # fingerprint column -> sha256 prefix (`read`)

    @classmethod
    def read(cls, path: Path) -> Faces:
        with open(path, newline="") as handle:
            faces = cls(list(csv.DictReader(handle)))
        faces.models = faces.fingerprint(path)
        return faces

    def fingerprint(self, path: Path) -> dict[str, str]:
        """Each model's sha256 prefix, the same on every row that ran and carries that model's
        label (the detector and landmark models: every row); SystemExit when rows were scored by
        different models (rows kept by `evaluate_faces --reuse` from an older bundle): a
        threshold chosen on them would describe no model."""
        ran = ~np.char.startswith(self.outcome.astype(str), "unreadable")
        labelled = {FINGERPRINT[m]: ~np.isnan(getattr(self, v.label)) for m, v in VERDICTS.items()}
        found = {}
        for column, values in self.fingerprints.items():
            seen = sorted(set(values[ran & labelled.get(column, True)]))
            if not seen:  # no row for this model: nothing to judge it by
                continue
            if len(seen) != 1 or not seen[0]:
                raise SystemExit(
                    f"{path}: {column} differs between rows ({', '.join(s or 'none' for s in seen)})"
                    ": the scores come from different models; run `python -m "
                    "training.evaluate_faces` again without --reuse"
                )
            found[column] = seen[0]
        return found


def scores(faces: Faces, v: Verdict, method: str, fusion: Fusion | None = None) -> np.ndarray:
    """Higher = the failure. cnn: the CNN probability; geometry: the signed measure; fused."""
    cnn = getattr(faces, v.cnn)
    if method == "cnn":
        return cnn
    geometry = v.sign * getattr(faces, v.geometry)
    if method == "geometry":
        return geometry
    values = {CNN_LOGIT: _logits(cnn)}
    values[v.feature] = getattr(faces, v.geometry)
    values |= {feature: _logits(getattr(faces, column)) for column, feature in v.more_scores}
    return sigmoids(fusion.log_odds(values))


def _logits(score: np.ndarray) -> np.ndarray:
    return np.vectorize(logit)(np.nan_to_num(score, nan=0.5))


def units(faces: Faces, v: Verdict, keep: np.ndarray) -> dict[tuple[str, int], np.ndarray]:
    """(source, label) -> rows (with a 0/1 label) among `keep`."""
    label = getattr(faces, v.label)
    out = {}
    for source in sorted(set(faces.source[keep])):
        for value in (1, 0):
            rows = keep & (faces.source == source) & (label == value)
            if rows.any():
                out[(source, value)] = rows
    return out


def unit_error(score: np.ndarray, positive: int, threshold: float) -> float:
    flagged = score >= threshold
    return float(np.mean(~flagged if positive else flagged)) if len(score) else math.nan


def choose_threshold(faces: Faces, v: Verdict, score: np.ndarray, keep: np.ndarray) -> float:
    """The validation threshold with the smallest worst-source error (ties: smallest mean)."""
    chosen = {
        k: score[rows & faces.detected]
        for k, rows in units(faces, v, keep).items()
        if k[0] not in v.weak and (rows & faces.detected).sum() >= MIN_UNIT
    }
    if {p for _, p in chosen} != {0, 1}:
        raise ValueError("a choice needs a source of failures and one of compliant faces")
    candidates = np.unique(np.concatenate(list(chosen.values())))
    errors = np.array(
        [
            [(s < candidates[:, None]).mean(1) if p else (s >= candidates[:, None]).mean(1)]
            for (_, p), s in chosen.items()
        ]
    )[:, 0, :]
    worst, mean = errors.max(0), errors.mean(0)
    best = np.lexsort((mean, worst))[0]
    return float(candidates[best])


def fit_fusion(faces: Faces, v: Verdict, keep: np.ndarray) -> Fusion:
    """Logistic regression of (CNN logit, measure, `more_scores` logits where the rows have them)
    on validation faces, sources weighted equally."""
    label = getattr(faces, v.label)
    rows = keep & faces.detected & np.isin(label, (0, 1)) & ~np.isin(faces.source, v.weak)
    names, columns = [CNN_LOGIT, v.feature], [_logits(getattr(faces, v.cnn)[rows])]
    columns.append(getattr(faces, v.geometry)[rows])
    for column, feature in v.more_scores:
        values = getattr(faces, column)[rows]
        if np.isfinite(values).all():
            names.append(feature)
            columns.append(_logits(values))
    x = np.column_stack(columns)
    y = label[rows].astype(int)
    weight = np.zeros(len(y))
    keys = [f"{s}:{c}" for s, c in zip(faces.source[rows], y, strict=True)]
    for key in set(keys):
        mask = np.array([k == key for k in keys])
        weight[mask] = 1.0 / mask.sum()
    mean, scale = x.mean(0), x.std(0) + 1e-9
    model = LogisticRegression(C=1.0).fit((x - mean) / scale, y, sample_weight=weight * len(y))
    coef = model.coef_[0] / scale
    bias = float(model.intercept_[0] - np.sum(coef * mean))
    return Fusion(tuple(names), tuple(round(float(c), 6) for c in coef), round(bias, 6))


def eer(score: np.ndarray, faces: Faces, v: Verdict, s: EvalSet, keep: np.ndarray) -> dict:
    label = getattr(faces, v.label)
    rows = keep & faces.detected
    pos = rows & np.isin(faces.source, s.positives) & (label == 1)
    neg = rows & np.isin(faces.source, s.negatives) & (label == 0)
    if not pos.any() or not neg.any():
        return {"n_pos": int(pos.sum()), "n_neg": int(neg.sum()), "eer": math.nan}
    y = np.concatenate([np.ones(pos.sum()), np.zeros(neg.sum())])
    values = np.concatenate([score[pos], score[neg]])
    value, _ = eer_point(y, values)
    groups = np.concatenate([faces.group[pos], faces.group[neg]])
    return {
        "n_pos": int(pos.sum()),
        "n_neg": int(neg.sum()),
        "eer": round(float(value), 5),
        "eer_95ci": eer_interval(y, values, groups),
    }


def eer_interval(
    labels: np.ndarray, values: np.ndarray, groups: np.ndarray, resamples: int = RESAMPLES
) -> list[float]:
    """95 % bootstrap interval of the EER: whole groups resampled (a person's or a photo's
    faces together, training.splits), failures' and compliant groups apart so that every
    resample has both. A group drawn k times weighs k (det_curve's sample weights), which gives
    the same curve as repeating its rows. Seeded: a report reads the same on every run."""
    rng = np.random.default_rng(0)
    weights = []
    for label in (1, 0):
        codes = np.unique(groups[labels == label], return_inverse=True)[1]
        drawn = rng.integers(codes.max() + 1, size=(resamples, codes.max() + 1))
        counts = np.stack([np.bincount(row, minlength=codes.max() + 1) for row in drawn])
        weights.append(counts[:, codes])
    order = np.concatenate([np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)])
    y, v = labels[order], values[order]
    eers = []
    for w in np.concatenate(weights, axis=1):
        fpr, fnr, _ = det_curve(y, v, sample_weight=w)
        best = int(np.argmin(np.abs(fnr - fpr)))
        eers.append((fnr[best] + fpr[best]) / 2)
    low, high = np.percentile(eers, [2.5, 97.5])
    return [round(float(low), 5), round(float(high), 5)]


def source_rows(
    faces: Faces, v: Verdict, score: np.ndarray, keep: np.ndarray, thresholds: dict[str, float]
) -> list[dict]:
    """Per source: counts, face misses and the error at each threshold (detected and end to end)."""
    out = []
    for (source, positive), rows in units(faces, v, keep).items():
        detected = rows & faces.detected
        missed = rows & faces.missed
        counted = int(detected.sum() + missed.sum())
        row = {
            "source": source,
            "class": "failure" if positive else "compliant",
            "n": int(rows.sum()),
            "face_missed": int(missed.sum()),
            "too_small": int((rows & (faces.outcome == "face_too_small")).sum()),
            "several_people": int((rows & faces.several_people).sum()),
            "weak": source in v.weak,
        }
        for name, t in thresholds.items():
            err = unit_error(score[detected], positive, t)
            wrong = err * detected.sum() + missed.sum()
            row[name] = {"error": _r(err), "end_to_end": _r(wrong / counted) if counted else None}
        out.append(row)
    return out


def _r(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 5)


def reported(faces: Faces, v: Verdict) -> np.ndarray:
    """Rows a verdict may be reported on: neither validation nor its model's training rows."""
    trained = np.isin(faces.dataset, v.trained_on) & (faces.split == "train")
    return (faces.split != "val") & ~trained


def evaluate(faces: Faces, v: Verdict, previous: float) -> dict:
    """Choices on validation and figures on the reported rows."""
    val = faces.split == "val"
    test = reported(faces, v)
    methods = ["cnn"] + (["geometry", "fused"] if v.geometry else [])
    fusion = fit_fusion(faces, v, val) if v.geometry else None
    result: dict = {"model": v.model, "methods": {}}
    for method in methods:
        score = scores(faces, v, method, fusion)
        threshold = choose_threshold(faces, v, score, val)
        thresholds = {"chosen": threshold}
        if method == "cnn":
            thresholds = {"before": previous, "chosen": threshold}
        result["methods"][method] = {
            "threshold": round(threshold, 6),
            "eer": {s.name: eer(score, faces, v, s, test) for s in v.sets},
            "sources": source_rows(faces, v, score, test, thresholds),
            "loso": loso(faces, v, method),
        }
    if fusion is not None:
        result["fusion"] = fusion.as_dict()
        result["ship_fusion"] = fused_wins(result)
    return result


def operating_point(
    faces: Faces, v: Verdict, entry: ModelEntry | None, scored_by: str
) -> dict | None:
    """Every reported source at the threshold (and fusion) the bundle's `entry` applies; None
    unless `entry` is the model that made the rows' scores (a candidate's rows against models/
    would mix two models)."""
    if entry is None or entry.threshold is None or not entry.sha256.startswith(scored_by):
        return None
    known = {v.feature, *(f for _, f in v.more_scores)} if v.geometry else set()
    used = Fusion.from_entry(entry.extra, v.model, known)
    score = scores(faces, v, "fused" if used else "cnn", used)
    return {
        "method": "fused" if used else "cnn",
        "threshold": entry.threshold,
        "sources": source_rows(faces, v, score, reported(faces, v), {"shipped": entry.threshold}),
    }


def loso(faces: Faces, v: Verdict, method: str) -> list[dict]:
    """Leave one held-out dataset out of every choice, report on all of it."""
    val = faces.split == "val"
    out = []
    for dataset in sorted(set(faces.dataset) - set(v.trained_on)):
        other = val & (faces.dataset != dataset)
        try:
            fusion = fit_fusion(faces, v, other) if method == "fused" else None
            score = scores(faces, v, method, fusion)
            threshold = choose_threshold(faces, v, score, other)
        except ValueError:  # the data left do not allow a choice (a class or a source missing)
            continue
        held = faces.dataset == dataset
        rows = source_rows(faces, v, score, held, {"loso": threshold})
        if rows:
            out.append({"left_out": dataset, "threshold": round(threshold, 6), "sources": rows})
    return out


def deciding_sets(v: Verdict) -> list[str]:
    """The evaluation sets whose mean EER decides (fusion, a retrained model): held out and with
    a target; a set without one is reported only."""
    return [s.name for s in v.sets if s.held_out and math.isfinite(s.target)]


def decision_figures(result: dict, method: str) -> tuple[float, float]:
    """What a decision compares: `method`'s mean EER on the held-out sets with a target, and its
    worst per-source error at its chosen threshold (sources of at least MIN_COMPARED faces, weak
    ones left out: one face of 11 is 9 %)."""
    held = deciding_sets(VERDICTS[result["model"]])
    figures = result["methods"][method]
    mean = float(np.nanmean([figures["eer"][name]["eer"] for name in held]))
    worst = max(
        r["chosen"]["error"] or 0.0
        for r in figures["sources"]
        if not r["weak"] and r["n"] >= MIN_COMPARED
    )
    return mean, worst


def _both_lower(a: tuple[float, float], b: tuple[float, float]) -> bool:
    return a[0] < b[0] and a[1] < b[1]


def fused_wins(result: dict) -> bool:
    """Fusion ships if its decision figures (mean held-out EER, worst source) are both below the
    CNN's. Decided on test rows: marked in the report."""
    return _both_lower(decision_figures(result, "fused"), decision_figures(result, "cnn"))


def shipped_method(result: dict) -> str:
    return "fused" if result.get("ship_fusion") else "cnn"


def retrained_wins(new: dict, old: dict) -> bool:
    """A retrained model replaces the shipped one only if, each with its own validation choices
    (threshold, fusion), its decision figures for the method it would ship are both lower.
    Looks at test rows (‡)."""
    return _both_lower(
        decision_figures(new, shipped_method(new)), decision_figures(old, shipped_method(old))
    )


def render_comparison(model: str, new: dict, old: dict) -> str:
    """Retrained vs shipped model on the same rows, each with its own validation choices."""
    v = VERDICTS[model]
    lines = [
        f"### {model}: retrained vs shipped before (same rows; each with its own validation "
        "threshold and fusion)",
        "",
        f"Retrained model wins (mean held-out EER and worst source error both lower) ‡: "
        f"**{'yes' if retrained_wins(new, old) else 'no'}**.",
        "",
        "| evaluation set | held-out | method | EER shipped before | EER retrained |",
        "|---|---|---|---|---|",
    ]
    for s in v.sets:
        for m in new["methods"]:
            lines.append(
                f"| {s.name} | {'yes' if s.held_out else 'no'} | {m} | "
                f"{_pct(old['methods'][m]['eer'][s.name]['eer'])} | "
                f"{_pct(new['methods'][m]['eer'][s.name]['eer'])} |"
            )
    old_m, new_m = shipped_method(old), shipped_method(new)
    lines += [
        "",
        f"Per source at the chosen threshold: before {old_m} "
        f"{old['methods'][old_m]['threshold']:.4g}, retrained {new_m} "
        f"{new['methods'][new_m]['threshold']:.4g} (error / e2e):",
        "",
        "| source | class | n | shipped before | retrained |",
        "|---|---|---|---|---|",
    ]
    before = {(r["source"], r["class"]): r for r in old["methods"][old_m]["sources"]}
    for row in new["methods"][new_m]["sources"]:
        was = before.get((row["source"], row["class"]))
        cell = lambda r: f"{_pct(r['chosen']['error'])} / {_pct(r['chosen']['end_to_end'])}"  # noqa: E731
        lines.append(
            f"| {row['source']} | {row['class']} | {row['n']} | "
            f"{cell(was) if was else '—'} | {cell(row)} |"
        )
    lines += [
        "",
        "Leave one source out (choices made without any row of it; all its rows):",
        "",
        "| left out | model | method | threshold | class | n | error | e2e |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, result in (("shipped before", old), ("retrained", new)):
        for m in result["methods"]:
            for block in result["methods"][m]["loso"]:
                for row in block["sources"]:
                    lines.append(
                        f"| {block['left_out']} | {label} | {m} | {block['threshold']:.4g} | "
                        f"{row['class']} | {row['n']} | {_pct(row['loso']['error'])} | "
                        f"{_pct(row['loso']['end_to_end'])} |"
                    )
    return "\n".join([*lines, ""])


def _pct(value: float | None) -> str:
    return (
        "—"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{100 * value:.1f} %"
    )


def _eer_cell(found: dict) -> str:
    """The EER and, where known, its 95 % interval: "2.7 % (1.2-4.5)"."""
    low_high = found.get("eer_95ci")
    if not low_high or math.isnan(found["eer"]):
        return _pct(found["eer"])
    return f"{_pct(found['eer'])} ({100 * low_high[0]:.1f}-{100 * low_high[1]:.1f})"


def render(results: dict[str, dict], detector: str) -> str:
    lines = [
        f"# Per-face verdicts, whole pipeline ({detector} detector)",
        "",
        "Generated by `make verdicts` (training/evaluate_faces.py, then training/verdicts.py); "
        "protocol in docs/verdicts.md. Rates are per face. *error* = FNR for a source of "
        "failures (closed eyes, open mouths, covered faces), FPR for a source of compliant faces, "
        "on faces the detector found; *e2e* also counts a face the detector missed (no face / "
        'several faces) as an error, except "several faces" on a photo reviewed as several '
        "people (training/labels/several_people.csv: the right answer, counted apart). A face "
        "under 40 px is *too small* (not a miss: a kiosk asks the applicant to come closer). "
        "Rows exclude every validation face. EER cells give a 95 % bootstrap interval in "
        "brackets (whole groups - a person's or a photo's faces - resampled 300 times). "
        "† = this source's "
        "validation part took part in the choice of the threshold (its reported rows did not); "
        "‡ = a decision that looked at these rows (fusion shipped or not).",
        "",
    ]
    for model, r in results.items():
        v = VERDICTS[model]
        cnn = r["methods"]["cnn"]
        lines += [f"## {model}", "", f"Scores of model sha256 {r['scored_by']}….", ""]
        header = "| evaluation set | held-out | n fail / ok | target | " + " | ".join(
            f"EER {m}" for m in r["methods"]
        )
        lines += [header + " |", "|---|---|---|---|" + "---|" * len(r["methods"])]
        for s in v.sets:
            first = cnn["eer"][s.name]
            cells = " | ".join(_eer_cell(r["methods"][m]["eer"][s.name]) for m in r["methods"])
            target = "—" if math.isnan(s.target) else f"≤ {100 * s.target:.1f} %"
            lines.append(
                f"| {s.name} | {'yes' if s.held_out else 'no'} | {first['n_pos']} / "
                f"{first['n_neg']} | {target} | {cells} |"
            )
        lines += [""]
        if "fusion" in r:
            f = r["fusion"]
            terms = " + ".join(
                f"{w:.4g}·{n}" for n, w in zip(f["features"], f["weights"], strict=True)
            )
            lines += [
                f"Fusion (validation fit): score = sigmoid({f['bias']:.4g} + {terms}); "
                f"shipped: **{'yes' if r['ship_fusion'] else 'no'}** ‡.",
                "",
            ]
        thr = " · ".join(f"{m} {r['methods'][m]['threshold']:.4g}" for m in r["methods"])
        shipped = r.get("shipped")
        now = (
            f"; **shipped** (what the kiosk applies): {shipped['method']} {shipped['threshold']:.4g}"
            if shipped
            else ""
        )
        lines += [
            f"Thresholds chosen on validation (worst source smallest): {thr}; before issue 12: "
            f"{BEFORE[model]:.4g} (CNN){now}.",
            "",
            "| source | class | n | face missed | too small | several people | "
            "CNN @ before: error / e2e | "
            + ("shipped: error / e2e | " if shipped else "")
            + " | ".join(f"{m} @ chosen: error / e2e" for m in r["methods"])
            + " |",
            "|---|---|---|---|---|---|---|"
            + ("---|" if shipped else "")
            + "---|" * len(r["methods"]),
        ]
        for i, row in enumerate(cnn["sources"]):
            mark = " (weak labels)" if row["weak"] else " †"
            cells = [f"{_pct(row['before']['error'])} / {_pct(row['before']['end_to_end'])}"]
            if shipped:
                now_row = shipped["sources"][i]["shipped"]
                cells.append(f"{_pct(now_row['error'])} / {_pct(now_row['end_to_end'])}")
            for m in r["methods"]:
                other = r["methods"][m]["sources"][i]["chosen"]
                cells.append(f"{_pct(other['error'])} / {_pct(other['end_to_end'])}")
            lines.append(
                f"| {row['source']}{mark} | {row['class']} | {row['n']} | {row['face_missed']} | "
                f"{row['too_small']} | {row['several_people']} | " + " | ".join(cells) + " |"
            )
        lines += [
            "",
            "Leave one source out (choices made without any row of it; all its rows):",
            "",
        ]
        lines += [
            "| left out | method | threshold | source | class | n | error | e2e |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for m in r["methods"]:
            for block in r["methods"][m]["loso"]:
                for row in block["sources"]:
                    lines.append(
                        f"| {block['left_out']} | {m} | {block['threshold']:.4g} | {row['source']} | "
                        f"{row['class']} | {row['n']} | {_pct(row['loso']['error'])} | "
                        f"{_pct(row['loso']['end_to_end'])} |"
                    )
        lines.append("")
    return "\n".join(lines)


def adopt(candidate: Path, models_dir: Path, model: str) -> None:
    """Take `model`'s file and manifest entry from a candidate bundle into `models_dir`: the very
    bytes its per-face rows were scored with (an export embeds its own time, so exporting the
    same checkpoint again gives another sha256, which `ship` would rightly refuse)."""
    entry = json.loads((candidate / "manifest.json").read_text())["models"][model]
    target = models_dir / entry["file"]
    write_atomically(target, (candidate / entry["file"]).read_bytes())
    reserved = ("file", "sha256", "bytes", "exported", "git_revision")
    write_entry(models_dir, model, target, **{k: v for k, v in entry.items() if k not in reserved})


def ship(models_dir: Path, model: str, r: dict, scored_by: str) -> None:
    """Write the chosen threshold (and fusion when it won) into the model's manifest entry;
    `scored_by` = the sha256 prefix of the model that made the rows' scores."""
    entry = load_manifest(models_dir).models[model]
    if scored_by == "none" or not entry.sha256.startswith(scored_by):
        raise SystemExit(
            f"{model}: the rows were scored by model {scored_by}, {models_dir} holds "
            f"{entry.sha256[:12]}: run `python -m training.evaluate_faces` on this bundle first"
        )
    method = "fused" if r.get("ship_fusion") else "cnn"
    chosen = r["methods"][method]
    threshold = chosen["threshold"]
    if not 0.01 <= threshold <= 0.99:
        raise SystemExit(f"{model}: chosen threshold {threshold} is outside the manifest's band")
    keep = {
        k: v
        for k, v in entry.extra.items()
        if k not in ("bytes", "exported", "git_revision", "metrics", "fusion", "threshold_source")
    }
    fields = {
        **keep,
        "input_shape": list(entry.input_shape),
        "quantization": entry.quantization,
        "threshold": threshold,
        "threshold_source": "worst-source error smallest on the validation faces of every source, "
        "kiosk pipeline crops (training/verdicts.py, reports/verdicts)",
        "metrics": {
            "threshold": threshold,
            "method": method,
            "eer_held_out": {s: e["eer"] for s, e in chosen["eer"].items()},
            "per_source_error": {
                f"{row['source']}:{row['class']}": row["chosen"]["error"]
                for row in chosen["sources"]
            },
        },
    }
    crops = (entry.extra.get("metrics") or {}).get("test_int8")
    if crops:  # training/evaluate.py's crop-level test figures that do not depend on the threshold
        fields["metrics"]["test_int8"] = {k: crops[k] for k in CROP_KEYS if k in crops}
    if method == "fused":
        fields["fusion"] = r["fusion"]
    write_entry(models_dir, model, models_dir / entry.file, **fields)
    logger.info("%s: threshold %.4f (%s) written to the manifest", model, threshold, method)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Thresholds, fusion and tables per face.")
    parser.add_argument(
        "--detector", default="yunet", help="whose per-face rows (the kiosk default)"
    )
    parser.add_argument("--faces", type=Path, default=None)
    parser.add_argument("--reports", type=Path, default=REPORTS / "verdicts")
    parser.add_argument(
        "--ship", nargs="*", choices=sorted(VERDICTS), default=None,
        help="write the chosen thresholds/fusion to models/ (no name: every model)",
    )  # fmt: skip
    parser.add_argument("--models-dir", type=Path, default=MODELS)
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="per-face rows of the shipped bundle: compare the retrained models against it",
    )
    parser.add_argument(
        "--retrained",
        nargs="*",
        default=["eyes_closed"],
        choices=sorted(VERDICTS),
        help="models whose CNN differs between --faces and --before",
    )
    parser.add_argument(
        "--require-win",
        action="store_true",
        help="exit 1 unless every --retrained model beats its --before figures",
    )
    parser.add_argument(
        "--adopt", type=Path, default=None,
        help="with --ship: first take the --retrained models' files and manifest entries from "
        "this candidate bundle (the bytes the rows were scored with)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    faces = Faces.read(args.faces or faces_file(args.detector))
    results = evaluate_all(faces, args.models_dir)
    old: dict[str, dict] = {}
    if args.before:
        old_faces = Faces.read(args.before)
        for model in args.retrained:
            old[model] = evaluate(old_faces, VERDICTS[model], BEFORE[model])
            results[model]["retrained_wins"] = retrained_wins(results[model], old[model])
    if args.require_win and not all(results[m].get("retrained_wins") for m in args.retrained):
        _write(args, results, old)
        raise SystemExit(f"{args.retrained}: the retrained model does not beat the shipped one")
    if args.ship is not None:
        for model in args.retrained if args.adopt else ():
            adopt(args.adopt, args.models_dir, model)
        for model, r in results.items():
            if not args.ship or model in args.ship:
                ship(args.models_dir, model, r, r["scored_by"])
        # the report's *shipped* column: what the kiosk applies now
        entries = load_manifest(args.models_dir).models
        for model, r in results.items():
            r["shipped"] = operating_point(
                faces, VERDICTS[model], entries.get(model), r["scored_by"]
            )
    _write(args, results, old)


def evaluate_all(faces: Faces, models_dir: Path) -> dict[str, dict]:
    """Every verdict's choices and tables on `faces`, with the bundle's current operating point."""
    entries = load_manifest(models_dir).models
    results = {}
    for model, v in VERDICTS.items():
        scored_by = faces.models.get(FINGERPRINT[model], "none")
        results[model] = {
            **evaluate(faces, v, BEFORE[model]),
            "shipped": operating_point(faces, v, entries.get(model), scored_by),
            "scored_by": scored_by,
        }
    return results


def _write(args: argparse.Namespace, results: dict, old: dict[str, dict]) -> None:
    text = render(results, args.detector)
    if old:
        text += "\n## Retrained vs shipped\n\n"
        for model, before in old.items():
            results[model]["before_retraining"] = before
            text += render_comparison(model, results[model], before) + "\n"
    args.reports.mkdir(parents=True, exist_ok=True)
    (args.reports / f"{args.detector}.json").write_text(json.dumps(results, indent=1))
    (args.reports / f"{args.detector}.md").write_text(text)


if __name__ == "__main__":
    main()
