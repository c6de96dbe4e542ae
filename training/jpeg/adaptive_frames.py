"""Whole pictures through `kiosk forensics --json`: the adaptive attacks beside plain JPEG.

The adaptive reports score tiles compressed alone. A laundered file is a whole picture, and the
kiosk scores it with more blocks and patches than any tile has. So each held-out `test` picture
(never seen by the generators) is written as PNG in four versions:
- as it is (never JPEG: the false alarms);
- after one JPEG save at `--quality`;
- that JPEG through each adaptive generator, rounded to uint8 as an attacker would save it.

The kiosk's own command then scores every file. Writes reports/jpeg_forensics/adaptive_frames.md
and .json; the PNGs stay in data/jpeg/adaptive_frames/ (attack outputs: never training data).

    python -m training.jpeg.adaptive_frames [--quality 75] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import logging

import cv2
import numpy as np
from skimage.metrics import peak_signal_noise_ratio

from training.jpeg.adaptive import load_adaptive_generator
from training.jpeg.adaptive_report import REPORT, relative
from training.jpeg.data import images_by_split, jpeg_roundtrip, read_gray
from training.jpeg.gan import launder
from training.kiosk_json import kiosk_records
from training.paths import WORK, data_root
from training.tf_setup import limit_threads

log = logging.getLogger(__name__)

OUT = WORK / "jpeg" / "adaptive_frames"
OTHERS = ("ela", "splice", "morph")  # the forensic pass's other checks, counted alongside
GENERATORS = {"adaptive GAN (CNN-only)": "adaptive", "adaptive GAN (comb-aware)": "adaptive_comb"}


TILE = 256
MARGIN = 48  # > the generator's receptive radius (36 convolutions of 3 x 3): tiles join exactly


def launder_tiled(generator, jpeg: np.ndarray) -> np.ndarray:
    """`gan.launder` of one whole picture, run tile by tile with a margin cut at the picture's
    edges, so the output equals the whole-picture pass (which needs over 24 GB in TensorFlow at
    1024 x 1536)."""
    height, width = jpeg.shape
    out = np.empty_like(jpeg)
    for y in range(0, height, TILE):
        for x in range(0, width, TILE):
            top, left = max(0, y - MARGIN), max(0, x - MARGIN)
            bottom, right = min(height, y + TILE + MARGIN), min(width, x + TILE + MARGIN)
            block = launder(generator, jpeg[None, top:bottom, left:right], batch=1)[0]
            out[y : y + TILE, x : x + TILE] = block[
                y - top : y - top + TILE, x - left : x - left + TILE
            ]
    return out


def write_versions(images: dict[str, np.ndarray], quality: int) -> dict[str, dict[str, float]]:
    """PNG files per condition folder; returns each file's PSNR against its original (none for
    the originals themselves)."""
    psnr: dict[str, dict[str, float]] = {}
    jpegs = {stem: jpeg_roundtrip(image, quality)[0] for stem, image in images.items()}
    versions = {"never JPEG": images, f"JPEG QF{quality}": jpegs}
    for name, folder in GENERATORS.items():
        generator = load_adaptive_generator(WORK / "jpeg" / folder)
        versions[name] = {stem: launder_tiled(generator, jpeg) for stem, jpeg in jpegs.items()}
        log.info("laundered %d pictures with %s", len(jpegs), folder)
    for condition, pictures in versions.items():
        folder = OUT / condition_folder(condition)
        folder.mkdir(parents=True, exist_ok=True)
        for stem, picture in pictures.items():
            cv2.imwrite(str(folder / f"{stem}.png"), picture)
        if pictures is images:
            psnr[condition] = {}
            continue
        psnr[condition] = {
            stem: round(float(peak_signal_noise_ratio(images[stem], p, data_range=255)), 3)
            for stem, p in pictures.items()
        }
    return psnr


def condition_folder(condition: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in condition.lower()).strip("_")


def summarise(records: list[dict], psnr: dict[str, float]) -> dict:
    """Counts over the pictures the command could score (`errors` counts the others)."""
    scored = [r for r in records if not r.get("error")]
    flags = {key: [bool(r[key]["flagged"]) for r in scored] for key in ("jpeg", "jpeg_comb")}
    either = [a or b for a, b in zip(flags["jpeg"], flags["jpeg_comb"], strict=True)]
    return {
        "pictures": len(scored),
        "errors": len(records) - len(scored),
        "jpeg_flagged": sum(flags["jpeg"]),
        "jpeg_comb_flagged": sum(flags["jpeg_comb"]),
        "either_flagged": sum(either),
        "jpeg_score_median": round(float(np.median([r["jpeg"]["score"] for r in scored])), 4),
        "comb_z_median": round(float(np.median([r["jpeg_comb"]["z"] for r in scored])), 1),
        "psnr_mean_db": round(float(np.mean(list(psnr.values()))), 2) if psnr else None,
        "other_checks_flagged": {
            key: sum(bool((r.get(key) or {}).get("flagged")) for r in scored) for key in OTHERS
        },
    }


def render(result: dict) -> str:
    quality = result["quality"]
    lines = [
        "# Whole pictures through `kiosk forensics --json`: adaptive attacks beside plain JPEG",
        "",
        "Generated by `python -m training.jpeg.adaptive_frames` (numbers: `adaptive_frames.json`). "
        f"The {result['pictures']} held-out `test` pictures of `uncompressed/` (256 x 256 to "
        "1024 x 1536 px, grey), each saved as PNG: as it is, after one JPEG save at QF "
        f"{quality}, and that JPEG through each adaptive generator (the CNN-only run of "
        "[adaptive.md](adaptive.md) and the comb-aware run of "
        "[adaptive_comb.md](adaptive_comb.md); trained on `train` pictures only). The kiosk's "
        "own command scored every file with its shipped models and thresholds: `jpeg` (the CNN "
        f"at threshold {result['cnn_threshold']:.4f}, source `{result['threshold_source']}`) "
        f"and `jpeg_comb` (DC comb, z >= {result['comb_threshold']:g}).",
        "",
        "| version | pictures | `jpeg` flagged | `jpeg_comb` flagged | either | median CNN score "
        "| median comb z | PSNR vs original (dB) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for condition, row in result["conditions"].items():
        n = row["pictures"]
        cells = [
            f"{row[k]} ({100 * row[k] / n:.0f} %)"
            for k in ("jpeg_flagged", "jpeg_comb_flagged", "either_flagged")
        ]
        psnr = "-" if row["psnr_mean_db"] is None else f"{row['psnr_mean_db']:.2f}"
        lines.append(
            f"| {condition} | {n} | " + " | ".join(cells) + f" | {row['jpeg_score_median']:.3f} "
            f"| {row['comb_z_median']:.1f} | {psnr} |"
        )
    lines += [
        "",
        "The same command's other forensic checks on the same files (pictures flagged):",
        "",
        "| version | " + " | ".join(f"`{k}`" for k in OTHERS) + " |",
        "|---|" + "---:|" * len(OTHERS),
    ]
    for condition, row in result["conditions"].items():
        counts = row["other_checks_flagged"]
        lines.append(f"| {condition} | " + " | ".join(str(counts[k]) for k in OTHERS) + " |")
    lines += [
        "",
        "n = 24 pictures per row: one picture is 4 points. The never-JPEG row is the false-alarm "
        "rate of the same command on the same pictures. No choice was made on these pictures.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root")
    parser.add_argument("--quality", type=int, default=75)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    limit_threads(args.threads)
    sources = images_by_split(data_root(args.data_root))["test"]
    images = {s.path.stem: read_gray(s.path) for s in sources}
    psnr = write_versions(images, args.quality)
    conditions, first = {}, None
    for condition in psnr:
        records = kiosk_records("forensics", OUT / condition_folder(condition))
        first = first or records[0]
        conditions[condition] = summarise(records, psnr[condition])
        log.info("%s: %s", condition, conditions[condition])
    result = {
        "quality": args.quality,
        "pictures": len(images),
        "generators": {name: relative(WORK / "jpeg" / f) for name, f in GENERATORS.items()},
        "cnn_threshold": first["jpeg"]["threshold"],
        "threshold_source": first["jpeg"]["threshold_source"],
        "comb_threshold": first["jpeg_comb"]["threshold"],
        "conditions": conditions,
        "psnr_per_picture": psnr,
    }
    (REPORT / "adaptive_frames.json").write_text(json.dumps(result, indent=2) + "\n")
    (REPORT / "adaptive_frames.md").write_text(render(result))
    log.info("wrote %s", REPORT / "adaptive_frames.md")


if __name__ == "__main__":
    main()
