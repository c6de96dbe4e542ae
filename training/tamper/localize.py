"""Localisation: how well do heat maps of "departure from a re-compression or reconstruction"
overlap the known tampered region of the (synthetic) test images?

Maps, all full resolution: ELA (the kiosk's heat map), the wavelet noise residual, and the SR
reconstruction residual |Y - SR(bicubic x1/4 (Y))| of the shipped SR generator (Nimma's idea of
localising by reconstruction): models/sr_x4.tflite as the kiosk runs it, tile by tile, with its
entry's self-ensemble (training/sr/evaluate.py's `tflite_upscaler`). Each is box-smoothed over 9 px and turned into a heat map in one
of three ways: "high" (the map itself), "low" (its complement: a morph warp or a resampled
splice leaves *less* detail and noise) or "deviation" (distance from the image's median level),
each scaled by its 99th percentile. The way and an IoU threshold are chosen on the validation
split (best mean pixel AUC, then best mean IoU); metrics per image on the test split: pixel ROC
AUC against the mask and IoU of the thresholded heat, averaged per manipulation type.

    python -m training.tamper.localize
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

from kiosk.contract.models import SPECS
from kiosk.runtime.forensics.colour import luma
from kiosk.runtime.forensics.ela_features import ela_map, noise_residual
from kiosk.runtime.forensics.sr import entry_ensemble
from kiosk.runtime.imageio import load_rgb
from kiosk.runtime.models.registry import ModelRegistry
from training.paths import MODELS, REPORTS
from training.sr.data import SCALE, hr_lr_pair
from training.sr.evaluate import Upscaler, tflite_upscaler
from training.tamper.features import read_index
from training.tamper.train import DATA

OUT = REPORTS / "tamper_ela"
FRACTIONS = np.round(np.arange(0.1, 1.0, 0.1), 2)
SMOOTH = 9


HEATS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "high": lambda smooth: smooth,
    "low": lambda smooth: smooth.max() - smooth,
    "deviation": lambda smooth: np.abs(smooth - np.median(smooth)),
}


def heat_maps(raw: np.ndarray) -> dict[str, np.ndarray]:
    smooth = cv2.blur(raw.astype(np.float32), (SMOOTH, SMOOTH))
    heats = {}
    for name, make_heat in HEATS.items():
        heat = make_heat(smooth)
        heats[name] = heat / max(float(np.percentile(heat, 99)), 1e-6)
    return heats


def sr_residual_map(upscale: Upscaler) -> Callable[[np.ndarray], np.ndarray]:
    def residual(rgb: np.ndarray) -> np.ndarray:
        hr, lr = hr_lr_pair(luma(rgb))
        sr = upscale(lr)
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
    parser.add_argument(
        "--ela-quality", type=int, default=int(SPECS["tamper_ela"].parameter("ela_quality"))
    )
    parser.add_argument("--limit", type=int, help="images per split (smoke runs)")
    args = parser.parse_args(argv)
    registry = ModelRegistry(MODELS)
    upscale = tflite_upscaler(
        registry.verified_bytes("sr_x4"), entry_ensemble(registry.entry("sr_x4").extra)
    )
    maps: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "ela": lambda rgb: ela_map(rgb, args.ela_quality),
        "noise_residual": noise_residual,
        "sr_reconstruction": sr_residual_map(upscale),
    }
    rows = [r for r in read_index(DATA) if r["label"] == "1" and r["split"] in ("val", "test")]
    scores: dict[str, dict[str, list]] = {name: {"val": [], "test": []} for name in maps}
    kinds: dict[str, list[str]] = {"val": [], "test": []}
    coverage: list[float] = []  # IoU of flagging the whole image = tampered fraction
    skipped = 0
    for split in ("val", "test"):
        chosen = [r for r in rows if r["split"] == split][: args.limit]
        for row in chosen:
            rgb = load_rgb(DATA / row["image"])
            if min(rgb.shape[:2]) < 4 * SCALE:
                continue
            truth = cv2.imread(str(DATA / row["mask"]), cv2.IMREAD_GRAYSCALE) > 127
            if truth.all() or not truth.any():  # a copy-move pushed out of the frame
                skipped += 1
                continue
            kinds[split].append(row["kind"])
            if split == "test":
                coverage.append(float(truth.mean()))
            for name, make_map in maps.items():
                heats = heat_maps(make_map(rgb))
                scores[name][split].append({k: image_scores(v, truth) for k, v in heats.items()})
    test_kinds = np.array(kinds["test"])
    whole = {
        kind: round(float(np.mean(np.array(coverage)[test_kinds == kind])), 4)
        for kind in ("splice", "copy_move", "morph")
    }
    report: dict = {
        "smoothing_px": SMOOTH,
        "synthetic_data": True,
        "skipped_empty_masks": skipped,
        "iou_if_whole_image_flagged": {"all": round(float(np.mean(coverage)), 4), **whole},
        "maps": {},
    }
    for name in maps:
        val = scores[name]["val"]
        way = max(HEATS, key=lambda h: np.mean([image[h][0] for image in val]))
        best = int(np.argmax(np.mean([image[way][1] for image in val], axis=0)))
        aucs = np.array([image[way][0] for image in scores[name]["test"]])
        ious = np.array([image[way][1][best] for image in scores[name]["test"]])
        report["maps"][name] = {
            "heat": way,
            "threshold_fraction_of_p99": float(FRACTIONS[best]),
            **{
                kind: {
                    "n": int(np.sum(keep)),
                    "pixel_auc": round(float(aucs[keep].mean()), 4),
                    "iou": round(float(ious[keep].mean()), 4),
                }
                for kind, keep in [("all", np.ones(len(test_kinds), bool))]
                + [(k, test_kinds == k) for k in ("splice", "copy_move", "morph")]
            },
        }
        print(name, report["maps"][name], flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "localization.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        "# Localisation of the tampered region (synthetic test set)",
        "",
        "Pixel AUC / IoU per test image, averaged. Heat way and IoU threshold (a fraction of the "
        "image's 99th-percentile heat) chosen on validation. **Synthetic tampering.** Generated "
        "by `python -m training.tamper.localize`.",
        "",
        "| map | heat | threshold | all AUC / IoU | splice | copy-move | morph |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in report["maps"].items():
        cells = [
            f"{row[k]['pixel_auc']:.3f} / {row[k]['iou']:.3f}"
            for k in ("all", "splice", "copy_move", "morph")
        ]
        lines.append(
            f"| {name} | {row['heat']} | {row['threshold_fraction_of_p99']} | "
            + " | ".join(cells)
            + " |"
        )
    baseline = report["iou_if_whole_image_flagged"]
    lines += [
        "",
        "Baseline IoU of flagging the whole image (= tampered fraction): "
        + ", ".join(f"{kind} {value:.3f}" for kind, value in baseline.items())
        + ".",
    ]
    (OUT / "localization.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
