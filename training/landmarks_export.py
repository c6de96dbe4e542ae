"""Export a dlib shape predictor (.dat) as the arrays the kiosk evaluates (.npz).

    python -m training.landmarks_export [--models-dir models] [--check-photos 300]

dlib's .dat is its serialization of the model (dlib/serialize.h, shape_predictor.h): every
number is a byte giving its length and sign, then the magnitude's bytes, little-endian; a float
is two of them, mantissa and power of two; vectors and matrices are their size, then their items.
The model is: a version (1), the mean shape (a column matrix), the cascades (a vector of vectors
of trees, each tree its splits (pixel 1, pixel 2, threshold) and its leaves (column matrices)),
the anchor point of each feature pixel, and each pixel's offset from it. Decoding that takes dlib
~0.1 s a start for the bundle's 14 MB model (issue 16); numpy reads the arrays in ~0.03 s, and
kiosk/runtime/vision/forest.py evaluates them as dlib does.

Without arguments, every landmark model of the bundle that is still a .dat is exported beside it,
checked against dlib on faces (the same points, bit for bit, on every fit) and the manifest entry
then names the .npz; the .dat is removed from the bundle. training/landmarks.py exports every
model it ships through the same `export_checked`.
"""

from __future__ import annotations

import argparse
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import cv2
import dlib
import numpy as np

from kiosk.contract.manifest import load_manifest
from kiosk.contract.manifest import write_entry as write_manifest_entry
from kiosk.contract.models import LANDMARK_ARRAYS, LANDMARK_ARRAYS_QUANTIZATION
from kiosk.runtime.vision.forest import RegressionForest
from training.paths import MODELS, data_root

DLIB_VERSION = 1  # the shape_predictor serialization version dlib writes
CHECK_PHOTOS = 300  # faces68 photos the export is compared with dlib on
T = TypeVar("T")


class _Reader:
    """dlib's portable serialization, read in order."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def integer(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError("the model ends early")
        head = self.data[self.pos]
        size = head & 0x0F
        if size > 8 or self.pos + 1 + size > len(self.data):
            raise ValueError(f"not a dlib number at byte {self.pos}")
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if head & 0x80 else value

    def real(self) -> float:
        mantissa = self.integer()
        return math.ldexp(mantissa, self.integer())

    def column(self) -> list[float]:
        rows, cols = -self.integer(), -self.integer()
        return [self.real() for _ in range(rows * cols)]

    def items(self, read: Callable[[], T]) -> list[T]:
        return [read() for _ in range(self.integer())]


def dlib_arrays(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of LANDMARK_ARRAYS from a dlib shape predictor file's bytes."""
    read = _Reader(data)
    version = read.integer()
    if version != DLIB_VERSION:
        raise ValueError(f"dlib shape predictor version {version}, expected {DLIB_VERSION}")
    initial = read.column()

    def tree() -> tuple[list, list]:
        splits = read.items(lambda: (read.integer(), read.integer(), read.real()))
        return splits, read.items(read.column)

    cascades = read.items(lambda: read.items(tree))
    anchors = read.items(lambda: read.items(read.integer))
    deltas = read.items(lambda: read.items(lambda: (read.real(), read.real())))
    if read.pos != len(data):
        raise ValueError(f"{len(data) - read.pos} bytes left after the model")
    arrays = {
        "initial_shape": np.array(initial, np.float32).reshape(-1, 2),
        "anchors": np.array(anchors, np.int32),
        "deltas": np.array(deltas, np.float32),
        "splits": np.array([[[s[:2] for s in t[0]] for t in c] for c in cascades], np.int32),
        "thresholds": np.array([[[s[2] for s in t[0]] for t in c] for c in cascades], np.float32),
        "leaves": np.array([[t[1] for t in c] for c in cascades], np.float32),
    }
    assert tuple(arrays) == LANDMARK_ARRAYS
    return arrays


def export(dat: Path, npz: Path) -> None:
    """Write `dat`'s arrays to `npz` (uncompressed: np.load then reads them without inflating)."""
    buffer = io.BytesIO()
    np.savez(buffer, **dlib_arrays(dat.read_bytes()))
    npz.write_bytes(buffer.getvalue())


def mismatched_fits(dat: Path, npz: Path, photos: list[Path], rng: np.random.Generator) -> int:
    """How many fits differ between dlib on `dat` and the kiosk on `npz`: on each photo, grey and
    RGB, from four boxes a pixel apart around a random box (some reaching past the edges)."""
    reference = dlib.shape_predictor(str(dat))
    forest = RegressionForest.from_bytes(npz.read_bytes())
    differing = 0
    for path in photos:
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        height, width = gray.shape
        side = int(rng.integers(min(40, min(height, width)), min(height, width) + 1))
        x0, y0 = (
            int(rng.integers(-side // 4, width - side // 2)),
            int(rng.integers(-side // 4, height - side // 2)),
        )
        rects = [
            (x0 + dx, y0 + dy, x0 + side + dx, y0 + side + dy) for dx in (-1, 1) for dy in (-1, 1)
        ]
        for image in (gray, rgb):
            ours = forest.fit(image, np.array(rects))
            for rect, points in zip(rects, ours, strict=True):
                theirs = reference(image, dlib.rectangle(*rect)).parts()
                differing += not np.array_equal(points, [(p.x, p.y) for p in theirs])
    return differing


def export_checked(
    dat: Path, npz: Path, data_root_arg: str | None = None, count: int = CHECK_PHOTOS
) -> dict[str, object]:
    """`export`, then the comparison with dlib on `count` faces68 photos spread over the folder;
    the manifest's `dlib_parity` record. Any differing fit removes `npz` and stops (SystemExit):
    arrays that are not dlib's model never ship."""
    export(dat, npz)
    photos = sorted((data_root(data_root_arg) / "faces68").glob("*/*.jpg"))
    photos = photos[:: max(1, len(photos) // count)][:count]
    differing = mismatched_fits(dat, npz, photos, np.random.default_rng(7))
    fits = 8 * len(photos)
    print(f"{dat.name} -> {npz.name}: {differing} of {fits} fits differ from dlib")
    if differing:
        npz.unlink()
        raise SystemExit(f"{dat.name}: the arrays do not reproduce dlib; nothing exported")
    return {
        "fits": fits,
        "differing": differing,
        "faces": f"{len(photos)} faces68 photos, grey and RGB, 4 boxes a pixel apart around "
        "a random box each (python -m training.landmarks_export)",
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=MODELS)
    parser.add_argument("--data-root", default=None)
    parser.add_argument(
        "--check-photos", type=int, default=CHECK_PHOTOS, help="faces68 photos to compare on"
    )
    args = parser.parse_args(argv)
    manifest = load_manifest(args.models_dir)
    for name, entry in manifest.models.items():
        if not name.startswith("shape_predictor_") or not entry.file.endswith(".dat"):
            continue
        dat = args.models_dir / entry.file
        npz = dat.with_suffix(".npz")
        parity = export_checked(dat, npz, args.data_root, args.check_photos)
        fields = {
            key: value
            for key, value in entry.model_extra.items()
            if key not in ("exported", "git_revision")
        }
        fields.setdefault("metrics", {})["dlib_parity"] = parity
        write_manifest_entry(
            args.models_dir,
            name,
            npz,
            **fields,
            architecture=entry.architecture,
            input_shape=list(entry.input_shape),
            quantization=LANDMARK_ARRAYS_QUANTIZATION,
            threshold=entry.threshold,
        )
        dat.unlink()


if __name__ == "__main__":
    main()
