"""CNN inputs for the generated tampering set, computed by the kiosk's own ELA code and cached.

Inputs are uint8 (value x 255), exactly what the kiosk feeds the model; its first layer divides
by 255.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from kiosk.forensics.ela_features import cnn_input
from kiosk.imageio import load_rgb


def read_index(folder: Path) -> list[dict[str, str]]:
    index = folder / "index.csv"
    if not index.exists():
        raise SystemExit(f"{index} is missing: run `make tamper-data` first")
    with open(index) as handle:
        return list(csv.DictReader(handle))


def load_features(folder: Path, quality: int) -> dict[str, np.ndarray]:
    """Columns of the whole set; inputs are computed once per ELA quality and cached as npz."""
    cache = folder / f"features_q{quality}.npz"
    if cache.exists():
        data = np.load(cache)
        return {key: data[key] for key in data.files}
    rows = read_index(folder)
    inputs = np.empty((len(rows), 128, 128, 2), np.uint8)
    for i, row in enumerate(rows):
        inputs[i] = cnn_input(load_rgb(folder / row["image"]), quality)
        if i % 1000 == 0:
            print(f"features {i}/{len(rows)}", flush=True)
    columns = {
        "inputs": inputs,
        "labels": np.array([int(r["label"]) for r in rows], np.int8),
        "kinds": np.array([r["kind"] for r in rows]),
        "splits": np.array([r["split"] for r in rows]),
        "images": np.array([r["image"] for r in rows]),
        "masks": np.array([r["mask"] for r in rows]),
    }
    np.savez(cache, **columns)
    return columns
