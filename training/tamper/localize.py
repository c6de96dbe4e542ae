"""Localisation: how well do heat maps of "departure from a re-compression or reconstruction"
overlap the known tampered region of the (synthetic) test images?

Maps, all full resolution: ELA (the kiosk's heat map), the wavelet noise residual, and the SR
reconstruction residual |Y - SR(bicubic x1/4 (Y))| of the shipped SR generator (Nimma's idea of
localising by reconstruction). Each is box-smoothed over 9 px; its *deviation* from the image's
median level is the heat, since a pasted region may re-compress with more or with less error
than the rest. Metrics per image: pixel ROC AUC against the mask, and IoU of the heat
thresholded at a fixed fraction of the image's 99th percentile, the fraction picked on the
validation split. Means are reported per manipulation type on the test split.

    python -m training.tamper.localize
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from kiosk.forensics.colour import luma
from kiosk.forensics.ela_features import ela_map, noise_residual
from kiosk.imageio import load_rgb
from training.paths import REPORTS
from training.sr.data import SCALE, hr_lr_pair
from training.sr.nets import make_generator
from training.sr.train import limit_threads, run_dir
from training.tamper.features import read_index
from training.tamper.train import DATA
from training.tf_setup import tf

OUT = REPORTS / "tamper_ela"
FRACTIONS = np.round(np.arange(0.1, 1.0, 0.1), 2)
SMOOTH = 9


def deviation(raw: np.ndarray) -> np.ndarray:
    smooth = cv2.blur(raw.astype(np.float32), (SMOOTH, SMOOTH))
    heat = np.abs(smooth - np.median(smooth))
    return heat / max(float(np.percentile(heat, 99)), 1e-6)


def sr_residual_map(generator: tf.keras.Model) -> Callable[[np.ndarray], np.ndarray]:
    def residual(rgb: np.ndarray) -> np.ndarray:
        hr, lr = hr_lr_pair(luma(rgb))
        sr = generator(lr[None, :, :, None] / 255.0, training=False)[0, :, :, 0] * 255.0
        full = np.zeros(rgb.shape[:2], np.float32)
        full[: hr.shape[0], : hr.shape[1]] = np.abs(hr - sr)
        return full

    return residual


def image_scores(heat: np.ndarray, truth: np.ndarray) -> tuple[float, np.ndarray]:
    """(pixel AUC, IoU at every threshold fraction)."""
    auc = float(roc_auc_score(truth.reshape(-1), heat.reshape(-1)))
    ious = []
    for fraction in FRACTIONS:
        predicted = heat >= fraction
        union = np.sum(predicted | truth)
        ious.append(np.sum(predicted & truth) / union if union else 0.0)
    return auc, np.array(ious)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ela-quality", type=int, default=90)
    parser.add_argument("--limit", type=int, help="images per split (smoke runs)")
    args = parser.parse_args(argv)
    limit_threads(1)
    maps: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "ela": lambda rgb: ela_map(rgb, args.ela_quality),
        "noise_residual": noise_residual,
    }
    weights = run_dir("mse") / "generator.weights.h5"
    if weights.exists():
        generator = make_generator()
        generator.load_weights(weights)
        maps["sr_reconstruction"] = sr_residual_map(generator)
    rows = [r for r in read_index(DATA) if r["label"] == "1" and r["split"] in ("val", "test")]
    scores: dict[str, dict[str, list]] = {name: {"val": [], "test": []} for name in maps}
    kinds: dict[str, list[str]] = {"val": [], "test": []}
    for split in ("val", "test"):
        chosen = [r for r in rows if r["split"] == split][: args.limit]
        for row in chosen:
            rgb = load_rgb(DATA / row["image"])
            if min(rgb.shape[:2]) < 4 * SCALE:
                continue
            truth = cv2.imread(str(DATA / row["mask"]), cv2.IMREAD_GRAYSCALE) > 127
            kinds[split].append(row["kind"])
            for name, make_map in maps.items():
                scores[name][split].append(image_scores(deviation(make_map(rgb)), truth))
    report: dict = {"smoothing_px": SMOOTH, "synthetic_data": True, "maps": {}}
    for name in maps:
        val_ious = np.stack([iou for _, iou in scores[name]["val"]])
        best = int(np.argmax(val_ious.mean(0)))
        test_kinds = np.array(kinds["test"])
        aucs = np.array([auc for auc, _ in scores[name]["test"]])
        ious = np.stack([iou for _, iou in scores[name]["test"]])[:, best]
        report["maps"][name] = {
            "threshold_fraction_of_p99": float(FRACTIONS[best]),
            **{
                kind: {
                    "n": int(np.sum(keep)),
                    "pixel_auc": round(float(aucs[keep].mean()), 4),
                    "iou": round(float(ious[keep].mean()), 4),
                }
                for kind, keep in [("all", test_kinds == test_kinds)]
                + [(k, test_kinds == k) for k in ("splice", "copy_move", "morph")]
            },
        }
        print(name, report["maps"][name], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "localization.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Localisation of the tampered region (synthetic test set)",
        "",
        "Heat = |box-smoothed map - its median|; IoU at a fraction of the image's 99th-percentile "
        "heat chosen on validation. Generated by `python -m training.tamper.localize`.",
        "",
        "| map | threshold | all AUC / IoU | splice | copy-move | morph |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["maps"].items():
        cells = [
            f"{row[k]['pixel_auc']:.3f} / {row[k]['iou']:.3f}"
            for k in ("all", "splice", "copy_move", "morph")
        ]
        lines.append(f"| {name} | {row['threshold_fraction_of_p99']} | " + " | ".join(cells) + " |")
    (OUT / "localization.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
