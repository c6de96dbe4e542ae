"""The splice check through `kiosk forensics --json` itself, on photos of sources it never saw.

    .venv/bin/python bench/cli_splice.py [--hosts 80] [--seed 5] [--split val]
        [--bundle NAME=DIR ...]   # other model bundles beside models/, in the same run
    .venv/bin/python bench/cli_splice.py --camera 4   # false alarms on camera-like frames

The splice report (reports/tamper_ela/splice) scores greyscale crops of `uncompressed/` and
BSD68 in one process; this runs the command an examiner runs, on colour web photos that no
splice model trained on. `--hosts` faces68 photos (208 px face crops of AFW and HELEN: JPEG
web pictures) are hosts; each gives an authentic picture and a **synthetic** splice: a region
(training.tamper.manipulate.random_region, edge feathered 0-2 px) of a CEW photo
(`eyes_closed_faces`, another source and another JPEG history) pasted in. Both then get the
same final save: lossless for a quarter, else JPEG at quality 70-95. One `kiosk forensics
--json` process per folder; the table gives, per model, the AUC of its score, the splices it
flags and the authentic photos it flags at its shipped threshold: the trees alone (`trees_score`
at the splice_jpeg entry's threshold) beside the trees + tile CNN (`score`), for models/ and for
each `--bundle` (a models folder, run through a config naming it). `--split` takes hosts of one
persisted faces68 split only (`val` to choose between bundles, `test` to report after).

`--camera N`: the kiosk's own path instead, false alarms only. N camera-like frames of every
never-JPEG `uncompressed/` picture outside the splice models' train split (training.jpeg.
calibrate.simulate_camera: raw Bayer mosaic, sensor noise, demosaicing, denoise, sharpening,
gamma), stored losslessly as a kiosk stores its captures, none tampered: the share each model
flags, with a one-sided 95 % upper bound.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kiosk.contract.manifest import load_manifest  # noqa: E402
from kiosk.runtime.forensics.splice import MODEL_NAME  # noqa: E402
from training.jpeg.calibrate import simulate_camera, sources, upper_bound  # noqa: E402
from training.kiosk_json import kiosk_records  # noqa: E402
from training.paths import data_root  # noqa: E402
from training.splits import lookup  # noqa: E402
from training.tamper.manipulate import random_region  # noqa: E402


def write_pictures(out: Path, hosts: int, seed: int, split: str) -> None:
    rng = np.random.default_rng(seed)
    root = data_root(None)
    host_paths = [
        path
        for path in sorted((root / "faces68").rglob("*.jpg"))
        if split == "all"
        or lookup("faces68", path.relative_to(root / "faces68").as_posix())[1] == split
    ]
    donor_paths = sorted((root / "eyes_closed_faces").rglob("*.jpg"))
    for index in rng.choice(len(host_paths), hosts, replace=False):
        host = cv2.imread(str(host_paths[index]))
        donor = cv2.imread(str(donor_paths[int(rng.integers(len(donor_paths)))]))
        donor = cv2.resize(donor, (host.shape[1], host.shape[0]), interpolation=cv2.INTER_AREA)
        alpha = random_region(host.shape[:2], rng).astype(np.float32)
        sigma = rng.uniform(0.0, 2.0)
        if sigma > 0.3:
            alpha = np.clip(cv2.GaussianBlur(alpha, (0, 0), sigma), 0, 1)
        spliced = host * (1 - alpha[..., None]) + donor * alpha[..., None]
        spliced = np.clip(np.rint(spliced), 0, 255).astype(np.uint8)
        quality = 0 if rng.random() < 0.25 else int(rng.integers(70, 96))
        for kind, picture in (("authentic", host), ("splice", spliced)):
            (out / kind).mkdir(exist_ok=True)
            if quality:
                path = out / kind / f"{index:04d}.jpg"
                cv2.imwrite(str(path), picture, [cv2.IMWRITE_JPEG_QUALITY, quality])
            else:
                cv2.imwrite(str(out / kind / f"{index:04d}.png"), picture)


def write_camera_frames(out: Path, variants: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    out.mkdir(exist_ok=True)
    for path, split in sources(data_root(None)):
        if split == "train":
            continue
        gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        for variant in range(variants):
            frame = simulate_camera(gray, rng)
            cv2.imwrite(str(out / f"{path.parent.name}_{path.stem}_{variant}.png"), frame)


def camera_table(bundles: dict[str, Path], variants: int, seed: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        write_camera_frames(Path(tmp) / "camera", variants, seed)
        found = {
            bundle: records(Path(tmp) / "camera", folder) for bundle, folder in bundles.items()
        }
    print(f"{len(next(iter(found.values())))} camera-like frames (never JPEG, none tampered)\n")
    print("| bundle | model | flagged | 95 % upper bound |")
    print("|---|---|---:|---:|")
    for bundle, scored in found.items():
        trees_threshold = load_manifest(bundles[bundle]).models[MODEL_NAME].threshold
        for name, flags in (
            ("trees alone", [r["trees_score"] >= trees_threshold for r in scored]),
            ("trees + tile CNN", [r["flagged"] for r in scored]),
        ):
            hits = int(np.sum(flags))
            print(
                f"| {bundle} | {name} | {hits} ({hits / len(flags):.1%}) | "
                f"{upper_bound(hits, len(flags)):.1%} |"
            )


def records(folder: Path, models: Path) -> list[dict]:
    """The `splice` record of each picture by `kiosk forensics --json` on `folder`, with the
    model bundle `models`."""
    found = kiosk_records("forensics", folder, models)
    return [line["splice"] for line in found if "score" in (line.get("splice") or {})]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=80)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--split", default="all", choices=("all", "train", "val", "test"))
    parser.add_argument("--bundle", action="append", default=[], metavar="NAME=DIR")
    parser.add_argument("--camera", type=int, metavar="N", help="camera-like frames per picture")
    args = parser.parse_args()
    bundles = {"models/": REPO / "models"}
    bundles.update(
        (name, Path(folder)) for name, folder in (item.split("=", 1) for item in args.bundle)
    )
    if args.camera:
        camera_table(bundles, args.camera, args.seed)
        return
    with tempfile.TemporaryDirectory() as tmp:
        write_pictures(Path(tmp), args.hosts, args.seed, args.split)
        found = {
            bundle: {kind: records(Path(tmp) / kind, folder) for kind in ("authentic", "splice")}
            for bundle, folder in bundles.items()
        }
    first = next(iter(found.values()))
    print(
        f"faces68 hosts of split {args.split}: {len(first['splice'])} splices, "
        f"{len(first['authentic'])} authentic photos scored\n"
    )
    print("| bundle | model | AUC | splices flagged | authentic flagged |")
    print("|---|---|---:|---:|---:|")
    for bundle, scored in found.items():
        trees_threshold = load_manifest(bundles[bundle]).models[MODEL_NAME].threshold
        for name, key, threshold in (
            ("trees alone", "trees_score", trees_threshold),
            ("trees + tile CNN", "score", None),
        ):
            pos = np.array([r[key] for r in scored["splice"]])
            neg = np.array([r[key] for r in scored["authentic"]])
            cut = scored["splice"][0]["threshold"] if threshold is None else threshold
            auc = roc_auc_score(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg])
            print(
                f"| {bundle} | {name} | {auc:.3f} | {(pos >= cut).mean():.1%} | "
                f"{(neg >= cut).mean():.1%} |"
            )


if __name__ == "__main__":
    main()
