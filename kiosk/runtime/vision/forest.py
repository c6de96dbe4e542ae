"""dlib's 68-point shape predictor (an ensemble of regression trees, Kazemi & Sullivan 2014)
evaluated with numpy from the arrays training exports (training/landmarks_export.py).

Why not dlib itself: reading a .dat file means decoding dlib's portable number format one value
at a time, ~0.1 s for the bundle's 14 MB model while holding the GIL, a fifth of `kiosk check`'s
0.5 s start-up budget (issue 16). The same trees as arrays load in ~0.03 s. The evaluation is
dlib's own, step for step and in its precisions (shape_predictor.h): the feature pixels are
placed by the similarity transform from the mean shape to the current one, in float32, mapped to
the image in double and rounded to whole pixels (0 outside the image); each tree compares pixel
differences with its thresholds; the leaves are added in tree order in float32. The points are
therefore dlib's, bit for bit (tests/test_forest.py; docs/performance.md for the check on real
faces). The fits from several boxes run as one batch.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from kiosk.contract.errors import ModelError
from kiosk.contract.models import LANDMARK_ARRAYS

# A tree's 2**depth - 1 split outcomes index a table of leaves: 32,768 entries at depth 4 (dlib's
# default, the bundle's), 2**31 at depth 5.
MAX_DEPTH = 4


class RegressionForest:
    """`fit(image, rects)` -> the points of one fit per rectangle, as dlib returns them."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        missing = [name for name in LANDMARK_ARRAYS if name not in arrays]
        if missing:
            raise ModelError(f"landmark arrays lack {', '.join(missing)}")
        initial = np.asarray(arrays["initial_shape"], np.float32)  # (P, 2), box-normalised
        anchors = np.asarray(arrays["anchors"], np.intp)  # (C, F): point each pixel hangs on
        deltas = np.asarray(arrays["deltas"], np.float32)  # (C, F, 2): offset from that point
        splits = np.asarray(arrays["splits"], np.intp)  # (C, T, S, 2): pixel pairs compared
        thresholds = np.asarray(arrays["thresholds"], np.float32)  # (C, T, S)
        leaves = np.asarray(arrays["leaves"], np.float32)  # (C, T, L, 2P)
        cascades, trees, nodes, _ = splits.shape
        depth = (nodes + 1).bit_length() - 1
        if leaves.shape[:3] != (cascades, trees, nodes + 1) or nodes + 1 != 1 << depth:
            raise ModelError(f"landmark arrays: {nodes} splits but leaves {leaves.shape[:3]}")
        if depth > MAX_DEPTH:
            raise ModelError(f"landmark trees of depth {depth}: at most {MAX_DEPTH} supported")
        self.points = len(initial)
        self.initial = initial.reshape(-1)  # x0, y0, x1, y1, ... as dlib stores a shape
        self.anchor_xy = np.stack([2 * anchors, 2 * anchors + 1], axis=1)  # (C, 2, F)
        # a * delta + b * delta rotated by 90 degrees: dlib's 2x2 similarity [[a, -b], [b, a]]
        self.deltas = np.stack([deltas[..., 0], deltas[..., 1]], axis=1)  # (C, 2, F)
        self.turned = np.stack([-deltas[..., 1], deltas[..., 0]], axis=1)
        self.pairs = np.concatenate(
            [splits[..., 0].reshape(cascades, -1), splits[..., 1].reshape(cascades, -1)], axis=1
        )
        self.thresholds = thresholds.reshape(cascades, -1)
        self.leaves = leaves.reshape(cascades, trees * (nodes + 1), -1)
        self.leaf_base = (np.arange(trees) * (nodes + 1))[:, None]
        self.trees, self.nodes = trees, nodes
        # a and b of the least-squares similarity from the centred mean shape to a shape, as
        # one product: the mean shape is centred, so the other shape need not be. dlib gets
        # the same matrix from an SVD (Umeyama); the two differ only for a reflection, which a
        # face shape never needs.
        ref = initial.astype(np.float64) - initial.astype(np.float64).mean(axis=0)
        project = np.zeros((2 * self.points, 2))
        project[0::2, 0], project[1::2, 0] = ref[:, 0], ref[:, 1]
        project[1::2, 1], project[0::2, 1] = ref[:, 0], -ref[:, 1]
        self.project = project / (ref**2).sum()
        # the leaf each pattern of split outcomes leads to (bit i: split i goes left)
        patterns = np.arange(1 << nodes)
        node = np.zeros_like(patterns)
        for _ in range(depth):
            node = 2 * node + 2 - ((patterns >> node) & 1)
        self.leaf_of = (node - nodes).astype(np.intp)
        self.bit_values = (1 << np.arange(nodes)).astype(np.intp)

    @classmethod
    def from_bytes(cls, data: bytes) -> RegressionForest:
        """The forest from an .npz file's bytes (as the registry read and hash-checked them)."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as stored:
                return cls({name: stored[name] for name in stored.files})
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise ModelError(f"landmark arrays cannot be read: {exc}") from exc

    def fit(self, image: np.ndarray, rects: np.ndarray) -> np.ndarray:
        """(N, P, 2) whole-pixel points, one fit per row (left, top, right, bottom) of `rects`
        (dlib's inclusive rectangle corners). `image`: grayscale or RGB uint8; RGB counts as
        dlib's intensity, (r + g + b) // 3."""
        if image.ndim == 3:
            image = (image.astype(np.uint16).sum(axis=2) // 3).astype(np.uint8)
        rects = np.asarray(rects, np.float64)
        count = len(rects)
        height, width = image.shape
        # dlib maps the unit box onto the rectangle and rounds half up; 0.5 is folded in here
        origin = (rects[:, :2] + 0.5)[:, :, None]
        span = (rects[:, 2:] - rects[:, :2])[:, :, None]
        limit = np.array([[width], [height]], np.uintp)
        pixels = image.reshape(-1)
        shape = np.repeat(self.initial[None], count, axis=0)
        tree_sums = np.empty((self.trees + 1, count, shape.shape[1]), np.float32)
        split_count = self.trees * self.nodes
        for level in range(len(self.deltas)):
            a_b = (shape.astype(np.float64) @ self.project).astype(np.float32)[:, :, None, None]
            points = (
                a_b[:, 0] * self.deltas[level]
                + a_b[:, 1] * self.turned[level]
                + np.take(shape, self.anchor_xy[level], axis=1)
            )
            where = np.floor(origin + points * span).astype(np.intp)
            inside = (where.astype(np.uintp) < limit).all(axis=1)
            index = np.where(inside, where[:, 1] * width + where[:, 0], 0)
            values = np.where(inside, pixels[index], 0).astype(np.float32)
            pair = np.take(values, self.pairs[level], axis=1)
            left = pair[:, :split_count] - pair[:, split_count:] > self.thresholds[level]
            pattern = left.reshape(count, self.trees, self.nodes) @ self.bit_values
            leaf = self.leaf_of[pattern.T] + self.leaf_base  # (T, N)
            tree_sums[0] = shape
            np.take(self.leaves[level], leaf, axis=0, out=tree_sums[1:])
            shape = np.add.reduce(tree_sums, axis=0)  # row by row: dlib's order of float sums
        points = shape.reshape(count, self.points, 2).transpose(0, 2, 1).astype(np.float64)
        return np.floor(origin + points * span).transpose(0, 2, 1)
