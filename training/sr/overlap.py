"""Which benchmark pictures are (near) copies of SR training pictures, and the shipped model's
scores without them.

    python -m training.sr.overlap          # writes reports/sr/overlap.{json,md}

SR trained on `uncompressed/` (and faces68/), and several Set14 pictures (baboon, barbara,
bridge, man, monarch, pepper...) are classic test images that `uncompressed/` holds too, at
another size or crop. Search: every benchmark picture's Y against every training picture's Y,
both resized to 32x32 (area), by normalised correlation; the 5 best candidates (thumbnails of the centred square) are then compared
at full size (the training picture resized to the benchmark's size, and, when it is larger, also
searched as a crop by template matching, at scales 0.5-1.6) and the best PSNR kept. A picture is an overlap when
that PSNR is >= 30 dB or the thumbnail correlation is >= 0.95. The shipped `sr_x4` TFLite is
then scored on each set with and without the overlapping pictures. SR training leaves the
matched training pictures out (`training.sr.data.BENCHMARK_COPIES`), so for a model trained
since then `all` is unseen too; `clean` compares it with the earlier model that saw them.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from kiosk.contract.manifest import load_manifest, read_model
from kiosk.runtime.forensics.sr import entry_ensemble
from training.paths import MODELS, REPORTS, data_root
from training.sr.data import BENCHMARKS, benchmark, read_y, training_files

OUT = REPORTS / "sr"
THUMB = 32
PSNR_OVERLAP = 30.0
CORRELATION_OVERLAP = 0.95
# Issue 15 names these as copies of training pictures; excluded even where the search finds no
# pixel-near copy (baboon: the same scene as USC-SIPI 4.2.03, another scan or resampling).
NAMED_IN_ISSUE = {
    "Set14": ("baboon.png", "barbara.png", "bridge.png", "man.png", "monarch.png", "pepper.png")
}


def _thumb(y: np.ndarray) -> np.ndarray:
    """32x32 of the centred square: a crop of another aspect still lands near its original."""
    side = min(y.shape)
    top, left = (y.shape[0] - side) // 2, (y.shape[1] - side) // 2
    square = y[top : top + side, left : left + side].astype(np.float32)
    small = cv2.resize(square, (THUMB, THUMB), interpolation=cv2.INTER_AREA).ravel()
    small -= small.mean()
    return small / (np.linalg.norm(small) + 1e-6)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / max(np.mean((a - b) ** 2), 1e-12)))


def _quarter(y: np.ndarray) -> np.ndarray:
    return cv2.resize(y, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)


def best_match(hr: np.ndarray, candidate: np.ndarray) -> float:
    """Best PSNR of `candidate` against `hr` over scales 0.5-1.6: resized to hr's size, or
    one searched as a crop of the other (template matching)."""
    height, width = hr.shape
    resized = cv2.resize(candidate, (width, height), interpolation=cv2.INTER_AREA)
    best = _psnr(hr, resized)
    for scale in np.linspace(0.5, 1.6, 23):
        scaled = cv2.resize(candidate, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        if scaled.shape[0] >= height and scaled.shape[1] >= width:
            big, small = scaled, hr
        elif scaled.shape[0] <= height and scaled.shape[1] <= width:
            big, small = hr, scaled
        else:
            continue
        error = cv2.matchTemplate(big, small, cv2.TM_SQDIFF).min() / small.size
        best = max(best, float(10 * np.log10(255.0**2 / max(error, 1e-12))))
    return best


def find_overlaps(root: Path) -> dict[str, list[dict]]:
    train = [
        (path, read_y(path).astype(np.float32)) for path in training_files(root, with_copies=True)
    ]
    train = [(path, y, _thumb(y)) for path, y in train if "uncompressed" in path.parts]
    found: dict[str, list[dict]] = {}
    for name in BENCHMARKS:
        rows = []
        for file, _, _ in benchmark(root, name):
            hr = read_y(root / "sr" / name / file).astype(np.float32)
            thumb = _thumb(hr)
            correlations = np.array([float(thumb @ t) for _, _, t in train])
            top = np.argsort(correlations)[-5:][::-1]
            if name != "BSD68":  # classic test images: also every training picture at 1/4 size
                quarter = cv2.resize(hr, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)
                coarse = np.array([best_match(quarter, _quarter(y)) for _, y, _ in train])
                top = np.unique(np.r_[top, np.argsort(coarse)[-3:]])
            psnrs = [best_match(hr, train[i][1]) for i in top]
            best = int(np.argmax(psnrs))
            rows.append(
                {
                    "picture": file,
                    "closest_training_picture": str(train[top[best]][0].relative_to(root)),
                    "correlation_32px": round(float(correlations[top[best]]), 4),
                    "psnr_db": round(psnrs[best], 2),
                    "overlap": bool(psnrs[best] >= PSNR_OVERLAP)
                    or bool(correlations[top[best]] >= CORRELATION_OVERLAP)
                    or file in NAMED_IN_ISSUE.get(name, ()),
                    "search_confirms": bool(psnrs[best] >= PSNR_OVERLAP),
                }
            )
        found[name] = rows
    return found


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root")
    args = parser.parse_args(argv)
    root = data_root(args.data_root)
    from training.sr.evaluate import psnr_ssim, tflite_upscaler  # TensorFlow only from here

    overlaps = find_overlaps(root)
    manifest = load_manifest(MODELS)
    entry = manifest.models["sr_x4"]
    views = entry_ensemble(entry.extra)  # as the kiosk runs it
    upscale = tflite_upscaler(read_model(MODELS, "sr_x4", entry), views)
    scores: dict = {}
    for name in BENCHMARKS:
        excluded = {row["picture"] for row in overlaps[name] if row["overlap"]}
        per = {file: psnr_ssim(upscale(lr), hr) for file, hr, lr in benchmark(root, name)}
        for subset, keep in (("all", set(per)), ("clean", set(per) - excluded)):
            values = np.array([per[file] for file in sorted(keep)])
            scores[f"{name} {subset}"] = {
                "pictures": len(keep),
                "psnr": round(float(values[:, 0].mean()), 3),
                "ssim": round(float(values[:, 1].mean()), 4),
            }
    result = {"overlaps": overlaps, "shipped_sr_x4": scores, "self_ensemble": views}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "overlap.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# SR benchmarks without pictures that SR trained on",
        "",
        "Generated by `python -m training.sr.overlap` (scores: the shipped `sr_x4` TFLite as "
        f"the kiosk runs it, self-ensemble of {views} pass{'es' if views > 1 else ''} per tile, "
        "trained without the matched pictures: `training.sr.data.BENCHMARK_COPIES`).",
        "",
        "| set | pictures | PSNR (dB) | SSIM |",
        "|---|---:|---:|---:|",
        *(
            f"| {key} | {v['pictures']} | {v['psnr']:.2f} | {v['ssim']:.4f} |"
            for key, v in scores.items()
        ),
        "",
        "`clean` leaves out every picture the search matched and the six issue 15 names. The "
        "model shipped before 2026-11-29 trained on the matched pictures (Set5 30.21 dB all, "
        "31.71 clean); the shipped one never saw them, so its `all` rows are unseen pictures "
        "too. Reading of the paper (Padmanabhan, section 4.2.1): MSE models had the higher "
        "PSNR, perceptual-loss models the *higher* SSIM; our perceptual variants are "
        "undertrained and were not retrained (CPU only).",
        "",
        f"Overlap: best PSNR >= {PSNR_OVERLAP} dB against a training picture (resized or as a "
        f"crop) or 32-px thumbnail correlation >= {CORRELATION_OVERLAP}.",
        "",
        "| set | picture | closest training picture | correlation | PSNR (dB) | search confirms "
        "| excluded |",
        "|---|---|---|---:|---:|---|---|",
    ]
    for name, rows in overlaps.items():
        lines += [
            f"| {name} | {r['picture']} | {r['closest_training_picture']} | "
            f"{r['correlation_32px']:.3f} | {r['psnr_db']:.1f} | "
            f"{'yes' if r['search_confirms'] else 'no'} | {'**yes**' if r['overlap'] else ''} |"
            for r in rows
            if r["overlap"] or r["correlation_32px"] >= 0.8
        ]
    (OUT / "overlap.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
