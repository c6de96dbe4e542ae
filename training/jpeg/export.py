"""Export a trained JPEG detector to int8 TFLite for the kiosk and register it as `jpeg_history`.

1. float32 and int8 files (training.export: uint8 pixels in, int8 logit out; calibration = 300
   training patches, half of them JPEG).
2. Threshold: the int8 model's 2 %-false-alarm point of the DET curve on validation patches
   (uncompressed vs the training positives of the chosen variant).
3. Test numbers through the kiosk's own check code: 64-px test tiles (patch level) and whole
   held-out pictures scored like captures (patch grid, top-quarter mean), uncompressed vs
   J/F1/F2/GAN at QF 25/50/75; int8-vs-float score difference; latency on a 640x480 capture.
4. The int8 file goes to models/jpeg_history.tflite with its manifest entry.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil

import numpy as np

from kiosk.contract.manifest import write_entry
from kiosk.runtime.forensics.capture import Artifacts, Capture
from kiosk.runtime.forensics.jpeg import MODEL_NAME, JpegHistoryCheck, pool
from kiosk.runtime.models.tflite_io import BinaryClassifier
from training import metrics
from training.export import export_variants
from training.jpeg.data import (
    TEST_QUALITIES,
    images_by_split,
    jpeg_roundtrip,
    patches_path,
    read_gray,
    tiles,
)
from training.jpeg.dither import dither_f1, dither_f2
from training.jpeg.gan import launder, load_generator
from training.jpeg.tables import TARGET_FPR, load_detector
from training.jpeg.train import labelled, run_dir
from training.paths import MODELS, REPORTS, WORK, data_root
from training.tf_setup import tf
from training.timing import median_ms


def tflite_scores(classifier: BinaryClassifier, patches: np.ndarray) -> np.ndarray:
    return np.array([classifier.score(p) for p in patches], np.float32)


def threshold_at_fpr(labels: np.ndarray, scores: np.ndarray, target: float) -> float:
    thresholds, fpr, _ = metrics.det_curve(labels, scores)
    ok = np.flatnonzero(fpr <= target)
    return float(thresholds[ok[0]]) if len(ok) else float(thresholds[-1])


def versions(image: np.ndarray, quality: int, generator: tf.keras.Model, seed: int) -> dict:
    jpeg, table = jpeg_roundtrip(image, quality)
    return {
        "J": jpeg,
        "F1": dither_f1(jpeg, table, seed),
        "F2": dither_f2(jpeg, table, seed),
        "GAN": launder(generator, jpeg[None])[0],
    }


def latency_ms(check: JpegHistoryCheck, runs: int = 20) -> float:
    rng = np.random.default_rng(0)
    capture = Capture(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8))
    return median_ms(lambda: check.run(capture, Artifacts()), runs)


def main() -> None:
    """`python -m training.jpeg.export [--arch kv] [--variant hardened]`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--arch", default="kv")
    parser.add_argument("--variant", default="hardened")
    parser.add_argument("--data-root")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    model = load_detector(args.arch, args.variant)
    size = model.input_shape[1]
    arrays = dict(np.load(patches_path(WORK, size)))
    rng = np.random.default_rng(7)
    pick = rng.permutation(len(arrays["train_originals"]))[:150]
    calibration = np.concatenate([arrays["train_originals"][pick], arrays["train_jpeg"][pick]])
    stem = run_dir(args.arch, args.variant, size) / MODEL_NAME
    paths = export_variants(model, calibration, stem)
    int8 = BinaryClassifier(paths["int8"].read_bytes())
    float32 = BinaryClassifier(paths["float32"].read_bytes())

    val_x, val_y = labelled(arrays, "val", hardened=args.variant == "hardened")
    threshold = threshold_at_fpr(val_y, tflite_scores(int8, val_x), TARGET_FPR)

    splits = images_by_split(data_root(args.data_root))
    pictures = [read_gray(source.path) for source in splits["test"]]
    generator = load_generator(size)
    originals = np.stack([t for p in pictures for t in tiles(p, size, 8)])
    negative = tflite_scores(int8, originals)
    test_patches: dict = {
        "uncompressed_false_alarm": round(float(np.mean(negative >= threshold)), 4)
    }
    float_diffs = [np.abs(negative - tflite_scores(float32, originals))]
    for quality in TEST_QUALITIES:
        made = [versions(t, quality, generator, i) for i, t in enumerate(originals)]
        for method in ("J", "F1", "F2", "GAN"):
            patches = np.stack([m[method] for m in made])
            scores = tflite_scores(int8, patches)
            float_diffs.append(np.abs(scores - tflite_scores(float32, patches)))
            labels = np.concatenate([np.zeros(len(negative)), np.ones(len(scores))])
            summary = metrics.summary(labels, np.concatenate([negative, scores]), threshold)
            test_patches[f"{method}_qf{quality}"] = {
                "detected": round(summary["at_threshold_recall"], 4),
                "eer": summary["eer"],
            }

    check = JpegHistoryCheck(paths["int8"].read_bytes(), threshold)
    captures: dict = {"pictures": len(pictures)}
    honest = [pool(check.patch_scores(p)) for p in pictures]
    captures["uncompressed_false_alarm"] = round(float(np.mean(np.array(honest) >= threshold)), 4)
    laundered = [versions(p, 50, generator, i) for i, p in enumerate(pictures)]
    for method in ("J", "F1", "F2", "GAN"):
        flagged = [pool(check.patch_scores(v[method])) >= threshold for v in laundered]
        captures[f"{method}_qf50_detected"] = round(float(np.mean(flagged)), 4)

    results = {
        "model": f"{args.arch}:{args.variant}",
        "threshold": threshold,
        "validation_int8": metrics.at_threshold(
            val_y, tflite_scores(int8, val_x), threshold
        ).as_dict(),
        "test_patches_int8": test_patches,
        "test_captures_int8": captures,
        "int8_vs_float_mean_abs_score_diff": round(float(np.mean(np.concatenate(float_diffs))), 5),
        "latency_640x480_ms_1thread": round(latency_ms(check), 1),
        "patches_per_640x480": len(check.patch_scores(np.zeros((480, 640), np.uint8))),
        "int8_bytes": paths["int8"].stat().st_size,
    }
    print(json.dumps(results, indent=2))
    report = REPORTS / "jpeg_forensics"
    report.mkdir(parents=True, exist_ok=True)
    (report / "export.json").write_text(json.dumps(results, indent=2) + "\n")

    target = MODELS / f"{MODEL_NAME}.tflite"
    shutil.copyfile(paths["int8"], target)
    train_info = json.loads((run_dir(args.arch, args.variant, size) / "train.json").read_text())
    write_entry(
        MODELS,
        MODEL_NAME,
        target,
        architecture=f"{args.arch} JPEG detector ({args.variant}), training/jpeg/nets.py",
        input_shape=[1, size, size, 1],
        input="uint8 grayscale (ITU-R 601 luma) patch 0..255",
        output="int8 logit; score = sigmoid(logit)",
        quantization="int8 (full integer, representative dataset of 300 training patches)",
        threshold=threshold,
        positive="JPEG history (plain JPEG, dithered F1/F2 or GAN-laundered)",
        patch_size=size,
        pooling="non-overlapping patch grid from the origin (<= 400 patches), mean of top 25 % patch scores",
        metrics={
            k: results[k] for k in ("validation_int8", "test_patches_int8", "test_captures_int8")
        },
        training={k: train_info[k] for k in ("epochs", "batch", "lr", "train_patches", "params")},
        provenance=(
            "uncompressed/ (never-JPEG grayscale PNGs: Kodak, USC-SIPI, Waterloo, "
            "imagecompression.info), split by group; all positives synthetic: JPEG QF 20-95 "
            "(Pillow/libjpeg), F1/F2 dithering and GAN outputs generated in training/jpeg"
        ),
    )
    print(f"registered {MODEL_NAME} -> {target}")


if __name__ == "__main__":
    main()
