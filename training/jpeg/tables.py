"""The paper's tables on held-out pictures, plus detector EER per quality factor.

Test crops: up to TILES[size] non-overlapping size x size tiles (centre first) of every test-split
picture, each compressed at QF 25/50/75 (J), then dithered (F1), dithered and deblocked (F2) and
laundered by the generator (GAN). All four are synthetic, made here from real never-JPEG photos.

Table I: mean PSNR / SSIM of each version against the uncompressed tile.
Table II: share of each version flagged as JPEG by a detector; tiles larger than the detector's
64-px patch are scored like kiosk captures (kiosk.runtime.forensics.jpeg: patch grid + top-quarter mean),
at the threshold chosen on validation patches (2 % false alarms). The false-alarm rate on the
uncompressed tiles is reported beside it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from kiosk.runtime.forensics.jpeg import patch_corners, pool
from training import metrics
from training.jpeg.data import (
    TEST_QUALITIES,
    images_by_split,
    jpeg_roundtrip,
    read_gray,
    tiles,
)
from training.jpeg.dither import dither_f1, dither_f2
from training.jpeg.gan import launder, load_generator
from training.jpeg.nets import DETECTORS
from training.jpeg.train import labelled, run_dir
from training.paths import REPORTS, WORK, data_root
from training.tf_setup import tf

SIZES = (64, 128, 256)
TILES = {64: 8, 128: 4, 256: 2}
METHODS = ("J", "F1", "F2", "GAN")
TARGET_FPR = 0.02
EER_QUALITIES = (25, 50, 75, 90, 95)

# Luo et al. Table I (PSNR dB, SSIM) and Table II (detection %), per size, method, QF 25/50/75.
PAPER_TABLE1 = {
    64: {
        "J": [(None, 0.884), (None, 0.928), (None, 0.956)],
        "F1": [(30.537, 0.800), (31.548, 0.861), (32.489, 0.910)],
        "F2": [(30.424, 0.814), (31.674, 0.852), (32.356, 0.870)],
        "GAN": [(33.559, 0.897), (36.000, 0.938), (38.615, 0.963)],
    },
    128: {
        "J": [(32.444, 0.886), (34.912, 0.929), (37.547, 0.957)],
        "F1": [(29.977, 0.764), (32.226, 0.835), (34.646, 0.892)],
        "F2": [(30.242, 0.810), (31.453, 0.850), (32.118, 0.870)],
        "GAN": [(33.508, 0.900), (35.868, 0.939), (38.548, 0.964)],
    },
    256: {
        "J": [(32.610, 0.890), (35.074, 0.932), (37.717, 0.959)],
        "F1": [(29.606, 0.732), (31.788, 0.807), (34.258, 0.875)],
        "F2": [(30.273, 0.805), (31.468, 0.850), (32.138, 0.872)],
        "GAN": [(33.605, 0.902), (35.919, 0.940), (38.633, 0.964)],
    },
}
PAPER_TABLE2 = {
    64: {
        "J": [100.00, 100.00, 99.95],
        "F1": [100.00, 99.45, 89.43],
        "F2": [0.05, 0, 0],
        "GAN": [14.15, 6.55, 2.08],
    },
    128: {
        "J": [99.98, 99.95, 98.15],
        "F1": [94.73, 58.00, 20.75],
        "F2": [0, 0, 0],
        "GAN": [12.50, 9.05, 3.25],
    },
    256: {
        "J": [99.98, 99.93, 98.95],
        "F1": [91.76, 39.65, 9.25],
        "F2": [0.18, 0.13, 0.025],
        "GAN": [16.50, 12.73, 7.23],
    },
}


def load_detector(arch: str, variant: str, size: int = 64) -> tf.keras.Model:
    model = DETECTORS[arch](size)
    model.load_weights(run_dir(arch, variant, size) / "best.weights.h5")
    return model


def patch_scores(model: tf.keras.Model, patches: np.ndarray) -> np.ndarray:
    return model.predict(patches[..., None].astype(np.float32), batch_size=256, verbose=0)[:, 0]


def image_scores(model: tf.keras.Model, images: np.ndarray) -> np.ndarray:
    """Kiosk-style pooled score of each image (patch grid from the origin, top-quarter mean)."""
    patch = model.input_shape[1]
    corners = patch_corners(images.shape[1], images.shape[2], patch)
    crops = np.stack([img[y : y + patch, x : x + patch] for img in images for y, x in corners])
    scores = patch_scores(model, crops).reshape(len(images), len(corners))
    return np.array([pool(row) for row in scores])


def threshold_at_fpr(model: tf.keras.Model, target: float = TARGET_FPR) -> tuple[float, dict]:
    """Lowest threshold whose false-alarm rate on validation uncompressed patches is <= target."""
    arrays = dict(np.load(WORK / "jpeg" / "patches_64.npz"))
    images, labels = labelled(arrays, "val", hardened=False)
    scores = patch_scores(model, images)
    thresholds, fpr, _ = metrics.det_curve(labels, scores)
    ok = np.flatnonzero(fpr <= target)
    threshold = float(thresholds[ok[0]]) if len(ok) else float(thresholds[-1])
    eer, _ = metrics.eer_point(labels, scores)
    return threshold, {
        "val_eer": round(float(eer), 5),
        **metrics.at_threshold(labels, scores, threshold).as_dict(),
    }


def size_conditions(
    images: list[np.ndarray], generator: tf.keras.Model, size: int, batch: int = 32
) -> dict:
    """{"original": (N,S,S), qf: {method: (N,S,S)}} for the test tiles of one size; `batch`
    tiles per generator call (a large generator on 256-px tiles needs a small one)."""
    originals = np.stack([t for image in images for t in tiles(image, size, TILES[size])])
    versions: dict = {"original": originals}
    for quality in TEST_QUALITIES:
        pairs = [jpeg_roundtrip(tile, quality) for tile in originals]
        jpeg = np.stack([p[0] for p in pairs])
        versions[quality] = {
            "J": jpeg,
            "F1": np.stack([dither_f1(j, t, i) for i, (j, t) in enumerate(pairs)]),
            "F2": np.stack([dither_f2(j, t, i) for i, (j, t) in enumerate(pairs)]),
            "GAN": launder(generator, jpeg, batch),
        }
    print(f"size {size}: {len(originals)} test tiles", flush=True)
    return versions


def build_conditions(images: list[np.ndarray], generator: tf.keras.Model) -> dict:
    """{size: size_conditions} for every test tile."""
    return {size: size_conditions(images, generator, size) for size in SIZES}


def cached_conditions(images: list[np.ndarray], generator: tf.keras.Model) -> dict:
    """build_conditions, cached in data/jpeg/ (delete it after retraining the generator)."""
    path = WORK / "jpeg" / "test_conditions.npz"
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


def table1(conditions: dict) -> dict:
    result: dict = {}
    for size, versions in conditions.items():
        for quality in TEST_QUALITIES:
            for method in METHODS:
                pairs = list(zip(versions["original"], versions[quality][method], strict=True))
                psnr = np.array([peak_signal_noise_ratio(a, b, data_range=255) for a, b in pairs])
                ssim = np.mean([structural_similarity(a, b, data_range=255) for a, b in pairs])
                finite = np.isfinite(psnr)
                result.setdefault(str(size), {}).setdefault(method, {})[str(quality)] = {
                    "psnr": round(float(psnr[finite].mean()), 3),
                    "identical": int((~finite).sum()),
                    "ssim": round(float(ssim), 4),
                    "n": len(pairs),
                }
    return result


def table2(conditions: dict, model: tf.keras.Model, threshold: float) -> dict:
    result: dict = {}
    for size, versions in conditions.items():
        row = {
            "false_alarm_uncompressed": round(
                100 * float(np.mean(image_scores(model, versions["original"]) >= threshold)), 2
            )
        }
        for quality in TEST_QUALITIES:
            for method in METHODS:
                rate = np.mean(image_scores(model, versions[quality][method]) >= threshold)
                row.setdefault(method, {})[str(quality)] = round(100 * float(rate), 2)
        result[str(size)] = row
    return result


def eer_per_quality(
    model: tf.keras.Model, images: list[np.ndarray], generator: tf.keras.Model
) -> dict:
    """Patch-level (64 px) EER of uncompressed vs each method, per quality factor."""
    originals = np.stack([t for image in images for t in tiles(image, 64, TILES[64])])
    negative = patch_scores(model, originals)
    result: dict = {}
    for quality in EER_QUALITIES:
        pairs = [jpeg_roundtrip(tile, quality) for tile in originals]
        jpeg = np.stack([p[0] for p in pairs])
        versions = {
            "J": jpeg,
            "F1": np.stack([dither_f1(j, t, i) for i, (j, t) in enumerate(pairs)]),
            "F2": np.stack([dither_f2(j, t, i) for i, (j, t) in enumerate(pairs)]),
            "GAN": launder(generator, jpeg),
        }
        for method, patches in versions.items():
            scores = np.concatenate([negative, patch_scores(model, patches)])
            labels = np.concatenate([np.zeros(len(negative)), np.ones(len(patches))])
            eer, _ = metrics.eer_point(labels, scores)
            result.setdefault(method, {})[str(quality)] = round(float(eer), 4)
    return result


def markdown_table1(ours: dict) -> str:
    lines = [
        "| size | method | "
        + " | ".join(f"QF{q} PSNR ours / paper | QF{q} SSIM ours / paper" for q in TEST_QUALITIES)
        + " |"
    ]
    lines.append("|" + "---|" * (2 + 2 * len(TEST_QUALITIES)))
    for size in SIZES:
        for method in METHODS:
            cells = []
            for k, quality in enumerate(TEST_QUALITIES):
                cell = ours[str(size)][method][str(quality)]
                paper_psnr, paper_ssim = PAPER_TABLE1[size][method][k]
                identical = f" ({cell['identical']} identical)" if cell["identical"] else ""
                cells.append(
                    f"{cell['psnr']:.2f}{identical} / {'INF' if paper_psnr is None else f'{paper_psnr:.2f}'}"
                )
                cells.append(f"{cell['ssim']:.3f} / {paper_ssim:.3f}")
            lines.append(f"| {size} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_table2(tables: dict[str, dict]) -> str:
    names = list(tables)
    header = (
        "| size | method | "
        + " | ".join(f"QF{q} " + " / ".join(names) + " / paper" for q in TEST_QUALITIES)
        + " |"
    )
    lines = [header, "|" + "---|" * (2 + len(TEST_QUALITIES))]
    for size in SIZES:
        for method in METHODS:
            cells = []
            for k, quality in enumerate(TEST_QUALITIES):
                values = [f"{tables[n][str(size)][method][str(quality)]:.1f}" for n in names]
                cells.append(" / ".join(values) + f" / {PAPER_TABLE2[size][method][k]:g}")
            lines.append(f"| {size} | {method} | " + " | ".join(cells) + " |")
        alarms = " / ".join(
            f"{tables[n][str(size)]['false_alarm_uncompressed']:.1f}" for n in names
        )
        lines.append(f"| {size} | uncompressed (false alarms) | {alarms} | | |")
    return "\n".join(lines)


def plot_table2(tables: dict[str, dict], out: Path) -> None:
    fig, axes = plt.subplots(1, len(tables), figsize=(5 * len(tables), 4), squeeze=False)
    for ax, (name, table) in zip(axes[0], tables.items(), strict=True):
        for method in METHODS:
            ax.plot(
                TEST_QUALITIES,
                [table["128"][method][str(q)] for q in TEST_QUALITIES],
                "o-",
                label=method,
            )
        ax.set(
            title=f"{name}: detection rate, 128 px",
            xlabel="JPEG quality factor",
            ylabel="% flagged as JPEG",
            ylim=(-5, 105),
        )
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def save_examples(conditions: dict, out: Path) -> None:
    versions = conditions[128]
    fig, axes = plt.subplots(1, 5, figsize=(15, 3.4))
    panels = [("uncompressed", versions["original"][0])] + [
        (f"{m} (QF25)", versions[25][m][0]) for m in METHODS
    ]
    for ax, (title, image) in zip(axes, panels, strict=True):
        ax.imshow(image[:64, :64], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    """`python -m training.jpeg.tables [--detectors kv:plain constrained:plain ...]`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data-root")
    parser.add_argument(
        "--detectors", nargs="+", default=["constrained:plain", "kv:plain", "kv:hardened"]
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    splits = images_by_split(data_root(args.data_root))
    images = [read_gray(source.path) for source in splits["test"]]
    generator = load_generator(64)
    conditions = cached_conditions(images, generator)
    out = REPORTS / "jpeg_forensics"
    previous = (
        json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else {}
    )
    results: dict = {
        "test_pictures": len(images),
        "tiles": {str(s): len(conditions[s]["original"]) for s in SIZES},
    }
    results["table1"] = table1(conditions)
    # Detectors not re-scored this run keep their previous rows.
    for key in ("table2", "eer_per_qf", "thresholds"):
        results[key] = previous.get(key, {})
    for spec in args.detectors:
        arch, variant = spec.split(":")
        model = load_detector(arch, variant)
        threshold, validation = threshold_at_fpr(model)
        results["thresholds"][spec] = {"threshold": threshold, **validation}
        results["table2"][spec] = table2(conditions, model, threshold)
        results["eer_per_qf"][spec] = eer_per_quality(model, images, generator)
        print(f"{spec}: threshold {threshold:.4f}", flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (out / "tables.md").write_text(
        "## Table I (ours / paper)\n\n"
        + markdown_table1(results["table1"])
        + "\n\n## Table II (% flagged; detectors: "
        + ", ".join(results["table2"])
        + ", then the paper)\n\n"
        + markdown_table2(results["table2"])
        + "\n"
    )
    plot_table2(results["table2"], out / "table2_128px.png")
    save_examples(conditions, out / "examples_qf25.png")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
