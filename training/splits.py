"""One train/val/test split per dataset, by person or photo, persisted so every task reads it.

Why: a photo (or a person) on both sides of a split inflates test numbers, and tasks that
split the same folder differently leak each other's test photos into training (the SR network
used by tamper localisation, the veil network used as SR's perceptual loss). So the grouping
rule of each dataset is written once here, the split is computed once (`python -m
training.splits`, `make splits`) into `training/splits/<dataset>.csv` (committed: a few hundred
kB; columns path, group, split) and every task reads that file.

Grouping rules (what must stay together):
- faces68, mouth: the HELEN photo id *across datasets* (`helen:<id>`), AFW photo id, else the
  file; 300-W stores a multi-face photo once per face (`<photo>_<k>`).
- faces68_ytf: the person (YouTube Faces names).
- mask_kaggle_faces: the source picture (several faces are cut from one street photo).
- uncompressed: the `group` column of its index (frames of one USC-SIPI sequence).
- eyes, mask, eyes_closed_faces, mask_web_types: the file (their READMEs give no identity).

Assignment: a hash of the group (70/15/15), so a group lands in the same split in every dataset
that holds it; `uncompressed` is dealt by picture count instead (few, very unequal groups; big
video sequences stay in train), as the JPEG detector was trained.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path, PurePosixPath

import numpy as np

from training.paths import data_root

logger = logging.getLogger(__name__)

SPLITS_DIR = Path(__file__).resolve().parent / "splits"
SPLITS = ("train", "val", "test")
FRACTIONS = {"train": 0.70, "val": 0.15, "test": 0.15}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
DEALT_SEED = 3
MAX_SMALL_GROUP = 3  # `uncompressed` groups larger than this always go to train


class SplitError(SystemExit):
    """A file has no persisted split: the data changed since `make splits`."""


def hashed_split(group: str) -> str:
    """70/15/15 by a hash of the group key: stable, and equal for equal keys in any dataset."""
    bucket = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "train" if bucket < 0.70 else "val" if bucket < 0.85 else "test"


def helen_group(stem: str) -> str:
    """HELEN photo id of a 300-W or mouth/ file stem (`<photo>_<face>[_<k>]`)."""
    return f"helen:{stem.split('_')[0]}"


def _faces68(path: PurePosixPath, _: dict[str, str]) -> str:
    if "helen" in path.parent.name:
        return helen_group(path.stem)
    return f"afw:{path.stem.split('_')[0]}"


def _mouth(path: PurePosixPath, _: dict[str, str]) -> str:
    stem = path.stem
    return helen_group(stem) if stem.count("_") == 2 else f"mouth:{stem}"


@dataclass(frozen=True)
class Dataset:
    """Where a dataset's files are and how they group; `index` rows feed the group rule."""

    name: str
    pattern: str  # glob under the dataset folder (ignored when `index` is set)
    group: Callable[[PurePosixPath, dict[str, str]], str]
    index: str | None = None  # index.csv listing the files (its `path` column)
    dealt: bool = False

    def files(self, root: Path) -> Iterator[tuple[PurePosixPath, dict[str, str]]]:
        folder = root / self.name
        if self.index:
            with open(folder / self.index, newline="") as handle:
                for row in csv.DictReader(handle):
                    yield PurePosixPath(row["path"]), row
            return
        for path in sorted(folder.glob(self.pattern)):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                yield PurePosixPath(path.relative_to(folder).as_posix()), {}


DATASETS = {
    d.name: d
    for d in (
        Dataset("eyes", "*/*.png", lambda p, _: f"eyes:{p.name}"),
        Dataset("faces68", "*/*.jpg", _faces68),
        Dataset("mouth", "images/*.jpg", _mouth),
        Dataset("mask", "*/*/*", lambda p, _: f"mask:{p.parent.name}/{p.stem}"),
        Dataset(
            "uncompressed",
            "",
            lambda p, row: f"uncompressed:{row.get('group') or p}",
            index="index.csv",
            dealt=True,
        ),
        Dataset("faces68_ytf", "", lambda _, row: f"ytf:{row['person']}", index="index.csv"),
        Dataset("eyes_closed_faces", "closed/*.jpg", lambda p, _: f"cew:{p.stem}"),
        Dataset(
            "mask_kaggle_faces", "", lambda _, row: f"kaggle:{row['source_image']}", "index.csv"
        ),
        Dataset("mask_web_types", "", lambda p, _: f"web:{p.stem}", index="index.csv"),
    )
}


def dealt_split(groups: list[str], seed: int = DEALT_SEED) -> dict[str, str]:
    """Split of each group when there are few groups of very unequal size.

    Groups of more than MAX_SMALL_GROUP pictures (frames of one video) always go to train: one of
    them would otherwise be most of a small validation or test split. The others are shuffled
    and each is given to the split furthest below its share of the pictures.
    """
    sizes: dict[str, int] = {}
    for group in groups:
        sizes[group] = sizes.get(group, 0) + 1
    small = sorted(group for group, size in sizes.items() if size <= MAX_SMALL_GROUP)
    assigned = {group: "train" for group, size in sizes.items() if size > MAX_SMALL_GROUP}
    filled = {name: 0 for name in SPLITS}
    filled["train"] = sum(sizes[group] for group in assigned)
    for index in np.random.default_rng(seed).permutation(len(small)):
        group = small[index]
        name = min(SPLITS, key=lambda s: filled[s] / len(groups) - FRACTIONS[s])
        assigned[group] = name
        filled[name] += sizes[group]
    return assigned


def compute(dataset: str, root: Path) -> list[tuple[str, str, str]]:
    """(path relative to the dataset folder, group, split) of every file of `dataset`."""
    spec = DATASETS[dataset]
    rows = [(str(path), spec.group(path, row)) for path, row in spec.files(root)]
    if spec.dealt:
        by_group = dealt_split([group for _, group in rows])
        return [(path, group, by_group[group]) for path, group in rows]
    return [(path, group, hashed_split(group)) for path, group in rows]


def write(dataset: str, root: Path, splits_dir: Path | None = None) -> Path:
    rows = compute(dataset, root)
    splits_dir = splits_dir or SPLITS_DIR
    splits_dir.mkdir(parents=True, exist_ok=True)
    out = splits_dir / f"{dataset}.csv"
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["path", "group", "split"])
        writer.writerows(rows)
    _load.cache_clear()
    return out


def load(dataset: str, splits_dir: Path | None = None) -> dict[str, tuple[str, str]]:
    """path (relative to the dataset folder) -> (group, split) of the persisted split."""
    return _load(dataset, splits_dir or SPLITS_DIR)


@cache
def _load(dataset: str, splits_dir: Path) -> dict[str, tuple[str, str]]:
    path = splits_dir / f"{dataset}.csv"
    if not path.exists():
        raise SplitError(f"{path} is missing: run `make splits` (python -m training.splits)")
    with open(path, newline="") as handle:
        return {row["path"]: (row["group"], row["split"]) for row in csv.DictReader(handle)}


def lookup(dataset: str, path: str | PurePosixPath) -> tuple[str, str]:
    """(group, split) of one file, `path` relative to the dataset folder."""
    found = load(dataset).get(str(PurePosixPath(path)))
    if found is None:
        raise SplitError(
            f"{dataset}/{path} has no persisted split: the data differ from "
            f"training/splits/{dataset}.csv; run `make splits` to split them (this changes "
            "which photos every model holds out: retrain them all)"
        )
    return found


def split_of(dataset: str, path: str | PurePosixPath) -> str:
    return lookup(dataset, path)[1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write training/splits/<dataset>.csv.")
    parser.add_argument("datasets", nargs="*", default=sorted(DATASETS))
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=SPLITS_DIR)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    root = data_root(args.data_root)
    for dataset in args.datasets:
        if not (root / dataset).is_dir():
            logger.warning("%s: not under %s, skipped", dataset, root)
            continue
        out = write(dataset, root, args.out)
        counts = {
            s: sum(split == s for _, split in load(dataset, args.out).values()) for s in SPLITS
        }
        logger.info("%s: %s -> %s", dataset, counts, out)


if __name__ == "__main__":
    main()
