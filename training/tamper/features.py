"""CNN inputs for the generated tampering set, computed by the kiosk's own ELA code and cached.

Inputs are uint8 (value x 255), exactly what the kiosk feeds the model; its first layer divides
by 255.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
from pathlib import Path

import cv2
import numpy as np
import PIL
import pywt

from kiosk.runtime.forensics import ela_features
from kiosk.runtime.forensics.ela_features import cnn_input
from kiosk.runtime.imageio import load_rgb


def read_index(folder: Path) -> list[dict[str, str]]:
    index = folder / "index.csv"
    if not index.exists():
        raise SystemExit(f"{index} is missing: run `make tamper-data` first")
    with open(index) as handle:
        return list(csv.DictReader(handle))


def cache_key(folder: Path, rows: list[dict[str, str]], quality: int) -> str:
    """Everything the cached inputs depend on: ELA quality, the preprocessing (the kiosk's
    `ela_features` code and the libraries doing its JPEG re-save, wavelet and resize) and the
    data (the index and every image's size). A change in any of them computes new features
    instead of silently training on stale ones."""
    digest = hashlib.sha256()
    digest.update(f"q{quality}".encode())
    digest.update(inspect.getsource(ela_features).encode())
    digest.update(f"{PIL.__version__} {pywt.__version__} {cv2.__version__}".encode())
    digest.update((folder / "index.csv").read_bytes())
    for row in rows:
        digest.update(f"{row['image']}:{(folder / row['image']).stat().st_size}".encode())
    return digest.hexdigest()[:12]


def load_features(folder: Path, quality: int) -> dict[str, np.ndarray]:
    """Columns of the whole set; inputs are computed once per `cache_key` and cached as npz."""
    rows = read_index(folder)
    cache = folder / f"features_q{quality}_{cache_key(folder, rows, quality)}.npz"
    if cache.exists():
        data = np.load(cache)
        return {key: data[key] for key in data.files}
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
