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
import textwrap
from pathlib import Path

import numpy as np

from kiosk.contract.manifest import load_manifest, read_model
from kiosk.runtime.forensics.jpeg import MODEL_NAME, JpegHistoryCheck, pool
from kiosk.runtime.forensics.jpeg_grid import Z_THRESHOLD, comb_statistic
from kiosk.runtime.models.fusion import logit, sigmoids
from kiosk.runtime.models.tflite_io import BinaryClassifier, dequantize
from training.jpeg.adaptive import TfliteReplica, adaptive_dir, load_adaptive_generator
from training.jpeg.data import (
    TEST_QUALITIES,
    images_by_split,
    patches_path,
    read_gray,
)
from training.jpeg.gan import to_unit
from training.jpeg.tables import (
    METHODS,
    PAPER_TABLE1,
    PAPER_TABLE2,
    SIZES,
    save_examples,
    size_conditions,
    table1,
)
from training.paths import MODELS, REPO, REPORTS, WORK, data_root
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
    scores = [sigmoids(v) for v in (tflite, ours)]
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


def conditions(
    images: list[np.ndarray], generator: tf.keras.Model, folder: Path, steps: int, sizes: list[int]
) -> dict:
    """tables.size_conditions with the adaptive generator as "GAN", 4 tiles per generator call
    (its 32 tiles of 256 px took 24 GB here), cached per size and training step (never in
    data/jpeg/test_conditions.npz, which tables.py reads as the old GAN's outputs)."""
    out: dict = {}
    for size in sizes:
        path = folder / f"test_conditions_step{steps}_{size}.npz"
        if not path.exists():
            versions = size_conditions(images, generator, size, batch=4)
            flat = {"original": versions["original"]}
            flat.update({f"{q}_{m}": versions[q][m] for q in TEST_QUALITIES for m in METHODS})
            np.savez_compressed(path, **flat)
        flat = np.load(path)
        out[size] = {
            "original": flat["original"],
            **{q: {m: flat[f"{q}_{m}"] for m in METHODS} for q in TEST_QUALITIES},
        }
    return out


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
        for cell, crops in cells.items():
            scores, z = tile_scores(check, crops), comb_z(crops)
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
    for size in map(int, result["table2"]):
        table = result["table2"][str(size)]
        for method in METHODS:
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
        old = previous.get(str(size), {}).get("GAN")
        if old:
            cells = " | ".join(f"{old[str(q)]:.1f} (float) / - / -" for q in TEST_QUALITIES)
            lines.append(f"| {size} | old GAN (in training data) | {cells} | | | |")
        row = table["original"]
        lines.append(
            f"| {size} | uncompressed (false alarms, no QF) | {row['cnn_manifest']:.1f} / "
            f"{row['cnn_calibrated']:.1f} | | | {row['comb_kiosk']:.1f} / "
            f"{row['either_kiosk']:.1f} | | |"
        )
    return "\n".join(lines)


def markdown_table1(ours: dict, previous: dict) -> str:
    """PSNR / SSIM of J and the adaptive GAN vs the originals, beside the old GAN and the paper."""
    head = "| size | method | " + " | ".join(f"QF{q} PSNR / SSIM" for q in TEST_QUALITIES) + " |"
    lines = [head, "|" + "---|" * (2 + len(TEST_QUALITIES))]
    for size in map(int, ours):
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
    """`python -m training.jpeg.adaptive_report`: evaluate data/jpeg/adaptive/ on test tiles
    (`--generator-dir D --name N --beside J`: another run's generator, into N.md / N.json, with
    the adaptive GAN rows of the report J set beside its own)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--generator-dir", type=Path, default=adaptive_dir())
    parser.add_argument("--name", default="adaptive", help="report file stem")
    parser.add_argument("--beside", type=Path, default=REPORT / "adaptive_cpu_run.json")
    parser.add_argument("--data-root")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--markdown-only", action="store_true", help="re-render adaptive.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.markdown_only:
        write_markdown(json.loads((REPORT / f"{args.name}.json").read_text()), args.name)
        return
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
    generator = load_adaptive_generator(args.generator_dir)
    state = json.loads((args.generator_dir / "state.json").read_text())

    images = [read_gray(s.path) for s in images_by_split(data_root(args.data_root))["test"]]
    versions = conditions(images, generator, args.generator_dir, state["steps_done"], args.sizes)
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
    result = {
        "report_name": args.name,
        "command": report_command(args),
        "generator_dir": relative(args.generator_dir),
        "model": {"file": entry.file, "sha256": entry.sha256},
        "thresholds": {"cnn": cnn, "comb_z": comb},
        "test_pictures": len(images),
        "tiles": {str(s): len(versions[s]["original"]) for s in args.sizes},
        "training": {k: v for k, v in state.items() if k != "log"},
        "training_log": state["log"],
        "replica_vs_tflite": replica_check,
        "table1": table1(versions),
        "table2": score_all(versions, check, cnn, comb),
        "generator_params": generator.count_params(),
        "train_patches": len(arrays["train_jpeg"]),
        "patch_size": int(arrays["train_jpeg"].shape[1]),
        "jpeg_l1_train_patches": round(
            float(
                np.mean(np.abs(to_unit(arrays["train_jpeg"]) - to_unit(arrays["train_originals"])))
            ),
            5,
        ),
        "threshold_logit": round(logit(cnn["manifest"]), 4),
    }
    REPORT.mkdir(parents=True, exist_ok=True)
    if args.beside.exists():
        result["beside"] = {"file": args.beside.name, **adaptive_rows(args.beside)}
    (REPORT / f"{args.name}.json").write_text(json.dumps(result, indent=2) + "\n")
    save_examples(versions, REPORT / f"{args.name}_examples_qf25.png")
    write_markdown(result, args.name)


def relative(path: Path) -> str:
    return str(path.resolve().relative_to(REPO))


def report_command(args: argparse.Namespace) -> str:
    """The command that writes this report (the defaults left out)."""
    words = ["python -m training.jpeg.adaptive_report"]
    if args.generator_dir.resolve() != adaptive_dir().resolve():
        words.append(f"--generator-dir {relative(args.generator_dir)}")
    if args.name != "adaptive":
        words.append(f"--name {args.name}")
    if args.beside.resolve() != (REPORT / "adaptive_cpu_run.json").resolve():
        words.append(f"--beside {relative(args.beside)}")
    return " ".join(words)


def adaptive_rows(path: Path) -> dict:
    """The earlier run's training summary and adaptive-GAN cells, to set beside this run's."""
    earlier = json.loads(path.read_text())
    return {
        "training": {k: v for k, v in earlier["training"].items() if k != "log"},
        "table2": {s: {k: v for k, v in t.items() if k.startswith("GAN_")}
                   for s, t in earlier["table2"].items()},
        "table1": {s: {m: t[m] for m in ("GAN", "J")} for s, t in earlier["table1"].items()},
    }  # fmt: skip


def write_markdown(result: dict, name: str) -> None:
    previous = json.loads((REPORT / "results.json").read_text())
    text = render(
        result, previous.get("table1", {}), previous.get("table2", {}).get("kv:hardened", {})
    )
    (REPORT / f"{name}.md").write_text(text)
    log.info("wrote %s", REPORT / f"{name}.md")


def _cells(result: dict, method: str, key: str) -> list[float]:
    """One method's detection % over every size and QF."""
    table = result["table2"]
    return [table[s][f"{method}_{q}"][key] for s in table for q in TEST_QUALITIES]


def _span(values: list[float]) -> str:
    if min(values) == max(values):
        return f"{min(values):.1f} %"
    return f"{min(values):.1f}-{max(values):.1f} %"


def render(result: dict, previous_table1: dict, previous_table2: dict) -> str:
    """adaptive.md: scale first, then the replica check, Tables I and II, the whole pass."""
    train, table2, name = result["training"], result["table2"], result["report_name"]
    replica = result["replica_vs_tflite"]
    sizes = [int(s) for s in result["tiles"]]
    px, cells = " / ".join(map(str, sizes)), len(sizes) * len(TEST_QUALITIES)
    alarms = {s: table2[str(s)]["original"] for s in sizes}
    tiles = result["tiles"]
    gan_psnr = [
        result["table1"][str(s)]["GAN"][str(q)]["psnr"] for s in sizes for q in TEST_QUALITIES
    ]
    jpeg_psnr = [
        result["table1"][str(s)]["J"][str(q)]["psnr"] for s in sizes for q in TEST_QUALITIES
    ]
    gain = [g - j for g, j in zip(gan_psnr, jpeg_psnr, strict=True)]
    lines = [
        "# Adaptive attack on the shipped JPEG-history detector"
        + (" and the DC comb" if train.get("comb_weight") else "")
        + " (issue 15, item 4)",
        "",
        f"Generated by `{result['command']}` (numbers: `{name}.json`) from the generator in "
        f"`{result['generator_dir']}/`, trained by {trained_by(train)}. Background and the "
        "earlier tables: [README.md](README.md).",
        "",
        scale_paragraph(result),
        "",
        "## The attack",
        "",
        "- **Target = the file the kiosk runs**: `models/jpeg_history.tflite` (int8, sha256 "
        f"`{result['model']['sha256'][:12]}...`). A float TensorFlow replica is read from the "
        "TFLite graph itself (`training/jpeg/adaptive.py` `TfliteReplica`): dequantized per-channel "
        "weights with the export's folded batch norm, int32 biases, and every int8 activation "
        "fake-quantized at the file's own scale and zero point with straight-through gradients. "
        "It is frozen: a deployed detector does not adapt, so there is no discriminator step.",
        "- **Loss**: L1(G(jpeg), original) + gamma x softplus(replica logit of round(G(jpeg)))"
        f"{comb_attack(train)}; gamma = {train['gamma']} (the paper's), the non-saturating adversarial term of "
        "`training/jpeg/gan.py`; outputs are rounded to uint8 (straight-through) before the "
        "replica sees them, as a saved image is. No perceptual term (beta = 1e-6 in the paper: "
        f"negligible). Adam lr {train['lr']} (betas 0.9/0.999), L1-only warm-up "
        f"{train['warmup_steps']} steps (the generator starts as the identity, i.e. at JPEG "
        "quality, so the paper's warm-up is not needed to avoid grey outputs). One generator for "
        f"QF 20-95; {augmentation(result)}.",
        "- **Data**: generator trained on `train`-split patches only (never-JPEG pictures + their "
        "JPEG versions, `training/jpeg/data.py`); evaluated on the held-out `test` pictures "
        f"({result['test_pictures']}) only, on the tiles of the shipped report "
        f"({' / '.join(str(tiles[str(s)]) for s in sizes)} tiles of {px} px; one tile is "
        f"{' / '.join(f'{100 / tiles[str(s)]:.1f}' for s in sizes)} points), "
        "each compressed alone at QF 25/50/75. These outputs attack the shipped model: they are "
        f"kept in `{result['generator_dir']}/` and must never enter a detector's training data.",
        training_curve(result),
        "",
        "## Does the replica score like the kiosk? (held-out patches)",
        "",
        "| patches | n | score correlation | mean abs score diff | mean abs logit diff | "
        "identical int8 logit | same flag at the manifest threshold |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    names = {
        "validation_patches_original_and_jpeg": "validation: uncompressed + JPEG (QF 20-95)",
        "test_adaptive_outputs_64px": "test: adaptive outputs, 64 px, QF 25/50/75",
    }
    for key, row in replica.items():
        lines.append(
            f"| {names[key]} | {row['n']} | {row['score_correlation']:.6f} | "
            f"{row['score_mean_abs_diff']:.6f} | {row['logit_mean_abs_diff']:.4f} | "
            f"{100 * row['logit_identical_share']:.1f} % | {100 * row['flag_agreement']:.1f} % |"
        )
    lines += [
        "",
        "Where the logits differ they differ by one step of the output's int8 scale (0.113).",
        "",
        "## Table I - PSNR (dB) / SSIM against the uncompressed tile",
        "",
        "`old GAN` = the 4 x 32 generator of the shipped report (trained against the plain "
        "detector, in the hardened detector's training data); `paper's GAN` = Luo et al.",
        "",
        markdown_table1(result["table1"], previous_table1),
        "",
        f"Adaptive GAN minus JPEG, PSNR: {min(gain):+.2f} to {max(gain):+.2f} dB over the {cells} cells.",
        "",
        "![first 128-px test tile, top-left 64 px: uncompressed, J, F1, F2 and the adaptive GAN "
        f"(labelled GAN) at QF 25]({name}_examples_qf25.png)",
        "",
        appearance(result["training"]),
        "",
        "## Table II - % of test tiles flagged as JPEG, scored as the kiosk scores",
        "",
        "LiteRT int8 `jpeg_history.tflite` through `kiosk.runtime.forensics.jpeg.JpegHistoryCheck` "
        "(64-px patch grid from the origin, mean of the top quarter of patch scores). `manifest` = "
        f"threshold {result['thresholds']['cnn']['manifest']:.4f}; `calibrated` = the camera "
        f"calibration point {result['thresholds']['cnn']['calibrated']:.6f} "
        "(calibration.json, 1 % false alarms on val camera-like frames); `paper` = Luo et al.'s "
        "Table II (their own detector). The last columns: the kiosk's second, model-free check "
        "(`jpeg_comb`, DC quantisation comb, z >= 35 as in `jpeg_grid.py`), then either check "
        "(CNN at the manifest threshold OR comb), i.e. the whole JPEG part of the forensic pass. "
        "The old GAN row is the shipped report's float Keras number (its own threshold). "
        "Uncompressed rows: false alarms on the never-JPEG tiles in the same run.",
        "",
        markdown_table2(result, previous_table2),
        "",
        *beside_table(result),
        "## Reading",
        "",
        f"- **CNN alone, manifest threshold**: the adaptive GAN is flagged on "
        f"{_span(_cells(result, 'GAN', 'cnn_manifest'))} of test tiles over the {cells} cells "
        f"(plain JPEG {_span(_cells(result, 'J', 'cnn_manifest'))}), at false alarms of "
        + " / ".join(f"{alarms[s]['cnn_manifest']:.1f}" for s in sizes)
        + f" % ({px} px). At the calibrated threshold: GAN "
        f"{_span(_cells(result, 'GAN', 'cnn_calibrated'))}, false alarms "
        + " / ".join(f"{alarms[s]['cnn_calibrated']:.1f}" for s in sizes)
        + " %.",
        f"- **DC comb (z >= 35)** catches {_span(_cells(result, 'GAN', 'comb_kiosk'))} of "
        f"the adaptive outputs (JPEG: {_span(_cells(result, 'J', 'comb_kiosk'))}); it needs "
        "enough textured blocks, so on 64-px tiles it mostly cannot decide ("
        + ", ".join(
            f"QF{q}: {table2['64'][f'GAN_{q}']['comb_too_few_blocks']} of {tiles['64']}"
            for q in TEST_QUALITIES
        )
        + " adaptive 64-px tiles had fewer than 64 usable blocks); its false alarms: "
        + " / ".join(f"{alarms[s]['comb_kiosk']:.1f}" for s in sizes)
        + " %.",
        f"- **Whole JPEG pass (CNN at the manifest threshold or comb)**: adaptive GAN flagged on "
        f"{_span(_cells(result, 'GAN', 'either_kiosk'))}, false alarms "
        + " / ".join(f"{alarms[s]['either_kiosk']:.1f}" for s in sizes)
        + " %.",
        "- The comb thresholds of calibration.json (Rayleigh 1 % z = "
        f"{result['thresholds']['comb_z']['rayleigh_1pct']:.2f}, calibrated "
        f"{result['thresholds']['comb_z']['calibrated']:.2f}) were set for whole frames; on these "
        "small tiles they flag "
        + " / ".join(f"{alarms[s]['comb_rayleigh_1pct']:.1f}" for s in sizes)
        + " and "
        + " / ".join(f"{alarms[s]['comb_calibrated']:.1f}" for s in sizes)
        + f" % of the uncompressed tiles ({px} px), so they are in {name}.json only.",
    ]
    return "\n".join(lines) + "\n" + limits(result, gain)


PAPER_PATCHES = 50 * 80_000  # 50 epochs x 80,000 patches of 128 px, batch 16


def on_accelerator(train: dict) -> bool:
    """True for a run of training/jpeg/adaptive_gpu.py (its state names the device)."""
    return train.get("device", "cpu") != "cpu"


def scale_paragraph(result: dict) -> str:
    """How much training the generator had, against the paper's."""
    train = result["training"]
    steps, batch = train["steps_done"], train["batch"]
    seen = steps * batch
    size = train.get("patch_size", result["patch_size"])
    share = f"this run saw {100 * seen / PAPER_PATCHES:.2f} % of the paper's patches"
    paper = (
        f"the paper trained 50 epochs x 80,000 patches ({PAPER_PATCHES:,} patches of 128 px, "
        "batch 16)"
    )
    params = f"16 residual blocks x 64 filters, {result['generator_params']:,} parameters"
    if on_accelerator(train):
        return (
            f"**Scale: an accelerator run, the paper's generator.** The generator ({params}) "
            f"trained for **{steps:,} steps of batch {batch}** on {size}-px patches ({seen:,} "
            f"patches) in **{train['seconds'] / 60:.1f} minutes** on one {train['device']} "
            f"(`{train['trainer']}`: PyTorch {train['torch']}, the generator in bfloat16 "
            "autocast, the replica in float32; its weights were loaded into the Keras generator, "
            f"whose outputs match to {train['keras_vs_torch_max_abs_diff']:.1e}). "
            f"{paper[0].upper()}{paper[1:]}: "
            f"{share}{versus(result, seen)}.{started_from(train)} It is still a "
            "fraction of the paper's training, so the detection rates below remain upper bounds "
            "on what a determined attacker reaches."
        )
    return (
        f"**Scale: a CPU run, not the paper's.** No accelerator was available to this session. "
        f"The generator has the paper's size ({params}) but trained for **{steps} steps of batch "
        f"{batch}** on {size}-px patches ({seen:,} patches drawn from our "
        f"{result['train_patches']:,} training patches, {seen / result['train_patches']:.1f} "
        f"passes) in **{train['seconds'] / 60:.0f} minutes** on one CPU thread shared with another "
        f"training; {paper}, i.e. {share}. The attack below is therefore a *lower bound* on what "
        "an adaptive attacker achieves."
    )


def started_from(train: dict) -> str:
    if not train.get("init"):
        return ""
    return (
        " It started from the CNN-only run's generator (adaptive.md) and went on with the "
        f"DC-comb term added to its loss, at lr {train['lr']:g}."
    )


def appearance(train: dict) -> str:
    """What the example figure shows (looked at for each run)."""
    if on_accelerator(train):
        return (
            "The adaptive output is the JPEG de-blocked: block edges smoothed away, the detail "
            "that JPEG removed (skin texture, lashes) not restored."
        )
    return (
        "The adaptive output looks like the JPEG it came from (blocking still visible at QF 25): "
        "what fools the CNN is a perturbation too small to see, not a restoration."
    )


def trained_by(train: dict) -> str:
    if on_accelerator(train):
        return (
            f"`{train['trainer']}` on an accelerator (inputs from `make jpeg-adaptive-bundle`, "
            "loaded back by `python -m training.jpeg.adaptive --import-gpu`)"
        )
    return "`python -m training.jpeg.adaptive` (`make jpeg-adaptive` runs both)"


def run_label(train: dict) -> str:
    """A run named by what it was: the CPU run, the accelerator's CNN-only or comb-aware run."""
    steps = f"{train['steps_done']:,} steps of batch {train['batch']}"
    if not on_accelerator(train):
        return f"CPU run ({steps}, 64 px)"
    kind = "comb-aware" if train.get("comb_weight") else "CNN-only"
    return f"{kind} accelerator run ({steps}, {train['patch_size']} px)"


def versus(result: dict, seen: int) -> str:
    """How many times the patches of the run set beside this one."""
    earlier = result.get("beside", {}).get("training")
    if not earlier or on_accelerator(earlier):
        return ""
    return (
        f", {seen / (earlier['steps_done'] * earlier['batch']):.0f} times the CPU run it replaces"
    )


def comb_attack(train: dict) -> str:
    """The loss term against the DC comb, when the run had one."""
    if not train.get("comb_weight"):
        return ""
    return (
        f" + {train['comb_weight']:g} x softplus(max over DC steps of z - {train['comb_margin']:g}), "
        "where z is the kiosk's DC-comb statistic (`jpeg_grid.comb_statistic` on each 128-px "
        "output's own 8x8 grid, usable blocks as the kiosk's; a differentiable copy in "
        "`adaptive_gpu.comb_z`, equal to the kiosk's within 4e-4): the attacker knows both "
        "checks of the JPEG pass"
    )


def augmentation(result: dict) -> str:
    train = result["training"]
    if on_accelerator(train):
        return (
            f"random {train['patch_size']}-px crops of the {train['train_pictures']} train-split "
            "pictures with flips and rot90, each compressed on the fly (Pillow, as "
            "`training/jpeg/data.py`), and every 128-px output scored by the replica as its four "
            "64-px tiles on the origin's grid, as the kiosk tiles a picture; Adam's rate warmed up "
            f"over {train['lr_warmup_steps']} steps, then cosine to a tenth"
        )
    return "flips and rot90 of the 64-px training patches"


def training_curve(result: dict) -> str:
    """First and last logged windows; for an accelerator run also its validation patches."""
    log_rows = [row for row in result["training_log"] if "l1" in row]
    first, last = log_rows[0], log_rows[-1]
    text = (
        f"- **Training curve** (means over logging windows of {first['step']} steps): first L1 "
        f"{first['l1']:.4f}, mean replica logit {first['mean_logit']:.2f}; last window L1 "
        f"{last['l1']:.4f}, mean logit {last['mean_logit']:.2f} (flagging starts at logit "
        f"{result['threshold_logit']:.2f}; the JPEG inputs themselves have L1 "
        f"{result['jpeg_l1_train_patches']:.4f} to their originals)."
    )
    if "comb_max_z" in first:
        text += (
            f" The largest DC-comb z of a training patch averaged {first['comb_max_z']:.1f} in "
            f"the first window and {last['comb_max_z']:.1f} in the last (the kiosk flags at "
            f"{Z_THRESHOLD:g}; a never-JPEG 128-px patch scores a few)."
        )
    validated = [row for row in result["training_log"] if "val_flagged" in row]
    if validated:
        start, end = validated[0], validated[-1]
        text += (
            " On the validation JPEG patches of the run's bundle (64 px, "
            "QF 20-95, eval mode, scored by the replica at the manifest threshold): flagged "
            f"{100 * start['val_flagged']:.1f} % at the start, {100 * end['val_flagged']:.1f} "
            f"% after; PSNR {end['val_psnr_gain_db']:+.2f} dB over the JPEG input."
        )
    return text


def beside_table(result: dict) -> list[str]:
    """The adaptive GAN of the run set beside this one (`--beside`), cell by cell."""
    earlier = result.get("beside")
    if not earlier:
        return []
    name = run_label(earlier["training"])
    lines = [
        f"### The {name} beside this one",
        "",
        "Adaptive GAN, % of test tiles flagged (CNN at the manifest threshold / at the calibrated "
        "threshold / whole JPEG pass: CNN or comb) and PSNR gain over plain JPEG. Same test "
        f"tiles, same detector; the earlier run's numbers are in `{earlier['file']}`.",
        "",
        "| size | QF | earlier: manifest / calibrated / either | this run | PSNR gain earlier / "
        "this run (dB) |",
        "|---|---|---|---|---|",
    ]
    for size in result["table2"]:
        for q in TEST_QUALITIES:
            rows = [run["table2"][size][f"GAN_{q}"] for run in (earlier, result)]
            gains = [
                run["table1"][size]["GAN"][str(q)]["psnr"]
                - run["table1"][size]["J"][str(q)]["psnr"]
                for run in (earlier, result)
            ]
            cells = [
                f"{r['cnn_manifest']:.1f} / {r['cnn_calibrated']:.1f} / {r['either_kiosk']:.1f}"
                for r in rows
            ]
            lines.append(
                f"| {size} | {q} | {cells[0]} | {cells[1]} | {gains[0]:+.2f} / {gains[1]:+.2f} |"
            )
    return [*lines, ""]


def limits(result: dict, gain: list[float]) -> str:
    train = result["training"]
    if on_accelerator(train):
        fooled = (
            "The comb fell within the first thousand steps of this run, which began from a "
            "generator that already fooled the CNN"
            if train.get("init")
            else "The generator fools the CNN within the first thousand steps"
        )
        rest = (
            "kept its fidelity" if train.get("init") else "went into fidelity, mostly de-blocking"
        )
        share = 100 * train["steps_done"] * train["batch"] / PAPER_PATCHES
        scale = textwrap.fill(
            f"- **Scale.** {train['steps_done']:,} steps of batch {train['batch']} on 128-px "
            f"patches in {train['seconds'] / 60:.1f} minutes of a lent accelerator: {share:.1f} % "
            f"of the paper's 4 M patches. {fooled} (training curve); the rest of the run {rest}: "
            f"PSNR {min(gain):+.2f} to {max(gain):+.2f} dB over JPEG on the test tiles, where the "
            "paper's GAN gains about 1 dB. A longer run "
            "would make a cleaner attack; the detection rates above are upper bounds on what "
            "the shipped checks do against a determined attacker.",
            width=99,
            subsequent_indent="  ",
        )
    else:
        scale = """- **Scale.** A few hundred CPU steps of batch 8 on 64-px patches, against the paper's 4 M patches
  of 128 px: the generator had time to learn *to fool the detector* (that takes tens of steps, see
  the training curve) but hardly to restore what JPEG removed, so its PSNR/SSIM stays at JPEG
  level where the paper's GAN gains about 1 dB. A longer run (accelerator) would make a cleaner
  attack and most likely a stronger one: the detection rates above are upper bounds on what the
  shipped CNN does against a determined attacker."""
    if train.get("comb_weight"):
        comb = """- **The comb was attacked too.** The loss held a differentiable copy of the kiosk's DC-comb
  statistic on each training patch's own 8x8 grid; the kiosk also searches the 63 shifted grids
  (the adaptive outputs keep the origin's grid, so those matter little here) and scores whole
  frames, where z grows with the number of blocks: `adaptive_frames.md` runs whole pictures
  through `kiosk forensics --json`."""
    else:
        comb = """- **The comb was not attacked.** The generator was trained against the CNN only; the DC comb
  (`jpeg_comb`) is a separate, model-free statistic. An attacker aware of it could add a loss on
  the 8x8 block means (dithering the DC, which F1 leaves alone): `adaptive_comb.md` measures
  that attack."""
    return LIMITS.replace("{scale}", scale).replace("{comb}", comb)


LIMITS = """
## Limits: what this does and does not show

{scale}
- **n.** 24 test pictures; the tiles of one picture are correlated, so a cell's effective n is
  below its tile count; differences of a few points between cells are noise.
- **White box.** The attacker holds the model file (it ships on every kiosk; a replica rebuilt from
  it scores like it, table above). An attacker without the file would have to rely on transfer.
{comb}
- **Stored pictures, not camera frames.** These are scanned/test-set pictures compressed as
  tiles. On camera-like frames the CNN raises false alarms on about half of honest captures at
  the manifest threshold (calibration.md), so there the calibrated threshold is the operating
  point, and at it the CNN already misses a third of plain JPEGs.
- **Never training data.** The adaptive outputs (data/jpeg/adaptive*/) are a held-out attack on the
  shipped model; hardening against them would need a new attack trained against the new model.
"""


if __name__ == "__main__":
    main()
