"""Detection-error metrics. Positive = the failure a check looks for (eye closed, ...).

At threshold t a crop is flagged when score >= t. FNR = positives not flagged (a closed eye let
through), FPR = negatives flagged (an open eye rejected), as in the paper's DET curves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    fnr: float
    fpr: float
    recall: float
    precision: float

    def as_dict(self) -> dict[str, float]:
        return {k: round(float(v), 6) for k, v in asdict(self).items()}


def det_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, fpr, fnr) over every distinct score, thresholds ascending."""
    thresholds = np.unique(scores)
    positives, negatives = scores[labels == 1], scores[labels == 0]
    fpr = (
        np.array([(negatives >= t).mean() for t in thresholds])
        if len(negatives)
        else thresholds * 0
    )
    fnr = (
        np.array([(positives < t).mean() for t in thresholds]) if len(positives) else thresholds * 0
    )
    return thresholds, fpr, fnr


def at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> OperatingPoint:
    flagged = scores >= threshold
    positives = labels == 1
    true_pos = int(np.sum(flagged & positives))
    fnr = 1 - true_pos / max(positives.sum(), 1)
    fpr = np.sum(flagged & ~positives) / max((~positives).sum(), 1)
    precision = true_pos / max(flagged.sum(), 1)
    return OperatingPoint(
        float(threshold), float(fnr), float(fpr), float(1 - fnr), float(precision)
    )


def eer_point(labels: np.ndarray, scores: np.ndarray) -> tuple[float, OperatingPoint]:
    """Equal error rate and the operating point where FNR and FPR cross (FNR ~ FPR)."""
    thresholds, fpr, fnr = det_curve(labels, scores)
    best = int(np.argmin(np.abs(fnr - fpr)))
    point = at_threshold(labels, scores, float(thresholds[best]))
    return (point.fnr + point.fpr) / 2, point


def summary(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    eer, _ = eer_point(labels, scores)
    both = len(np.unique(labels)) == 2
    return {
        "n": len(labels),
        "positives": int(labels.sum()),
        "auc": round(float(roc_auc_score(labels, scores)), 5) if both else float("nan"),
        "eer": round(float(eer), 5) if both else float("nan"),
        **{
            f"at_threshold_{k}": v
            for k, v in at_threshold(labels, scores, threshold).as_dict().items()
        },
    }


def pr_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    precision, recall, _ = precision_recall_curve(labels, scores)
    return precision, recall
