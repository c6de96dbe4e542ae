"""Training patches and benchmark pairs for x4 super-resolution, on the Y channel.

Training uses photos that never pass through the benchmarks: `uncompressed/` (never-JPEG grey
photos) and `faces68/` face crops. LR images are made as in the literature: bicubic downscaling
(Pillow's antialiased bicubic, close to MATLAB's imresize) of an HR image cropped to a multiple of
the scale. Benchmarks (`sr/Set5`, `Set14`, `BSD68`) are only read by the evaluation, and the training
pictures that are copies of benchmark pictures (`reports/sr/overlap.md`) are never read here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from kiosk.runtime.forensics.colour import luma

SCALE = 4
BENCHMARKS = ("Set5", "Set14", "BSD68")
# uncompressed/ pictures that are (near) copies of Set5/Set14 pictures (`python -m
# training.sr.overlap`): butterfly and monarch, barbara, bridge, man, pepper, and baboon (the same
# scene as 4.2.03). Left out of training and validation so the benchmarks stay unseen.
BENCHMARK_COPIES = frozenset(
    {
        "uncompressed/waterloo/monarch.png",
        "uncompressed/waterloo/barb.png",
        "uncompressed/usc_sipi_misc/5.2.10.png",
        "uncompressed/usc_sipi_misc/5.3.01.png",
        "uncompressed/usc_sipi_misc/4.2.07.png",
        "uncompressed/usc_sipi_misc/4.2.03.png",
    }
)


def bicubic(y: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a float Y image (0..255) to (width, height) with Pillow's bicubic filter."""
    return np.asarray(Image.fromarray(y.astype(np.float32), mode="F").resize(size, Image.BICUBIC))


def hr_lr_pair(y: np.ndarray, scale: int = SCALE) -> tuple[np.ndarray, np.ndarray]:
    """Crop Y to a multiple of `scale` and bicubic-downscale it: (HR, LR), both 0..255 float32."""
    height, width = (y.shape[0] // scale) * scale, (y.shape[1] // scale) * scale
    hr = y[:height, :width]
    return hr, bicubic(hr, (width // scale, height // scale))


def read_y(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        pixels = np.asarray(image.convert("L" if image.mode in ("L", "I;16") else "RGB"))
    return luma(pixels)


def training_files(root: Path, with_copies: bool = False) -> list[Path]:
    """Every SR training/validation photo under `root`; the benchmark copies only when asked
    (the overlap search looks for them)."""
    files = sorted(root.glob("uncompressed/**/*.png")) + sorted(root.glob("faces68/*/*.jpg"))
    if not with_copies:
        files = [p for p in files if p.relative_to(root).as_posix() not in BENCHMARK_COPIES]
    if not files:
        raise SystemExit(f"no training photos under {root}/uncompressed or {root}/faces68")
    return files


@dataclass
class PatchSampler:
    """Random aligned (LR, HR) Y patches in [0, 1] with flips/rotations; pairs are cut once."""

    pairs: list[tuple[np.ndarray, np.ndarray]]
    lr_patch: int
    seed: int

    @classmethod
    def from_files(cls, files: list[Path], lr_patch: int, seed: int) -> PatchSampler:
        pairs = []
        for path in files:
            hr, lr = hr_lr_pair(read_y(path))
            if min(lr.shape) >= lr_patch:
                pairs.append((lr / 255.0, hr / 255.0))
        if not pairs:
            raise SystemExit(f"no photo is large enough for {lr_patch * SCALE}-px HR patches")
        return cls(pairs, lr_patch, seed)

    def batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(self.seed)
        size, hr_size = self.lr_patch, self.lr_patch * SCALE
        while True:
            lrs = np.empty((batch_size, size, size, 1), np.float32)
            hrs = np.empty((batch_size, hr_size, hr_size, 1), np.float32)
            for i, index in enumerate(rng.integers(len(self.pairs), size=batch_size)):
                lr, hr = self.pairs[index]
                top = int(rng.integers(lr.shape[0] - size + 1))
                left = int(rng.integers(lr.shape[1] - size + 1))
                lr_patch = lr[top : top + size, left : left + size]
                hr_top, hr_left = top * SCALE, left * SCALE
                hr_patch = hr[hr_top : hr_top + hr_size, hr_left : hr_left + hr_size]
                turns, flip = int(rng.integers(4)), bool(rng.integers(2))
                lr_patch, hr_patch = np.rot90(lr_patch, turns), np.rot90(hr_patch, turns)
                if flip:
                    lr_patch, hr_patch = lr_patch[:, ::-1], hr_patch[:, ::-1]
                lrs[i, ..., 0], hrs[i, ..., 0] = lr_patch, hr_patch
            yield lrs, hrs


def benchmark(root: Path, name: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(file name, HR Y, LR Y) for every picture of a benchmark set, 0..255 float32."""
    files = sorted((root / "sr" / name).glob("*.png"))
    if not files:
        raise SystemExit(f"benchmark {name} not found under {root}/sr")
    return [(path.name, *hr_lr_pair(read_y(path))) for path in files]
