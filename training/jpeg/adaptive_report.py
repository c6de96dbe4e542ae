"""Table II again, for the adaptive attack on the shipped detector (issue 15 item 4).

Everything is scored as the kiosk scores it: the manifest's int8 `jpeg_history` file through
LiteRT (`kiosk.runtime.forensics.jpeg.JpegHistoryCheck`: 64-px patch grid from the origin,
top-quarter pooling) at the manifest threshold, and at the camera-calibrated threshold of
reports/jpeg_forensics/calibration.json; plus the classical DC-comb check
(`kiosk.runtime.forensics.jpeg_grid.comb_statistic`) at the kiosk's z threshold and at the
calibration report's two. Test tiles are those of training/jpeg/tables.py (held-out `test`
pictures only; the generator trained on `train` patches); J/F1/F2 are made by the same code, so
only the GAN row differs from the shipped report. The replica is checked against the TFLite
file on validation patches and on the adaptive outputs themselves (near the decision boundary,
where a replica error would matter).

Writes reports/jpeg_forensics/adaptive.md and adaptive.json.
"""

from __future__ import annotations

import argparse
import json
import logging

import numpy as np

from kiosk.contract.manifest import load_manifest, read_model
from kiosk.runtime.forensics.jpeg import MODEL_NAME, JpegHistoryCheck, pool
from kiosk.runtime.forensics.jpeg_grid import Z_THRESHOLD, comb_statistic
from kiosk.runtime.models.tflite_io import BinaryClassifier, dequantize
from training.jpeg.adaptive import TfliteReplica, adaptive_dir, load_adaptive_generator
from training.jpeg.data import TEST_QUALITIES, images_by_split, patches_path, read_gray
from training.jpeg.tables import (
    METHODS,
    PAPER_TABLE1,
    PAPER_TABLE2,
    SIZES,
    build_conditions,
    table1,
)
from training.paths import MODELS, REPORTS, WORK, data_root
from training.tf_setup import limit_threads, tf

log = logging.getLogger(__name__)

REPORT = REPORTS / "jpeg_forensics"


def replica_agreement(
    replica: TfliteReplica, classifier: BinaryClassifier, patches: np.ndarray, threshold: float
) -> dict:
    """How closely the replica's scores follow the int8 file's on (N, 64, 64) uint8 patches."""
    tflite = np.array([classifier.logit(p) for p in patches])
    raw = np.concatenate(
        [
            replica.logit(tf.constant(patches[i : i + 128, ..., None], tf.float32)).numpy()
            for i in range(0, len(patches), 128)
        ]
    )
    # The int8 code of the replica's logit, read back as the kiosk reads the file's output, so
    # scores that sit exactly on the threshold (it is one of those codes) compare alike.
    details = replica.tensors[replica.output_index]
    scale, zero_point = details["quantization"]
    codes = np.clip(np.round(raw / scale) + zero_point, -128, 127).astype(np.int8)
    ours = dequantize(codes, details).astype(np.float64)
    scores = [1.0 / (1.0 + np.exp(-v)) for v in (tflite, ours)]
    return {
        "n": len(patches),
        "score_correlation": round(float(np.corrcoef(scores[0], scores[1])[0, 1]), 6),
        "score_mean_abs_diff": round(float(np.mean(np.abs(scores[0] - scores[1]))), 6),
        "logit_mean_abs_diff": round(float(np.mean(np.abs(tflite - ours))), 5),
        "logit_identical_share": round(float(np.mean(np.abs(tflite - ours) < 1e-4)), 4),
        "flag_agreement": round(
            float(np.mean((scores[0] >= threshold) == (scores[1] >= threshold))), 4
        ),
    }


def conditions(images: list[np.ndarray], generator: tf.keras.Model) -> dict:
    """tables.build_conditions with the adaptive generator as "GAN", cached beside it (never in
    data/jpeg/test_conditions.npz, which tables.py reads as the old GAN's outputs)."""
    path = adaptive_dir() / "test_conditions.npz"
    if not path.exists():
        flat = {}
        for size, versions in build_conditions(images, generator).items():
            flat[f"{size}_original"] = versions["original"]
            for quality in TEST_QUALITIES:
                for method in METHODS:
                    flat[f"{size}_{quality}_{method}"] = versions[quality][method]
        np.savez_compressed(path, **flat)
    flat = np.load(path)
    return {
        size: {
            "original": flat[f"{size}_original"],
            **{q: {m: flat[f"{size}_{q}_{m}"] for m in METHODS} for q in TEST_QUALITIES},
        }
        for size in SIZES
    }


def tile_scores(check: JpegHistoryCheck, tiles: np.ndarray) -> np.ndarray:
    """The kiosk's pooled score of each tile."""
    return np.array([pool(check.patch_scores(tile)) for tile in tiles])


def comb_z(tiles: np.ndarray) -> np.ndarray:
    """The kiosk's DC-comb statistic of each tile (0 when fewer than 64 usable blocks)."""
    return np.array([comb_statistic(tile)["z"] for tile in tiles])


def rate(flags: np.ndarray) -> float:
    return round(100 * float(np.mean(flags)), 2)


def score_all(versions: dict, check: JpegHistoryCheck, cnn: dict, comb: dict) -> dict:
    """% flagged per size, method and QF for each CNN and comb threshold and for either check."""
    out: dict = {}
    for size, by_quality in versions.items():
        cells = {"original": by_quality["original"]}
        cells.update({f"{m}_{q}": by_quality[q][m] for q in TEST_QUALITIES for m in METHODS})
        for cell, tiles in cells.items():
            scores, z = tile_scores(check, tiles), comb_z(tiles)
            row = {f"cnn_{k}": rate(scores >= t) for k, t in cnn.items()}
            row.update({f"comb_{k}": rate(z >= t) for k, t in comb.items()})
            row["either_kiosk"] = rate((scores >= cnn["manifest"]) | (z >= comb["kiosk"]))
            row["comb_too_few_blocks"] = int(np.sum(z == 0))
            row["mean_score"] = round(float(scores.mean()), 4)
            out.setdefault(str(size), {})[cell] = row
        log.info("scored size %d", size)
    return out


def markdown_table2(result: dict, previous: dict) -> str:
    """Detection % at the manifest / calibrated CNN threshold, then the comb and either check."""
    head = "| size | method | " + " | ".join(
        f"QF{q} CNN manifest / calibrated / paper" for q in TEST_QUALITIES
    )
    head += " | " + " | ".join(f"QF{q} comb z>=35 / either" for q in TEST_QUALITIES) + " |"
    lines = [head, "|" + "---|" * (2 + 2 * len(TEST_QUALITIES))]
    for size in SIZES:
        table = result["table2"][str(size)]
        for k, method in enumerate(METHODS):
            name = "adaptive GAN" if method == "GAN" else method
            cnn = [
                f"{table[f'{method}_{q}']['cnn_manifest']:.1f} / "
                f"{table[f'{method}_{q}']['cnn_calibrated']:.1f} / {PAPER_TABLE2[size][method][j]:g}"
                for j, q in enumerate(TEST_QUALITIES)
            ]
            comb = [
                f"{table[f'{method}_{q}']['comb_kiosk']:.1f} / "
                f"{table[f'{method}_{q}']['either_kiosk']:.1f}"
                for q in TEST_QUALITIES
            ]
            lines.append(f"| {size} | {name} | " + " | ".join(cnn + comb) + " |")
            del k
        old = previous.get(str(size), {}).get("GAN")
        if old:
            cells = " | ".join(f"{old[str(q)]:.1f} (float) / - / -" for q in TEST_QUALITIES)
            lines.append(f"| {size} | old GAN (in training data) | {cells} | | | |")
        row = table["original"]
        lines.append(
            f"| {size} | uncompressed (false alarms) | {row['cnn_manifest']:.1f} / "
            f"{row['cnn_calibrated']:.1f} | | | {row['comb_kiosk']:.1f} / "
            f"{row['either_kiosk']:.1f} | | |"
        )
    return "\n".join(lines)


def markdown_table1(ours: dict, previous: dict) -> str:
    """PSNR / SSIM of J and the adaptive GAN vs the originals, beside the old GAN and the paper."""
    head = "| size | method | " + " | ".join(f"QF{q} PSNR / SSIM" for q in TEST_QUALITIES) + " |"
    lines = [head, "|" + "---|" * (2 + len(TEST_QUALITIES))]
    for size in SIZES:
        rows = [
            ("J", ours[str(size)]["J"]),
            ("adaptive GAN", ours[str(size)]["GAN"]),
            ("old GAN", previous.get(str(size), {}).get("GAN")),
        ]
        for name, cells in rows:
            if cells:
                values = [
                    f"{cells[str(q)]['psnr']:.2f} / {cells[str(q)]['ssim']:.3f}"
                    for q in TEST_QUALITIES
                ]
                lines.append(f"| {size} | {name} | " + " | ".join(values) + " |")
        paper = [f"{p:.2f} / {s:.3f}" for p, s in PAPER_TABLE1[size]["GAN"]]
        lines.append(f"| {size} | paper's GAN | " + " | ".join(paper) + " |")
    return "\n".join(lines)


def main() -> None:
    """`python -m training.jpeg.adaptive_report`: evaluate data/jpeg/adaptive/ on test tiles."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data-root")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    limit_threads(args.threads)
    entry = load_manifest(MODELS).models[MODEL_NAME]
    content = read_model(MODELS, MODEL_NAME, entry)
    calibration = json.loads((REPORT / "calibration.json").read_text())["summary"]
    cnn = {"manifest": entry.threshold, "calibrated": calibration["cnn"]["calibrated_threshold"]}
    comb = {
        "kiosk": Z_THRESHOLD,
        "rayleigh_1pct": calibration["comb"]["shipped_threshold"],
        "calibrated": calibration["comb"]["calibrated_threshold"],
    }
    check = JpegHistoryCheck(content, cnn["manifest"])
    replica = TfliteReplica(content)
    generator = load_adaptive_generator()
    state = json.loads((adaptive_dir() / "state.json").read_text())

    images = [read_gray(s.path) for s in images_by_split(data_root(args.data_root))["test"]]
    versions = conditions(images, generator)
    arrays = np.load(patches_path(WORK, 64))
    classifier = BinaryClassifier(content)
    replica_check = {
        "validation_patches_original_and_jpeg": replica_agreement(
            replica,
            classifier,
            np.concatenate([arrays["val_originals"], arrays["val_jpeg"]]),
            cnn["manifest"],
        ),
        "test_adaptive_outputs_64px": replica_agreement(
            replica,
            classifier,
            np.concatenate([versions[64][q]["GAN"] for q in TEST_QUALITIES]),
            cnn["manifest"],
        ),
    }
    previous = json.loads((REPORT / "results.json").read_text())
    result = {
        "model": {"file": entry.file, "sha256": entry.sha256},
        "thresholds": {"cnn": cnn, "comb_z": comb},
        "test_pictures": len(images),
        "tiles": {str(s): len(versions[s]["original"]) for s in SIZES},
        "training": {k: v for k, v in state.items() if k != "log"},
        "training_log": state["log"],
        "replica_vs_tflite": replica_check,
        "table1": table1(versions),
        "table2": score_all(versions, check, cnn, comb),
    }
    REPORT.mkdir(parents=True, exist_ok=True)
    (REPORT / "adaptive.json").write_text(json.dumps(result, indent=2) + "\n")
    (REPORT / "adaptive.md").write_text(
        render(
            result, previous.get("table1", {}), previous.get("table2", {}).get("kv:hardened", {})
        )
    )
    log.info("wrote %s", REPORT / "adaptive.md")


def render(result: dict, previous_table1: dict, previous_table2: dict) -> str:
    """The report's text around the tables (placeholder until the numbers are in)."""
    return (
        markdown_table1(result["table1"], previous_table1)
        + "\n\n"
        + markdown_table2(result, previous_table2)
        + "\n"
    )


if __name__ == "__main__":
    main()
