"""Evaluate the ELA tamper CNN, export it to int8 TFLite and register it as `tamper_ela`.

The threshold is the EER point on the validation split (FNR = FPR), never hand-picked. Test
metrics (accuracy, precision, recall, F1, AUC, EER) come from the int8 model the kiosk runs, beside
the float Keras model; per manipulation type each kind's images are scored against all authentic
test images. All data is synthetic (see training.tamper.generate).

    python -m training.tamper.evaluate
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections.abc import Iterator

import numpy as np
from sklearn.metrics import roc_auc_score

from kiosk.contract.manifest import write_entry
from kiosk.contract.models import spec
from kiosk.runtime.models.fusion import sigmoids
from kiosk.runtime.models.litert import make_interpreter
from kiosk.runtime.models.tflite_io import Model
from training.export import convert
from training.metrics import eer_point
from training.nets import logit_model
from training.paths import MODELS, REPORTS
from training.tamper.features import load_features
from training.tamper.train import DATA, INPUT_SHAPE, RUN
from training.tf_setup import limit_threads, tf

OUT = REPORTS / "tamper_ela"
KINDS = ("splice", "copy_move", "morph")
TRIED = "\n## What was tried"  # hand-written section of report.md that a re-run keeps


def classification(labels: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    flagged = scores >= threshold
    positives = labels == 1
    true_pos = float(np.sum(flagged & positives))
    precision = true_pos / max(flagged.sum(), 1)
    recall = true_pos / max(positives.sum(), 1)
    both = len(np.unique(labels)) == 2
    return {
        "n": len(labels),
        "positives": int(positives.sum()),
        "accuracy": round(float(np.mean(flagged == positives)), 4),
        "precision": round(float(precision), 4),
        "recall": round(float(recall), 4),
        "f1": round(float(2 * precision * recall / max(precision + recall, 1e-12)), 4),
        "fpr": round(float(np.mean(flagged[~positives])), 4),
        "auc": round(float(roc_auc_score(labels, scores)), 4) if both else float("nan"),
        "eer": round(float(eer_point(labels, scores)[0]), 4) if both else float("nan"),
    }


def export(model: tf.keras.Model, calibration: np.ndarray, quality: int) -> dict[str, bytes]:
    """float32 and int8 (uint8 in / int8 logit out) files of the model at its logit."""
    exported = logit_model(model)

    def representative() -> Iterator[list[np.ndarray]]:
        for features in calibration:
            yield [features.astype(np.float32)[None]]

    return {
        variant: convert(exported, variant, "tamper_ela", representative, ela_quality=quality)
        for variant in ("float32", "int8")
    }


def tflite_scores(content: bytes, inputs: np.ndarray) -> np.ndarray:
    model = Model(make_interpreter(content, num_threads=1))
    logits = np.array([model(x.astype(np.float32)[None]).reshape(-1)[0] for x in inputs])
    return sigmoids(logits)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    limit_threads(1)
    info = json.loads((RUN / "train_info.json").read_text())
    quality = info["ela_quality"]
    data = load_features(DATA, quality)
    model = tf.keras.models.load_model(RUN / "best.keras")
    train, val, test = (data["splits"] == s for s in ("train", "val", "test"))
    rng = np.random.default_rng(0)
    calibration = data["inputs"][rng.choice(np.flatnonzero(train), 300, replace=False)]
    files = export(model, calibration, quality)

    scores = {
        "keras": {
            split: model.predict(data["inputs"][mask], verbose=0).reshape(-1)
            for split, mask in (("val", val), ("test", test))
        },
        "int8": {
            split: tflite_scores(files["int8"], data["inputs"][mask])
            for split, mask in (("val", val), ("test", test))
        },
    }
    _, point = eer_point(data["labels"][val].astype(int), scores["int8"]["val"])
    threshold = point.threshold
    labels, kinds = data["labels"][test].astype(int), data["kinds"][test]
    metrics: dict = {
        "threshold": round(threshold, 6),
        "validation_eer_int8": round((point.fnr + point.fpr) / 2, 4),
    }
    for name in ("keras", "int8"):
        metrics[f"test_{name}"] = classification(labels, scores[name]["test"], threshold)
    metrics["per_type_int8"] = {
        kind: classification(
            labels[(kinds == kind) | (labels == 0)],
            scores["int8"]["test"][(kinds == kind) | (labels == 0)],
            threshold,
        )
        for kind in KINDS
    }
    sizes = {name: len(content) for name, content in files.items()}
    OUT.mkdir(parents=True, exist_ok=True)
    report = {"metrics": metrics, "model_bytes": sizes, "training": info, "synthetic_data": True}
    (OUT / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(metrics, sizes, info)

    path = MODELS / "tamper_ela.tflite"
    path.write_bytes(files["int8"])
    (RUN / "tamper_ela_float32.tflite").write_bytes(files["float32"])
    write_entry(
        MODELS,
        "tamper_ela",
        path,
        architecture=spec("tamper_ela").architecture,
        input_shape=[1, *INPUT_SHAPE],
        input="uint8: ELA (JPEG re-save at ela_quality, |diff| x 12) and wavelet noise residual (x 8), area-averaged to 128x128, x 255",
        output="int8 logit; score = sigmoid(logit) = P(manipulated)",
        quantization="int8 (full integer, representative dataset of 300 training inputs)",
        threshold=float(threshold),
        ela_quality=quality,
        positive="manipulated (splice, copy-move or face morph)",
        metrics={"test_int8": metrics["test_int8"], "per_type_int8": metrics["per_type_int8"]},
        provenance="SYNTHETIC tampering (no tampering database obtainable): splices, copy-moves and landmark face morphs generated by training/tamper/generate.py from faces68/ (300-W AFW + HELEN), mask/ without_mask faces and uncompressed/ photos; authentic counterparts through the same JPEG save path",
    )
    shutil.copy(path, RUN / path.name)
    print(json.dumps(metrics, indent=2), flush=True)


def write_markdown(metrics: dict, sizes: dict[str, int], info: dict) -> None:
    columns = ("n", "accuracy", "precision", "recall", "f1", "fpr", "auc", "eer")
    lines = [
        "# ELA tamper / morph detector (synthetic tampering data)",
        "",
        "**All manipulated images are synthetic** (training/tamper/generate.py): no tampering "
        "database is obtainable here. Generated by `python -m training.tamper.evaluate`.",
        "",
        f"Threshold (validation EER, int8): **{metrics['threshold']:.4f}**; "
        f"ELA quality {info['ela_quality']}; {info['epochs']} epochs, batch {info['batch']}.",
        "",
        "| test set | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    rows = {"all (float Keras)": metrics["test_keras"], "all (int8 TFLite)": metrics["test_int8"]}
    rows |= {
        f"{kind} vs authentic (int8)": value for kind, value in metrics["per_type_int8"].items()
    }
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(str(row[c]) for c in columns) + " |")
    lines += [
        "",
        "Per type: recall is the share of that manipulation flagged; precision, FPR and AUC are "
        "against all authentic test images.",
        "",
        f"Model sizes: int8 {sizes['int8'] / 1024:.0f} KiB, float32 {sizes['float32'] / 1024:.0f} KiB.",
        "",
    ]
    path = OUT / "report.md"
    old = path.read_text() if path.exists() else ""
    kept = old[old.index(TRIED) :] if TRIED in old else ""
    path.write_text("\n".join(lines) + kept)


if __name__ == "__main__":
    main()
