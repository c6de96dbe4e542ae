"""The YouTube-Faces eye review: notes become labels for the right photos, and the shipped labels
file is the one evaluate_faces reads."""

import csv
from pathlib import Path

import numpy as np

from training import eye_review


def _root(tmp_path: Path, n: int = 60) -> Path:
    folder = tmp_path / "faces68_ytf"
    folder.mkdir()
    with open(folder / "index.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path"])
        writer.writerows([f"ytf/face_{i:02d}.jpg"] for i in range(n))
    return tmp_path


def test_notes_become_labels_in_the_seeded_order(tmp_path):
    root = _root(tmp_path)
    order = eye_review.order(root)
    assert sorted(order) == sorted(f"ytf/face_{i:02d}.jpg" for i in range(60))
    assert order != sorted(order)  # shuffled, the same way every time
    assert order == eye_review.order(root)
    notes = tmp_path / "notes.txt"
    notes.write_text("s00 O:0,5 C:3\ns01 O: C:1\n")
    out = tmp_path / "labels.csv"
    eye_review.record(root, notes, out)
    labels = eye_review.reviewed(out)
    assert len(labels) == 60  # sheet 0 (48) + the 12 photos of sheet 1
    assert labels[order[0]] == 0 and labels[order[5]] == 0
    assert labels[order[3]] == 1 and labels[order[48 + 1]] == 1
    assert labels[order[1]] is None and labels[order[50]] is None


def test_shipped_review_has_all_three_answers():
    labels = eye_review.reviewed()
    values = np.array([-1 if v is None else v for v in labels.values()])
    assert len(labels) == 576
    assert (values == 0).sum() == 139 and (values == 1).sum() == 50
    assert all(path.startswith("ytf/ytf_") for path in labels)
