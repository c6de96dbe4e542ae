"""training.splits: one persisted split per dataset, by person or photo, that no group crosses."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest

from training import splits
from training.paths import configured_data_root

DATA_ROOT = configured_data_root()


def test_no_group_crosses_splits_in_any_dataset_or_across_datasets() -> None:
    where: dict[str, set[str]] = defaultdict(set)
    for dataset in splits.DATASETS:
        for group, split in splits.load(dataset).values():
            where[group].add(split)
    crossing = {group: found for group, found in where.items() if len(found) > 1}
    assert not crossing
    # HELEN photos in both faces68/ and mouth/ share one group, hence one split
    faces68 = {group for group, _ in splits.load("faces68").values()}
    shared = {group for group, _ in splits.load("mouth").values()} & faces68
    assert shared and all(where[group] == {splits.hashed_split(group)} for group in shared)


def test_grouping_rules_keep_a_photo_or_person_together() -> None:
    assert splits.lookup("mouth", "images/100032540_1_0.jpg")[0] == "helen:100032540"
    ytf = [(p, g) for p, (g, _) in splits.load("faces68_ytf").items()]
    assert all(g == f"ytf:{Path(p).stem[4:].rsplit('_', 1)[0]}" for p, g in ytf)
    kaggle = splits.load("mask_kaggle_faces")
    assert len({g for g, _ in kaggle.values()}) < len(kaggle)  # several faces per street photo


def test_split_shares_are_near_70_15_15() -> None:
    rows = splits.load("faces68").values()
    share = sum(split == "train" for _, split in rows) / len(rows)
    assert 0.65 < share < 0.75


def test_a_file_without_a_persisted_split_is_refused_with_what_to_do() -> None:
    with pytest.raises(splits.SplitError, match="make splits"):
        splits.lookup("faces68", "helen_trainset/not_a_photo.jpg")


def test_dealt_split_keeps_big_groups_in_train_and_fills_the_others() -> None:
    groups = ["video"] * 10 + [f"photo{i}" for i in range(30)]
    dealt = splits.dealt_split(groups)
    assert dealt["video"] == "train"
    counts = {name: sum(dealt[g] == name for g in groups) for name in splits.SPLITS}
    assert counts["val"] >= 5 and counts["test"] >= 5


@pytest.mark.skipif(not DATA_ROOT.is_dir(), reason=f"no datasets at {DATA_ROOT}")
@pytest.mark.parametrize("dataset", ["faces68", "mouth", "uncompressed", "mask_kaggle_faces"])
def test_persisted_split_is_what_the_data_give(dataset: str, tmp_path: Path) -> None:
    """The committed files match the rules on the current data (a changed dataset fails here)."""
    if not (DATA_ROOT / dataset).is_dir():
        pytest.skip(f"{dataset} not under {DATA_ROOT}")
    written = splits.write(dataset, DATA_ROOT, tmp_path)
    with open(written, newline="") as handle:
        fresh = {row["path"]: (row["group"], row["split"]) for row in csv.DictReader(handle)}
    assert fresh == splits.load(dataset)
