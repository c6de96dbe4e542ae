"""Synthetic occluders placed with 68-point landmarks, to enlarge the veil/occlusion set.

Two kinds: the RGBA mask cut-outs of `mask_overlays/` (scale from the jaw width, angle from the
jaw line, top edge on the nose bridge, bottom below the chin), recoloured at random so the network
does not learn five exact textures; and a plain or patterned cloth polygon over the lower face
(jaw points up to the nose), standing in for scarves and veils of which no real pictures exist here.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def load_overlays(overlay_dir: Path) -> list[np.ndarray]:
    """Distinct RGBA overlays (byte-identical copies are loaded once)."""
    seen, overlays = set(), []
    for path in sorted(overlay_dir.rglob("*.png")):
        data = path.read_bytes()
        if data in seen:
            continue
        seen.add(data)
        rgba = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if rgba is not None and rgba.ndim == 3 and rgba.shape[2] == 4:
            overlays.append(cv2.cvtColor(rgba, cv2.COLOR_BGRA2RGBA))
    if not overlays:
        raise SystemExit(f"no RGBA overlays found in {overlay_dir}")
    return overlays


def _recolour(rgba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random hue/brightness shift, sometimes a flat colour: keeps the shape, varies the look."""
    rgb = rgba[..., :3].astype(np.float32)
    choice = rng.random()
    if choice < 0.35:
        shade = rgb.mean(axis=2, keepdims=True) / 255.0
        colour = rng.uniform(0, 255, size=3)
        rgb = np.clip(shade * 0.5 + 0.5, 0, 1) * colour
    elif choice < 0.7:
        hsv = cv2.cvtColor(rgba[..., :3], cv2.COLOR_RGB2HSV).astype(np.int32)
        hsv[..., 0] = (hsv[..., 0] + rng.integers(0, 180)) % 180
        rgb = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    rgb = np.clip(rgb * rng.uniform(0.6, 1.2), 0, 255)
    return np.dstack([rgb, rgba[..., 3:].astype(np.float32)])


def apply_mask_overlay(
    rgb: np.ndarray, points: np.ndarray, overlay: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Paste a recoloured mask over nose and mouth of the face with 68 `points`."""
    jaw_left, jaw_right, chin = points[1], points[15], points[8]
    across = jaw_right - jaw_left
    unit = across / max(np.linalg.norm(across), 1e-6)
    top = points[rng.choice([28, 29])]
    half_width = 0.5 * np.linalg.norm(across) * rng.uniform(1.0, 1.12)
    bottom = chin + (chin - top) * rng.uniform(0.02, 0.1)
    src = np.float32([[0, 0], [overlay.shape[1], 0], [0, overlay.shape[0]]])
    dst = np.float32(
        [
            top - unit * half_width,
            top + unit * half_width,
            bottom - unit * half_width,
        ]
    )
    matrix = cv2.getAffineTransform(src, dst)
    layer = cv2.warpAffine(
        _recolour(overlay, rng),
        matrix,
        (rgb.shape[1], rgb.shape[0]),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(0, 0, 0, 0),
    )
    alpha = layer[..., 3:] / 255.0
    return (rgb * (1 - alpha) + layer[..., :3] * alpha).astype(np.uint8)


def apply_cloth(rgb: np.ndarray, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cover the lower face (jaw points 2..14 up to the nose) with a cloth-like patch."""
    nose_level = points[rng.choice([28, 29, 30])]
    jaw = points[2:15]
    chin_drop = (points[8] - nose_level) * rng.uniform(0.05, 0.25)
    polygon = np.vstack(
        [
            points[1] + (points[1] - points[15]) * 0.04,
            jaw
            + chin_drop
            * np.linspace(0, 1, len(jaw))[:, None]
            * np.sin(np.linspace(0, np.pi, len(jaw)))[:, None],
            points[15] + (points[15] - points[1]) * 0.04,
            nose_level + (points[15] - points[1]) * 0.5,
            nose_level - (points[15] - points[1]) * 0.5,
        ]
    ).astype(np.int32)
    mask = np.zeros(rgb.shape[:2], np.uint8)
    cv2.fillPoly(mask, [polygon], 255)
    mask = cv2.GaussianBlur(mask, (5, 5), 0)[..., None] / 255.0
    colour = rng.uniform(0, 255, size=3)
    cloth = np.ones_like(rgb, dtype=np.float32) * colour
    if rng.random() < 0.5:  # folds / pattern
        yy, xx = np.mgrid[: rgb.shape[0], : rgb.shape[1]]
        period = rng.uniform(4, 14)
        stripes = 0.75 + 0.25 * np.sin((xx * rng.uniform(-1, 1) + yy) / period)
        cloth *= stripes[..., None]
    cloth += rng.normal(0, 6, cloth.shape)
    return np.clip(rgb * (1 - mask) + cloth * mask, 0, 255).astype(np.uint8)
