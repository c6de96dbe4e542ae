"""Image manipulations for the synthetic tampering set: splice, copy-move, landmark face morph.

No tampering database is obtainable here, so these build one. Each returns the manipulated RGB
image and the ground-truth mask (float32 in [0, 1], feathered edge) of the region that changed.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image
from scipy.spatial import Delaunay


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode and decode as JPEG (Pillow, 4:2:0 as most cameras and web uploads)."""
    return np.asarray(Image.open(io.BytesIO(jpeg_bytes(rgb, quality))).convert("RGB"))


def jpeg_bytes(rgb: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=int(quality))
    return buffer.getvalue()


def random_region(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random ellipse or polygon covering roughly 2-20 % of the image, as a uint8 0/1 mask."""
    height, width = shape
    mask = np.zeros((height, width), np.uint8)
    side = min(height, width)
    radius = rng.uniform(0.12, 0.28) * side
    centre = rng.uniform([radius, radius], [width - radius, height - radius])
    if rng.random() < 0.5:
        axes = (int(radius), int(radius * rng.uniform(0.5, 1.0)))
        cv2.ellipse(
            mask, (int(centre[0]), int(centre[1])), axes, rng.uniform(0, 180), 0, 360, 1, -1
        )
    else:
        angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(4, 9))))
        radii = radius * rng.uniform(0.6, 1.0, len(angles))
        points = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]
        cv2.fillPoly(mask, [np.rint(points).astype(np.int32)], 1)
    return mask


def feather(mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = rng.uniform(0.8, 3.0)
    return np.clip(cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma), 0.0, 1.0)


def composite(base: np.ndarray, patch: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    blended = base.astype(np.float32) * (1 - alpha[..., None]) + patch * alpha[..., None]
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def splice(
    base: np.ndarray, donor: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Paste a random region of `donor` (rescaled, with its own JPEG history) into `base`."""
    height, width = base.shape[:2]
    donor = jpeg_roundtrip(donor, int(rng.integers(50, 99)))
    scale = max(height / donor.shape[0], width / donor.shape[1]) * rng.uniform(1.0, 1.4)
    donor = cv2.resize(donor, None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    top = int(rng.integers(donor.shape[0] - height + 1))
    left = int(rng.integers(donor.shape[1] - width + 1))
    alpha = feather(random_region((height, width), rng), rng)
    return composite(base, donor[top : top + height, left : left + width], alpha), alpha


def copy_move(base: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Copy a region of the image elsewhere in it, off the 8x8 grid, slightly rescaled."""
    height, width = base.shape[:2]
    region = random_region((height, width), rng)
    ys, xs = np.nonzero(region)
    while True:
        dx, dy = (
            rng.integers(-width // 3, width // 3 + 1),
            rng.integers(-height // 3, height // 3 + 1),
        )
        if abs(dx) + abs(dy) > min(height, width) // 8 and (dx % 8 or dy % 8):
            break
    scale = rng.uniform(0.9, 1.1)
    cx, cy = xs.mean(), ys.mean()
    # maps source pixels to the destination: scale about the region centre, then shift
    matrix = np.array([[scale, 0, cx * (1 - scale) + dx], [0, scale, cy * (1 - scale) + dy]])
    moved = cv2.warpAffine(base, matrix, (width, height), borderMode=cv2.BORDER_REFLECT)
    moved_mask = cv2.warpAffine(region.astype(np.float32), matrix, (width, height))
    alpha = feather((moved_mask > 0.5).astype(np.uint8), rng)
    return composite(base, moved, alpha), alpha


def _warp_triangles(
    image: np.ndarray, source: np.ndarray, target: np.ndarray, triangles: np.ndarray
) -> np.ndarray:
    """Piecewise-affine warp of `image` from `source` landmark positions to `target` ones."""
    out = np.zeros(image.shape, np.float32)
    height, width = image.shape[:2]
    for triangle in triangles:
        src, dst = source[triangle].astype(np.float32), target[triangle].astype(np.float32)
        x, y, w, h = cv2.boundingRect(dst)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, width), min(y + h, height)
        if x1 <= x0 or y1 <= y0:
            continue
        matrix = cv2.getAffineTransform(src, dst - np.float32([x0, y0]))
        patch = cv2.warpAffine(
            image, matrix, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(mask, np.rint(dst - [x0, y0]).astype(np.int32), 1)
        region = out[y0:y1, x0:x1]
        region[mask > 0] = patch[mask > 0]
    return out


def align_to(
    points_a: np.ndarray, image_b: np.ndarray, points_b: np.ndarray, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """B's image and points moved onto A's by a similarity transform (`size` = A's width,
    height); ValueError when the point sets cannot be aligned."""
    similarity, _ = cv2.estimateAffinePartial2D(points_b, points_a)
    if similarity is None:
        raise ValueError("faces could not be aligned")
    aligned = cv2.warpAffine(image_b, similarity, size, borderMode=cv2.BORDER_REFLECT)
    return aligned, points_b @ similarity[:, :2].T + similarity[:, 2]


def face_morph(
    face_a: np.ndarray,
    points_a: np.ndarray,
    face_b: np.ndarray,
    points_b: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Morph two faces at their mean 68-point shape and paste the morph back into `face_a`.

    B is first aligned to A with a similarity transform; both are warped triangle by triangle
    (Delaunay on the mean shape) and blended with a weight in [0.4, 0.6]; the morph's colour is
    matched to A inside the face hull, and the hull (feathered) is pasted into A.
    """
    height, width = face_a.shape[:2]
    aligned_b, points_b = align_to(points_a, face_b, points_b, (width, height))
    weight = rng.uniform(0.4, 0.6)
    limit = np.array([width - 1, height - 1], np.float32)
    mean_shape = np.clip(weight * points_a + (1 - weight) * points_b, 0, limit)
    triangles = Delaunay(mean_shape).simplices
    warped_a = _warp_triangles(face_a, np.clip(points_a, 0, limit), mean_shape, triangles)
    warped_b = _warp_triangles(aligned_b, np.clip(points_b, 0, limit), mean_shape, triangles)
    morph = weight * warped_a + (1 - weight) * warped_b
    hull = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.rint(mean_shape).astype(np.int32)), 1)
    hull = cv2.erode(hull, np.ones((3, 3), np.uint8))
    inside = hull > 0
    morph[inside] += face_a[inside].mean(0) - morph[inside].mean(0)
    alpha = feather(hull, rng)
    return composite(face_a, morph, alpha), alpha
