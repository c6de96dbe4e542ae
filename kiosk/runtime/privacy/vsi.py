"""Visual security index of a perceptually encrypted image (Shi, Xiong & Qiao).

A viewer can rebuild a face from a few recognizable pieces wherever they sit in the encrypted
image, so the index compares every block of the plain image with *every* block of the encrypted
one and keeps the best match (the non-local maximum). Block similarity combines appearance
(low-pass filtered pixels, Minkowski pooled) and structure (fuzzy Jaccard overlap of edge maps);
blocks are pooled with weights that favour structured blocks whose neighbours are not already
recognizable; a global edge-histogram similarity corrects for structure cut by the block grid.
Higher VSI = more recognizable = less secure. VSI(x, x) = 2 (RD = 1, GS = 1).

Where the paper leaves room (reasons in docs/privacy.md):

* Pooling (paper eq. 6) is the weighted Minkowski mean (sum w * RD^gamma / sum w)^(1/gamma),
  which stays in [0, 1]; weights get a tiny floor so that an all-recognizable image (every
  neighbour at RD = 1, hence every weight 0) still pools to 1.
* Blocks tile the whole image: when the side is not a multiple of the block size, the last
  row/column of blocks is aligned with the border (overlapping its neighbour) instead of
  dropping the remainder, where leaked content could otherwise hide.
* Each block's edge map is computed from the block alone, so a moved block keeps its edges;
  the global term uses whole-image edge maps. Two edge-free blocks have sim_S = 1.

Speed: the non-local search is quadratic in the number of blocks (about 100 x 100 pairs for the
default alpha, whatever the image size). All pairs are evaluated at once: appearance as a batched
broadcast in float32 chunks, structure as three matrix products (weighted overlap, overlap and
edge counts), and the per-block low-pass filter as one batched DCT.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from functools import lru_cache

import cv2
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from kiosk.runtime.privacy.edges import EDGE_FILTERS, edge_maps, edge_strength
from kiosk.runtime.privacy.zigzag import zigzag_ranks

logger = logging.getLogger(__name__)

MIN_SIDE = 32
_WEIGHT_FLOOR = 1e-6
_SAME_BLOCK = 1e-5
_CHUNK_ELEMENTS = 8_000_000  # float32 elements per appearance chunk (~32 MB)
DEFAULT_SIZE = 256  # shorter side the pair is normalised to (see VsiParams.size)


@dataclass(frozen=True)
class VsiParams:
    """Index parameters; defaults are the paper's (alpha 0.1, beta 40, gamma 5).

    ``search_stride`` is the step between candidate blocks in the encrypted image as a fraction
    of the block side: 1.0 is the paper's non-overlapping grid; smaller values also find content
    that a shuffle moved off that grid, at a cost quadratic in 1/stride. The ``use_*`` switches
    exist for the ablation (paper Table 3): without structure sim = sim_A, without weights the
    pooling is unweighted, without the global term GS is reported as 0 and VSI = RD.

    ``size`` normalises the pair before anything else: frames whose shorter side exceeds it are
    downscaled (area averaging) to that shorter side. The export threshold is calibrated at this
    size, so a frame scores the same whatever the camera resolution; averaging also does what a
    viewer's blur or downscale does to per-pixel noise, which at full resolution hides a face from
    the index but not from a detector (docs/privacy.md); and memory and time stay bounded
    (a 12 MP frame costs what a 256 px one does). None keeps the native size (research use).
    """

    alpha: float = 0.1
    beta: float = 40.0
    gamma: float = 5.0
    edge_filter: str = "fourier_argand"
    search_stride: float = 1.0
    histogram_bins: int = 32
    use_structure: bool = True
    use_weights: bool = True
    use_global: bool = True
    size: int | None = DEFAULT_SIZE

    def __post_init__(self) -> None:
        if not 0.0 < self.alpha <= 0.5:
            raise ValueError(f"alpha must be in (0, 0.5], got {self.alpha}")
        if not self.beta > 0.0:
            raise ValueError(f"beta must be positive, got {self.beta}")
        if not self.gamma >= 1.0:
            raise ValueError(f"gamma must be at least 1, got {self.gamma}")
        if self.edge_filter not in EDGE_FILTERS:
            raise ValueError(f"edge_filter must be one of {EDGE_FILTERS}, got {self.edge_filter!r}")
        if not 0.0 < self.search_stride <= 1.0:
            raise ValueError(f"search_stride must be in (0, 1], got {self.search_stride}")
        if not 2 <= self.histogram_bins <= 1024:
            raise ValueError(f"histogram_bins must be in [2, 1024], got {self.histogram_bins}")
        if self.size is not None and not MIN_SIDE <= self.size <= 4096:
            raise ValueError(f"size must be None or in [{MIN_SIDE}, 4096] px, got {self.size}")


@dataclass(frozen=True)
class VsiResult:
    """VSI = RD * (1 + GS), with the per-block recognizable degrees behind it."""

    vsi: float
    rd: float
    gs: float
    block_size: int
    block_rd: np.ndarray = field(repr=False)  # (rows, cols) non-local RD of each plain block

    def as_dict(self) -> dict[str, float]:
        return {"vsi": self.vsi, "rd": self.rd, "gs": self.gs}


def _describe(image: np.ndarray) -> str:
    kind = "grayscale" if image.ndim == 2 else f"color ({image.shape[2]} channels)"
    return f"{image.shape[1]}x{image.shape[0]} {kind}"


def _check_image(image: object, name: str) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{name} image must be a numpy array, got {type(image).__name__}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"{name} image must be HxW or HxWx3/4, got shape {image.shape}")
    if image.dtype != np.uint8:
        if image.dtype.kind not in "uif":
            raise ValueError(f"{name} image must hold 8-bit values, got dtype {image.dtype}")
        if not np.all(np.isfinite(image)) or image.min() < 0 or image.max() > 255:
            raise ValueError(f"{name} image values must be finite and within [0, 255]")
    return image


def _luma(image: np.ndarray) -> np.ndarray:
    """BT.601 luma in [0, 255]; the index works on intensity like the paper."""
    if image.ndim == 2:
        return image.astype(np.float32)
    # Element-wise (not a matrix product) so equal pixels give bit-equal luma wherever they sit.
    rgb = image.astype(np.float32)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


def normalise(image: np.ndarray, size: int | None) -> np.ndarray:
    """``image`` downscaled (area averaging) so that its shorter side is ``size``; never enlarged."""
    short = min(image.shape[:2])
    if size is None or short <= size:
        return image
    scale = size / short
    width = max(size, round(image.shape[1] * scale))
    height = max(size, round(image.shape[0] * scale))
    if image.dtype not in (np.uint8, np.float32):
        image = image.astype(np.float32)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def prepare_pair(
    plain: object, encrypted: object, size: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a plain/encrypted pair and return both as float32 luma, normalised to ``size``
    (see VsiParams.size); ValueError if unusable."""
    plain = _check_image(plain, "plain")
    encrypted = _check_image(encrypted, "encrypted")
    if plain.shape != encrypted.shape:
        raise ValueError(
            f"plain is {_describe(plain)} but encrypted is {_describe(encrypted)}: "
            "compare a frame with its own encryption (same size and channels)"
        )
    if min(plain.shape[:2]) < MIN_SIDE:
        raise ValueError(
            f"image is {plain.shape[1]}x{plain.shape[0]} px; the index needs at least "
            f"{MIN_SIDE} px on the shorter side to form blocks"
        )
    return _luma(normalise(plain, size)), _luma(normalise(encrypted, size))


def block_side(height: int, width: int, alpha: float) -> int:
    """Block side floor(alpha * L) + 1, L = shorter image side."""
    return int(np.floor(alpha * min(height, width))) + 1


def _origins(length: int, size: int, step: int) -> np.ndarray:
    """Origins of the block grid (every ``size`` px, the last one flush with the far border),
    plus every ``step`` px when the search is denser than the grid."""
    starts = set(range(0, length - size + 1, size)) | set(range(0, length - size + 1, step))
    starts.add(length - size)
    return np.asarray(sorted(starts))


def _blocks(image: np.ndarray, size: int, step: int) -> np.ndarray:
    """(rows, cols, size, size) blocks covering the image.

    Both origin lists index the window view in one step: indexing rows first (``windows[ys]``)
    would copy every column offset of those rows, size**2 * width values per row (13 GB at 12 MP).
    """
    windows = sliding_window_view(image, (size, size))
    ys = _origins(image.shape[0], size, step)
    xs = _origins(image.shape[1], size, step)
    return windows[ys[:, None], xs[None, :]]


@lru_cache(maxsize=16)
def _lowpass_weights(size: int, beta: float) -> np.ndarray:
    """exp(-r / (beta * size)) with r the zigzag rank of each DCT subband."""
    return np.exp(-zigzag_ranks(size) / (beta * size)).astype(np.float32)


def _lowpass(blocks: np.ndarray, beta: float) -> np.ndarray:
    """Per-block DCT low-pass of (n_blocks, size, size), flattened to (n_blocks, size * size)."""
    from scipy import fft as sp_fft  # on use: other commands skip its ~20 MB

    size = blocks.shape[-1]
    flat = blocks.astype(np.float32)
    coeffs = sp_fft.dctn(flat, axes=(1, 2), norm="ortho")
    filtered = sp_fft.idctn(coeffs * _lowpass_weights(size, beta), axes=(1, 2), norm="ortho")
    return filtered.reshape(len(flat), -1)


def _appearance(plain: np.ndarray, encrypted: np.ndarray, gamma: float) -> np.ndarray:
    """sim_A for all pairs: Minkowski pooling of 1 - |difference| / 255 (paper eq. 2)."""
    n_plain, n_pixels = plain.shape
    out = np.empty((n_plain, len(encrypted)), dtype=np.float32)
    chunk = max(1, _CHUNK_ELEMENTS // (len(encrypted) * n_pixels))
    for start in range(0, n_plain, chunk):
        diff = np.abs(plain[start : start + chunk, None, :] - encrypted[None, :, :])
        closeness = np.maximum(1.0 - diff * np.float32(1.0 / 255.0), 0.0, out=diff)
        np.power(closeness, np.float32(gamma), out=closeness)
        out[start : start + chunk] = closeness.mean(axis=2)
    return out ** np.float32(1.0 / gamma)


def _structure(plain_binary: np.ndarray, encrypted_binary: np.ndarray) -> np.ndarray:
    """sim_S for all pairs: fuzzy Jaccard index with a distance-transform weight map (eq. 3)."""
    n_plain, size, _ = plain_binary.shape
    diagonal = size * np.sqrt(2.0)
    weight = np.zeros(plain_binary.shape, dtype=np.float32)
    for index, block in enumerate(plain_binary):
        if block.any():
            # distanceTransform measures the distance to the nearest zero pixel: edges -> 0.
            distance = cv2.distanceTransform((~block).astype(np.uint8), cv2.DIST_L2, 5)
            weight[index] = np.clip(1.0 - distance / diagonal, 0.0, 1.0)
    bp = plain_binary.reshape(n_plain, -1).astype(np.float32)
    be = encrypted_binary.reshape(len(encrypted_binary), -1).astype(np.float32)
    weighted = weight.reshape(n_plain, -1) @ be.T
    overlap = bp @ be.T
    union = bp.sum(axis=1)[:, None] + be.sum(axis=1)[None, :] - overlap
    # Two edge-free blocks have identical (empty) structure.
    return np.divide(weighted, union, out=np.ones_like(weighted), where=union > 0)


def _neighbour_mean(grid: np.ndarray) -> np.ndarray:
    """Mean of each cell's 4-neighbours (fewer at the border)."""
    padded = np.pad(grid, 1)
    counts = np.pad(np.ones_like(grid), 1)
    total = padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:]
    number = counts[:-2, 1:-1] + counts[2:, 1:-1] + counts[1:-1, :-2] + counts[1:-1, 2:]
    return total / np.maximum(number, 1)


def _bhattacharyya(a: np.ndarray, b: np.ndarray, bins: int) -> float:
    """Bhattacharyya coefficient of two value histograms over [0, 1] (1 = identical)."""
    ha, _ = np.histogram(a, bins=bins, range=(0.0, 1.0))
    hb, _ = np.histogram(b, bins=bins, range=(0.0, 1.0))
    return float(np.sqrt((ha / ha.sum()) * (hb / hb.sum())).sum())


@dataclass(frozen=True)
class _Terms:
    """Everything pooling needs, so that ablation variants share one pass over the pairs."""

    appearance: np.ndarray  # (plain blocks, candidate blocks) sim_A
    structure: np.ndarray | None  # same shape, sim_S (None when not requested)
    complexity: np.ndarray  # (rows, cols) std of each plain block's edge map
    gs: float | None
    size: int


def _terms(plain: object, encrypted: object, params: VsiParams) -> _Terms:
    plain_gray, encrypted_gray = prepare_pair(plain, encrypted, params.size)
    size = block_side(*plain_gray.shape, params.alpha)
    search_step = max(1, round(size * params.search_stride))
    plain_blocks = _blocks(plain_gray, size, size)
    grid_shape = plain_blocks.shape[:2]
    plain_blocks = plain_blocks.reshape(-1, size, size)
    encrypted_blocks = _blocks(encrypted_gray, size, search_step).reshape(-1, size, size)
    appearance = _appearance(
        _lowpass(plain_blocks, params.beta), _lowpass(encrypted_blocks, params.beta), params.gamma
    )
    # Each block gets its own edge map (filtered with its own reflected borders), so a block
    # that was merely moved keeps exactly the edges it had in the plain image.
    plain_edges = edge_maps(plain_blocks, params.edge_filter)
    structure = None
    if params.use_structure:
        encrypted_edges = edge_maps(encrypted_blocks, params.edge_filter)
        structure = _structure(plain_edges.binary, encrypted_edges.binary)
    complexity = plain_edges.strength.astype(np.float64).std(axis=(1, 2)).reshape(grid_shape)
    gs = None
    if params.use_global:
        gs = _bhattacharyya(
            edge_strength(plain_gray, params.edge_filter),
            edge_strength(encrypted_gray, params.edge_filter),
            params.histogram_bins,
        )
    return _Terms(appearance, structure, complexity, gs, size)


def _pool(terms: _Terms, params: VsiParams) -> VsiResult:
    sim = terms.appearance
    if params.use_structure:
        # sim_S ** (1 - sim_A) jumps from 1 to 0 when sim_S = 0 and sim_A leaves 1: snap float
        # noise on identical blocks back to exactly 1.
        sim = np.where(sim > 1.0 - _SAME_BLOCK, np.float32(1.0), sim)
        sim = sim * terms.structure ** (1.0 - sim)
    block_rd = sim.max(axis=1).astype(np.float64).reshape(terms.complexity.shape)
    powered = block_rd**params.gamma
    if params.use_weights:
        weights = (1.0 - _neighbour_mean(block_rd)) * terms.complexity
        weights = np.maximum(weights, _WEIGHT_FLOOR)
        rd = float((np.sum(weights * powered) / np.sum(weights)) ** (1.0 / params.gamma))
    else:
        rd = float(np.mean(powered) ** (1.0 / params.gamma))
    gs = terms.gs if params.use_global else 0.0
    return VsiResult(vsi=rd * (1.0 + gs), rd=rd, gs=gs, block_size=terms.size, block_rd=block_rd)


def visual_security_index(
    plain: np.ndarray, encrypted: np.ndarray, params: VsiParams | None = None
) -> VsiResult:
    """VSI of ``encrypted`` against its ``plain`` frame (uint8 or [0, 255] arrays, same shape).

    Raises ValueError for mismatched sizes or channels, too-small images or non-8-bit data.
    """
    params = params or VsiParams()
    return _pool(_terms(plain, encrypted, params), params)


# The paper's Table 3 configurations: which components each one switches on.
ABLATION: dict[str, dict[str, bool]] = {
    "C1 sim_A": {"use_structure": False, "use_weights": False, "use_global": False},
    "C2 +sim_S": {"use_structure": True, "use_weights": False, "use_global": False},
    "C3 +w": {"use_structure": True, "use_weights": True, "use_global": False},
    "C4 +GS (full)": {"use_structure": True, "use_weights": True, "use_global": True},
}


def ablation(
    plain: np.ndarray, encrypted: np.ndarray, params: VsiParams | None = None
) -> dict[str, VsiResult]:
    """The index under every ABLATION configuration, from a single pass over the block pairs."""
    full = replace(params or VsiParams(), use_structure=True, use_weights=True, use_global=True)
    terms = _terms(plain, encrypted, full)
    return {name: _pool(terms, replace(full, **flags)) for name, flags in ABLATION.items()}
