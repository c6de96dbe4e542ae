"""Never-JPEG photos -> patches and their JPEG versions, split by source group.

Every positive here is synthetic: JPEG (and, later, dithered and GAN) versions are generated from
the real never-JPEG grayscale PNGs of `uncompressed/`. A patch is compressed on its own, so its
8x8 JPEG grid starts at the patch origin, as in the paper (test images are cropped, then
compressed). Splits are the persisted `uncompressed` split of `training.splits` (by the `group`
column of `index.csv`), so frames of one USC-SIPI sequence never sit on both sides.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from training import splits

TEST_QUALITIES = (25, 50, 75)  # the paper's named test conditions
QUALITY_RANGE = (20, 95)  # training draws quality factors uniformly from this range


@dataclass(frozen=True)
class SourceImage:
    path: Path
    group: str


def images_by_split(root: Path) -> dict[str, list[SourceImage]]:
    """The never-JPEG pictures of `root/uncompressed` (index order) in their persisted split."""
    folder = root / "uncompressed"
    with open(folder / "index.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    out: dict[str, list[SourceImage]] = {name: [] for name in splits.SPLITS}
    for row in rows:
        group, split = splits.lookup("uncompressed", row["path"])
        out[split].append(SourceImage(folder / row["path"], group))
    return out


def read_gray(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError(f"cannot read {path}")
    return image


def jpeg_roundtrip(image: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    """Compress a grayscale uint8 image with libjpeg (Pillow); return (decoded, 8x8 quant table)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=int(quality))
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        table = np.array(decoded.quantization[0], np.float64).reshape(8, 8)  # natural order
        return np.asarray(decoded.convert("L")), table


def random_patches(
    image: np.ndarray, size: int, count: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """`count` random size x size crops (fewer when the picture is small, none when too small)."""
    height, width = image.shape
    if height < size or width < size:
        return []
    room = ((height - size + 1) * (width - size + 1)) // (size * size // 4) + 1
    out = []
    for _ in range(min(count, room)):
        y = int(rng.integers(0, height - size + 1))
        x = int(rng.integers(0, width - size + 1))
        out.append(image[y : y + size, x : x + size].copy())
    return out


def tiles(image: np.ndarray, size: int, limit: int) -> list[np.ndarray]:
    """Non-overlapping size x size tiles, centre one first, at most `limit` (test crops)."""
    height, width = image.shape
    if height < size or width < size:
        return []
    cy, cx = (height - size) // 2, (width - size) // 2
    out = [image[cy : cy + size, cx : cx + size]]
    for y in range(0, height - size + 1, size):
        for x in range(0, width - size + 1, size):
            overlaps_centre = abs(y - cy) < size and abs(x - cx) < size
            if not overlaps_centre and len(out) < limit:
                out.append(image[y : y + size, x : x + size])
    return [tile.copy() for tile in out[:limit]]


def build_detector_split(
    images: list[SourceImage], size: int, per_image: int, seed: int
) -> dict[str, np.ndarray]:
    """Uncompressed patches and their JPEG versions at random quality factors in QUALITY_RANGE.

    Returns originals (N, S, S) uint8, jpeg (N, S, S) uint8, quality (N,), tables (N, 8, 8),
    source index (N,); row i of `jpeg` is row i of `originals` compressed.
    """
    rng = np.random.default_rng(seed)
    originals, compressed, qualities, tables, sources = [], [], [], [], []
    for index, source in enumerate(images):
        for patch in random_patches(read_gray(source.path), size, per_image, rng):
            quality = int(rng.integers(QUALITY_RANGE[0], QUALITY_RANGE[1] + 1))
            decoded, table = jpeg_roundtrip(patch, quality)
            originals.append(patch)
            compressed.append(decoded)
            qualities.append(quality)
            tables.append(table)
            sources.append(index)
    return {
        "originals": np.stack(originals),
        "jpeg": np.stack(compressed),
        "quality": np.array(qualities, np.int16),
        "tables": np.stack(tables).astype(np.float32),
        "source": np.array(sources, np.int32),
    }


def patches_path(work: Path, size: int) -> Path:
    return work / "jpeg" / f"patches_{size}.npz"


def main() -> None:
    """`python -m training.jpeg.data`: patch sets for training and validation (data/jpeg/)."""
    import argparse

    from training.paths import WORK, data_root

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--data-root")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--train-per-image", type=int, default=48)
    parser.add_argument("--val-per-image", type=int, default=24)
    args = parser.parse_args()
    by_split = images_by_split(data_root(args.data_root))
    arrays = {}
    for offset, (name, per_image) in enumerate(
        (("train", args.train_per_image), ("val", args.val_per_image))
    ):
        split = build_detector_split(by_split[name], args.size, per_image, seed=11 + offset)
        arrays.update({f"{name}_{key}": value for key, value in split.items()})
        print(f"{name}: {len(split['originals'])} patch pairs from {len(by_split[name])} pictures")
    out = patches_path(WORK, args.size)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
