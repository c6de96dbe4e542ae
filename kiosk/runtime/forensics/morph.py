"""Morph check: is the detected face a blend of two people (single-image morph attack detection)?

A morphed passport photo matches both contributors, so one ID serves two people. Blending two
warped faces leaves traces on the face itself even after re-compression or resampling: the
inner face is an average of two images, so its sensor noise is weaker and its fine texture
flatter than the skin and hair around it; misaligned features leave doubled edges; a pasted
morph has a seam where the blend ends. The trees see them without a CNN, on one face crop:

- **noise residuals per cell**: three high-pass residuals (median, Laplacian, Gaussian) as log
  energy on a 4x4 grid relative to the crop's median cell (where is it smoother), the median
  itself, and the Laplacian's on a finer 8x8 grid (a pasted morph's seam is a thin ring);
- **edge width per cell**: gradient energy over Laplacian energy (doubled or softened edges);
- **LBP histograms**: uniform local binary patterns at radius 1 and 2, whole crop and centre;
- **spectrum**: the log energy of 10 radial frequency bands relative to the total;
- **colour noise**: chroma residual per cell, correlations of the R, G, B residuals (centre and
  border) and chroma vs luma residual energy.

Gradient-boosted trees (trained in training/morph/, shipped as arrays, evaluated in numpy with
`Trees.logits`) give P(morph). The crop is cut from the detector box like sr.py's.

When the manifest also lists `morph_cnn` (a small CNN on the same crop, float16 TFLite on LiteRT:
training/morph/cnn.py), the score is a logistic regression of both models' logits (the shared
`Fusion` of kiosk/runtime/models/fusion.py, features cnn_logit and trees_logit), and the record
adds each model's own score (`trees_score`, `cnn_score`). The CNN's logit is the mean over test-time
views of the crop (`tta_views`: the crop and its mirror, each at shifts of 0 and +-2 px; the
entry's `tta_mirror` and `tta_shift_px`, on which its fusion was fitted; `cnn_views` in the record).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from functools import cache
from typing import Any

import cv2
import numpy as np

from kiosk.config import Config
from kiosk.contract.errors import InputError, ModelError
from kiosk.runtime.forensics.capture import Artifacts, Capture
from kiosk.runtime.models.fusion import CNN_LOGIT, Fusion, sigmoid
from kiosk.runtime.models.litert import make_interpreter
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.models.tflite_io import Model
from kiosk.runtime.models.trees import Trees, listed_trees
from kiosk.runtime.vision.types import Box

log = logging.getLogger(__name__)

MODEL_NAME = "morph"
CNN_MODEL_NAME = "morph_cnn"
TREES_LOGIT = "trees_logit"  # the fusion's feature beside the CNN's (CNN_LOGIT)
MORPH_REMEDY = "re-run make morph"
CROP = 128  # the crop's side: about the training faces' native size (a 60-200 px face box)
FACE_MARGIN = 1.4  # crop side / detector box side: the whole face plus a ring of hair and skin
MIN_FACE_PX = 40  # smaller faces hold too little texture to judge (and none was trained on)
GRID = 4
FINE_GRID = 8
BANDS = 10
# 3 residuals x (16 cells + level), fine Laplacian cells, edge width and chroma noise per cell,
# 2 radii x 2 regions x 10 LBP bins, bands, 2 x (3 + 1) colour
N_FEATURES = 3 * (GRID**2 + 1) + FINE_GRID**2 + 2 * GRID**2 + 40 + BANDS + 8
_EPS = 1e-3
MAX_TTA_SHIFT = 4  # px: the CNN's training shifts (training/morph/cnn.py SHIFT); no view beyond


def face_crop(rgb: np.ndarray, box: Box) -> np.ndarray:
    """(CROP, CROP, 3) uint8: a square of FACE_MARGIN x the box's longer side, centred on the
    box, edge-replicated outside the frame, resampled (area when shrinking, cubic otherwise)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"morph check needs an RGB uint8 image, got {rgb.dtype} {rgb.shape}")
    x0, y0, x1, y1 = box
    box_px = max(x1 - x0, y1 - y0)
    if box_px < MIN_FACE_PX:
        raise InputError(
            f"face {box_px:.0f} px is too small for morph detection (at least {MIN_FACE_PX} px); "
            "move closer to the camera or use the full-resolution capture"
        )
    side = max(round(box_px * FACE_MARGIN), 2)
    left, top = round((x0 + x1 - side) / 2), round((y0 + y1 - side) / 2)
    height, width = rgb.shape[:2]
    pad = max(0, -left, -top, left + side - width, top + side - height)
    padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else rgb
    square = padded[top + pad : top + pad + side, left + pad : left + pad + side]
    interpolation = cv2.INTER_AREA if side > CROP else cv2.INTER_CUBIC
    return cv2.resize(square, (CROP, CROP), interpolation=interpolation)


def _cells(plane: np.ndarray, grid: int = GRID) -> np.ndarray:
    cell = plane.shape[0] // grid
    return plane.reshape(grid, cell, grid, cell).mean(axis=(1, 3)).ravel()


def _relative(values: np.ndarray) -> np.ndarray:
    """Log cell values minus their median: where the crop is smoother or sharper than itself."""
    logs = np.log(values + _EPS)
    return logs - np.median(logs)


def _lbp(gray: np.ndarray, radius: int) -> np.ndarray:
    """(H-2r, W-2r) uniform-LBP codes 0..9 (8 neighbours at `radius`, rounded to the grid;
    9 = non-uniform)."""
    r = radius
    centre = gray[r:-r, r:-r]
    height, width = centre.shape
    bits = []
    for k in range(8):
        dy, dx = (round(-r * np.sin(k * np.pi / 4)), round(r * np.cos(k * np.pi / 4)))
        bits.append(gray[r + dy : r + dy + height, r + dx : r + dx + width] >= centre)
    stack = np.stack(bits).astype(np.int8)
    ones = stack.sum(0)
    transitions = np.abs(np.diff(np.concatenate([stack, stack[:1]]), axis=0)).sum(0)
    return np.where(transitions <= 2, ones, 9)


def _histogram(codes: np.ndarray) -> np.ndarray:
    return np.bincount(codes.ravel(), minlength=10)[:10] / codes.size


@cache
def _radius_index() -> np.ndarray:
    """The band (0..BANDS-1) of each rfft2 coefficient of a CROP x CROP plane."""
    fy = np.fft.fftfreq(CROP)[:, None]
    fx = np.fft.rfftfreq(CROP)[None, :]
    radius = np.sqrt(fx**2 + fy**2) / 0.5  # 0 .. ~1.41 (Nyquist = 1 on each axis)
    return np.minimum((radius * BANDS).astype(np.int64), BANDS - 1).ravel()


def features(crop: np.ndarray) -> np.ndarray:
    """(F,) float32 features of a (CROP, CROP, 3) uint8 RGB face crop (see the module)."""
    if crop.shape != (CROP, CROP, 3) or crop.dtype != np.uint8:
        raise InputError(f"morph features need a {CROP}x{CROP} RGB uint8 crop, got {crop.shape}")
    gray_u8 = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    gray = gray_u8.astype(np.float32)
    out: list[np.ndarray] = []
    residuals = (
        np.abs(gray - cv2.medianBlur(gray_u8, 3).astype(np.float32)),
        np.abs(cv2.Laplacian(gray, cv2.CV_32F)),
        np.abs(gray - cv2.GaussianBlur(gray, (0, 0), 1.0)),
    )
    for residual in residuals:
        cells = np.log(_cells(residual) + _EPS)
        level = np.median(cells)
        out += [cells - level, [level]]
    # finer map of the Laplacian residual (the seam of a pasted morph is a thin ring)
    out.append(_relative(_cells(residuals[1], FINE_GRID)))
    # edge width per cell: gradient over Laplacian energy grows where edges are doubled/soft
    gx, gy = cv2.Sobel(gray, cv2.CV_32F, 1, 0), cv2.Sobel(gray, cv2.CV_32F, 0, 1)
    out.append(_relative(_cells(gx * gx + gy * gy)) - _relative(_cells(residuals[1] ** 2)))
    quarter = CROP // 4
    for radius in (1, 2):
        codes = _lbp(gray_u8, radius)
        inner = codes[quarter - radius : -quarter + radius, quarter - radius : -quarter + radius]
        out += [_histogram(codes), _histogram(inner)]
    window = np.outer(np.hanning(CROP), np.hanning(CROP)).astype(np.float32)
    power = np.abs(np.fft.rfft2((gray - gray.mean()) * window)) ** 2
    bands = np.bincount(_radius_index(), power.ravel(), minlength=BANDS)
    out.append(np.log(bands + _EPS) - np.log(bands.sum() + _EPS))
    channels = crop.astype(np.float32)
    noise = channels - cv2.GaussianBlur(channels, (0, 0), 1.0)
    centre = np.zeros((CROP, CROP), bool)
    centre[quarter:-quarter, quarter:-quarter] = True
    chroma_noise = np.abs(noise - noise.mean(-1, keepdims=True)).mean(-1)
    out.append(_relative(_cells(chroma_noise)))
    for region in (centre, ~centre):
        r, g, b = (noise[..., k][region] for k in range(3))
        out.append([_correlation(r, g), _correlation(g, b), _correlation(r, b)])
        luma = noise[region].mean(-1)
        chroma = noise[region] - luma[:, None]
        out.append([np.log((chroma**2).mean() + _EPS) - np.log((luma**2).mean() + _EPS)])
    return np.concatenate([np.asarray(part, np.float32).ravel() for part in out])


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum() + _EPS))


def view_count(mirror: bool = False, shift_px: int = 0) -> int:
    """How many views `tta_views` makes: 1, 2 with the mirror, times 5 with shifts."""
    return (2 if mirror else 1) * (5 if shift_px else 1)


def tta_views(crop: np.ndarray, mirror: bool = False, shift_px: int = 0) -> list[np.ndarray]:
    """The views of a (CROP, CROP, 3) crop whose CNN logits are averaged: the crop and, with
    `mirror`, its left-right mirror; each also shifted by -shift_px and +shift_px in y and in x
    (reflected border, as the CNN's training shifts: no resampling). 1, 2, 5 or 10 views."""
    images = [crop, crop[:, ::-1]] if mirror else [crop]
    if not shift_px:
        return images
    s = shift_px
    offsets = ((0, 0), (-s, 0), (s, 0), (0, -s), (0, s))
    views = []
    for image in images:
        padded = np.pad(image, ((s, s), (s, s), (0, 0)), mode="reflect")
        for dy, dx in offsets:
            views.append(padded[s + dy : s + dy + CROP, s + dx : s + dx + CROP])
    return views


def cnn_tta(extra: Mapping[str, Any]) -> tuple[bool, int]:
    """(mirror, shift_px) of the morph_cnn entry (`tta_mirror` 0/1, `tta_shift_px` 0..
    MAX_TTA_SHIFT): the views its fusion was fitted on. An entry without them is a bundle from
    before test-time augmentation (fitted on the crop alone): (False, 0)."""
    mirror, shift = extra.get("tta_mirror", 0), extra.get("tta_shift_px", 0)
    if mirror not in (0, 1) or type(mirror) is not int:
        raise ModelError(
            f"manifest entry {CNN_MODEL_NAME!r}: tta_mirror must be 0 or 1, got {mirror!r}; "
            f"{MORPH_REMEDY}"
        )
    if type(shift) is not int or not 0 <= shift <= MAX_TTA_SHIFT:
        raise ModelError(
            f"manifest entry {CNN_MODEL_NAME!r}: tta_shift_px must be an integer 0..."
            f"{MAX_TTA_SHIFT}, got {shift!r}; {MORPH_REMEDY}"
        )
    return bool(mirror), shift


class CnnScorer:
    """The morph CNN (TFLite on LiteRT, float16 or int8): RGB face crop -> its logit, the mean
    over the crop's test-time views (`tta_views`; by default the crop alone)."""

    def __init__(
        self, content: bytes, num_threads: int = 1, mirror: bool = False, shift_px: int = 0
    ) -> None:
        self.model = Model(make_interpreter(content, num_threads=num_threads))
        if self.model.input_shape != (1, CROP, CROP, 3):
            raise ModelError(
                f"morph CNN takes input {list(self.model.input_shape)}, the kiosk's crop is "
                f"{[1, CROP, CROP, 3]}: {MORPH_REMEDY}"
            )
        self.mirror, self.shift_px = mirror, shift_px
        self.views = view_count(mirror, shift_px)

    def view_logit(self, view: np.ndarray) -> float:
        """The CNN's logit of one view, as it is."""
        return float(self.model(view.astype(np.float32)[None]).reshape(-1)[0])

    def logit(self, crop: np.ndarray) -> float:
        views = tta_views(crop, self.mirror, self.shift_px)
        return float(np.mean([self.view_logit(view) for view in views]))


def morph_fusion(extra: Mapping[str, Any]) -> Fusion:
    """The `fusion` of the morph_cnn entry: a logistic regression of the CNN's and the trees'
    logits (features cnn_logit, trees_logit), fitted on validation faces by
    training/morph/train.py. Required with the CNN; the format before the shared `Fusion`
    ({"cnn", "trees", "bias"}) is refused, so a stale bundle is re-exported, not misread."""
    fusion = Fusion.from_entry(extra, CNN_MODEL_NAME, {TREES_LOGIT}, MORPH_REMEDY)
    if fusion is None:
        raise ModelError(
            f"manifest entry {CNN_MODEL_NAME!r} needs `fusion` weights "
            f"(features {[CNN_LOGIT, TREES_LOGIT]}); {MORPH_REMEDY}"
        )
    return fusion


class MorphCheck:
    """Forensic check "morph": P(the detected face is a morph of two faces). With the CNN listed
    the score is its fusion with the trees (and `threshold` the fusion's); else the trees'."""

    key = "morph"
    needs_face = True

    def __init__(
        self,
        trees: Trees,
        threshold: float,
        cnn: CnnScorer | None = None,
        fusion: Fusion | None = None,
    ) -> None:
        if trees.n_features != N_FEATURES:
            raise ModelError(
                f"morph model expects {trees.n_features} features, the kiosk computes "
                f"{N_FEATURES}: the model and the kiosk's code are from different versions"
            )
        if (cnn is None) != (fusion is None):
            raise ValueError("the morph CNN needs its fusion weights and the other way round")
        self.trees = trees
        self.threshold = threshold
        self.cnn = cnn
        self.fusion = fusion

    def scores(self, rgb: np.ndarray, box: Box) -> dict[str, float]:
        """The shipped `score` and each model's own of the face in `box` (rgb's pixels)."""
        crop = face_crop(rgb, box)
        trees_logit = float(self.trees.logits(features(crop)[None])[0])
        if self.cnn is None or self.fusion is None:
            return {"score": sigmoid(trees_logit), "trees_score": sigmoid(trees_logit)}
        cnn_logit = self.cnn.logit(crop)
        return {
            "score": self.fusion.score({CNN_LOGIT: cnn_logit, TREES_LOGIT: trees_logit}),
            "trees_score": sigmoid(trees_logit),
            "cnn_score": sigmoid(cnn_logit),
        }

    def score(self, rgb: np.ndarray, box: Box) -> float:
        """P(morph) of the face in `box` (rgb's pixels), as the check flags it."""
        return self.scores(rgb, box)["score"]

    def run(self, capture: Capture, artifacts: Artifacts) -> dict[str, Any]:
        del artifacts  # nothing to draw: the score is the face's as a whole
        if capture.face is None:
            return {"applied": False, "face_px": None}
        x0, y0, x1, y1 = capture.face
        face_px = max(x1 - x0, y1 - y0) * capture.scale
        scores = self.scores(capture.rgb, capture.face)
        return {
            "applied": True,
            "score": round(scores["score"], 6),
            "threshold": self.threshold,
            "flagged": scores["score"] >= self.threshold,
            "face_px": round(face_px, 1),
            "model": "trees" if self.cnn is None else "trees+cnn",
            **{key: round(value, 6) for key, value in scores.items() if key != "score"},
            **({} if self.cnn is None else {"cnn_views": self.cnn.views}),
        }


def make_morph_check(registry: ModelRegistry, config: Config) -> MorphCheck | None:
    """The check for the manifest's `morph` trees, fused with the `morph_cnn` CNN when that is
    listed too (its entry holds the fusion's weights and threshold); None without the trees."""
    listed = listed_trees(registry, MODEL_NAME, MORPH_REMEDY)
    if listed is None:
        return None
    trees, threshold = listed
    if CNN_MODEL_NAME not in registry.entries:
        return MorphCheck(trees, threshold)
    entry = registry.entry(CNN_MODEL_NAME)
    if entry.threshold is None:
        raise ModelError(f"manifest entry {CNN_MODEL_NAME!r} has no threshold; {MORPH_REMEDY}")
    mirror, shift_px = cnn_tta(entry.extra)
    content = registry.verified_bytes(CNN_MODEL_NAME)
    cnn = CnnScorer(content, config.models.num_threads, mirror, shift_px)
    return MorphCheck(trees, entry.threshold, cnn, morph_fusion(entry.extra))
