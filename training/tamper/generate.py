"""Build the synthetic tampering set (none is obtainable here): splices, copy-moves, face morphs.

Every source photo gets a "camera" JPEG history (quality 75-98), then yields one authentic image
and one manipulated one; both leave through the same final JPEG save at a random quality 60-95,
like real submissions. Sources: `faces68/` faces (with 68 landmarks, the morph source),
`mask/.../without_mask` faces, and crops of the never-JPEG `uncompressed/` photos. Splits are by
source identity/photo (the persisted splits of `training.splits`, which every task reads);
donors come from the same split.

    python -m training.tamper.generate   # -> data/tamper/{images,masks}/, data/tamper/index.csv
"""

from __future__ import annotations

import argparse
import csv
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from kiosk.runtime.imageio import load_rgb
from training import splits
from training.geometry import read_pts
from training.paths import WORK, data_root
from training.tamper.manipulate import copy_move, face_morph, jpeg_bytes, jpeg_roundtrip, splice

OUT = WORK / "tamper"
KINDS = ("splice", "copy_move", "morph")


@dataclass(frozen=True)
class Source:
    path: Path
    group: str
    split: str
    points: np.ndarray | None = None  # 68 landmarks for faces68 photos


def _source(root: Path, dataset: str, path: Path, points: np.ndarray | None = None) -> Source:
    group, split = splits.lookup(dataset, path.relative_to(root / dataset).as_posix())
    return Source(path, group, split, points)


def sources(root: Path, limit: int | None) -> list[Source]:
    found = [
        _source(root, "faces68", path, read_pts(path.with_suffix(".pts")))
        for path in sorted(root.glob("faces68/*/*.jpg"))
    ]
    found += [_source(root, "mask", path) for path in sorted(root.glob("mask/*/without_mask/*"))]
    with open(root / "uncompressed" / "index.csv") as handle:
        found += [
            _source(root, "uncompressed", root / "uncompressed" / row["path"])
            for row in csv.DictReader(handle)
        ]
    return found[:limit] if limit else found


def load_source(source: Source, rng: np.random.Generator) -> np.ndarray:
    """RGB pixels; big never-JPEG photos are cropped to 192-512 px, like a face or ID capture."""
    rgb = load_rgb(source.path)
    if source.points is None and max(rgb.shape[:2]) > 512:
        side = int(rng.integers(192, min(512, *rgb.shape[:2]) + 1))
        top = int(rng.integers(rgb.shape[0] - side + 1))
        left = int(rng.integers(rgb.shape[1] - side + 1))
        rgb = rgb[top : top + side, left : left + side]
    return np.ascontiguousarray(rgb)


def build(root: Path, limit: int | None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    everything = sources(root, limit)
    by_split: dict[str, list[Source]] = {}
    for source in everything:
        by_split.setdefault(source.split, []).append(source)
    for folder in ("images", "masks"):
        (OUT / folder).mkdir(parents=True, exist_ok=True)
    rows = []
    for index, source in enumerate(everything):
        camera = jpeg_roundtrip(load_source(source, rng), int(rng.integers(75, 99)))
        pool = by_split[source.split]
        if source.points is not None:
            kind = KINDS[int(rng.choice(3, p=[0.25, 0.25, 0.5]))]
        else:
            kind = KINDS[int(rng.integers(2))]
        try:
            if kind == "morph":
                faces = [s for s in pool if s.points is not None and s.group != source.group]
                other = faces[int(rng.integers(len(faces)))]
                tampered, alpha = face_morph(
                    camera, source.points, load_rgb(other.path), other.points, rng
                )
            elif kind == "splice":
                donor = pool[int(rng.integers(len(pool)))]
                tampered, alpha = splice(camera, load_source(donor, rng), rng)
            else:
                tampered, alpha = copy_move(camera, rng)
        except ValueError as exc:
            print(f"skip {source.path.name}: {exc}", flush=True)
            continue
        for label, image in ((0, camera), (1, tampered)):
            name = f"{index:05d}_{'tampered' if label else 'authentic'}"
            quality = int(rng.integers(60, 96))
            (OUT / "images" / f"{name}.jpg").write_bytes(jpeg_bytes(image, quality))
            mask_file = ""
            if label:
                mask_file = f"masks/{name}.png"
                cv2.imwrite(str(OUT / mask_file), np.rint(alpha * 255).astype(np.uint8))
            rows.append(
                {
                    "image": f"images/{name}.jpg",
                    "mask": mask_file,
                    "label": label,
                    "kind": kind if label else "authentic",
                    "pair_kind": kind,
                    "quality": quality,
                    "group": source.group,
                    "split": source.split,
                    "source": str(source.path.relative_to(root)),
                }
            )
        if index % 500 == 0:
            print(f"{index}/{len(everything)} sources", flush=True)
    with open(OUT / "index.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{len(rows)} images in {OUT}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-root")
    parser.add_argument("--limit", type=int, help="only the first N source photos (smoke runs)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    build(data_root(args.data_root), args.limit, args.seed)


if __name__ == "__main__":
    main()
