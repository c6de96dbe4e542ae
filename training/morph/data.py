"""Morphs and bona fide faces for the morph check, as the kiosk sees them (its face crops).

    python -m training.morph.data [--limit N]   # -> data/morph/crops_more.npz (four sources)
    python -m training.morph.data --old-sources --out data/morph/crops.npz   # the first build

Faces: `faces68/` (300-W AFW + HELEN, hand-placed 68 points) and `faces68_ytf/` (YouTube Faces,
automatic 68 points), plus, for more identities against the CNN's overfitting, faces without
stored points that get the kiosk's own (its YuNet box, then `landmark_predictor`, as
training.collect runs them): `eyes_closed_faces/` (CEW web portraits, eyes closed) and
`mask/chandrikadeb7/without_mask` (web portraits). `mouth/` stays out: it holds HELEN pictures that
faces68 holds too. Each source keeps its persisted split by photo/person (training/splits/*.csv);
the stored `source` column names it. The old sources come first, so with the same seed their rows
are the ones the 2-source build made (a like-for-like "old" subset).
Per face A (the "criminal"): two bona fide images, plus per blending method one morph with a
face B of *another person from the same dataset and split* (so both contributors of a test
morph, like the test bona fide faces, never appear in training). **All morphs are synthetic.**

Morphs (landmark-based, blend weight 0.3-0.7): B is aligned to A by a similarity transform,
both are warped triangle by triangle to the weighted mean shape, then:
- `feather`: the blended inner face (landmark hull), colour-matched, pasted into A with a
  feathered edge;
- `poisson`: the same inner face put into A by Poisson blending (cv2.seamlessClone);
- `full`: whole images warped (the frame corners and edge midpoints as extra points) and
  blended everywhere, background and hair included.

Then *every* image, bona fide or morph, goes through the same randomly drawn post-processing:
resampling (none / down / down then up), mild Gaussian blur (sigma 0.4-1.0) or none, and a
final save that is lossless or JPEG at quality 95/85/75/60; so "was processed" says nothing.
The kiosk's default face detector (YuNet with the kiosk's settings, as `kiosk forensics` and
the capture path run it) finds the face box on the final image; images where it finds not
exactly one face are counted and dropped.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial import Delaunay

from kiosk.config import Config
from kiosk.runtime.forensics.morph import MIN_FACE_PX, face_crop
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.detectors import DEFAULT_BACKEND, FaceDetector, make_detector
from kiosk.runtime.vision.landmarks import LandmarkPredictor, landmark_predictor
from training.collect import padded
from training.paths import MODELS, WORK, data_root
from training.splits import lookup
from training.tamper.manipulate import _warp_triangles, align_to, composite, jpeg_roundtrip

log = logging.getLogger(__name__)

OUT = WORK / "morph" / "crops_more.npz"
METHODS = ("feather", "poisson", "full")
FINALS = ("lossless", "jpeg95", "jpeg85", "jpeg75", "jpeg60")
RESAMPLES = ("none", "down", "downup")
SOURCES = {"faces68": ("afw", "helen_trainset"), "faces68_ytf": ("ytf",)}  # with .pts files
# without points: the kiosk's landmarks (glob under the dataset folder)
KIOSK_LANDMARKED = {
    "eyes_closed_faces": "closed/*.jpg",
    "mask": "chandrikadeb7/without_mask/*",
}
OLD_SOURCES = tuple(SOURCES)  # the first build's (reports compare on their test rows)


@dataclass(frozen=True)
class Face:
    path: Path
    points: np.ndarray  # (68, 2) float32
    dataset: str
    group: str  # person / photo: never shared across splits
    split: str


def read_pts(path: Path) -> np.ndarray:
    lines = path.read_text().split("{")[1].split("}")[0].split()
    return np.asarray(lines, np.float32).reshape(-1, 2)


def faces(root: Path) -> list[Face]:
    """The faces with stored 68 points (SOURCES), in a fixed order."""
    found = []
    for dataset, folders in SOURCES.items():
        for folder in folders:
            for image in sorted((root / dataset / folder).glob("*.jpg")):
                relative = image.relative_to(root / dataset).as_posix()
                group, split = lookup(dataset, relative)
                found.append(
                    Face(image, read_pts(image.with_suffix(".pts")), dataset, group, split)
                )
    return found


def kiosk_landmarks(
    rgb: np.ndarray, detector: FaceDetector, predictor: LandmarkPredictor
) -> np.ndarray | str:
    """The kiosk's 68 points of the one face in `rgb`, or why there are none ("no_single_face",
    "small_face": the morph data's own drop reasons)."""
    found = detector.detect(rgb)
    if len(found) != 1:
        return "no_single_face"
    x0, y0, x1, y1 = found[0].box
    if max(x1 - x0, y1 - y0) < MIN_FACE_PX:
        return "small_face"
    # the grey border of training.collect: the tight crops' box runs off the picture
    bordered, pad = padded(rgb)
    box = (x0 + pad, y0 + pad, x1 + pad, y1 + pad)
    return predictor.predict(bordered, box).points - pad


def landmarked_faces(
    root: Path, detector: FaceDetector, predictor: LandmarkPredictor, dropped: dict[str, int]
) -> list[Face]:
    """The KIOSK_LANDMARKED faces with the kiosk's points; the others counted in `dropped`
    (keys `landmarks_<reason>`)."""
    found = []
    for dataset, pattern in KIOSK_LANDMARKED.items():
        for image in sorted((root / dataset).glob(pattern)):
            if image.suffix.lower() not in (".jpg", ".jpeg", ".png"):
                continue
            points = kiosk_landmarks(load_rgb(image), detector, predictor)
            if isinstance(points, str):
                key = f"landmarks_{points}"
                dropped[key] = dropped.get(key, 0) + 1
                continue
            group, split = lookup(dataset, image.relative_to(root / dataset).as_posix())
            found.append(Face(image, points.astype(np.float32), dataset, group, split))
        log.info(
            "%s: %d faces with kiosk landmarks", dataset, sum(f.dataset == dataset for f in found)
        )
    return found


def load_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"unreadable image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _frame_points(shape: tuple[int, ...]) -> np.ndarray:
    height, width = shape[:2]
    xs, ys = (0, (width - 1) / 2, width - 1), (0, (height - 1) / 2, height - 1)
    return np.array([(x, y) for x in xs for y in ys if (x, y) != xs[1:2] + ys[1:2]], np.float32)


def morph(
    image_a: np.ndarray,
    points_a: np.ndarray,
    image_b: np.ndarray,
    points_b: np.ndarray,
    method: str,
    rng: np.random.Generator,
) -> tuple[np.ndarray, float]:
    """A morph of A and B in A's frame by `method` (see the module); returns it and B's weight."""
    height, width = image_a.shape[:2]
    aligned_b, points_b = align_to(points_a, image_b, points_b, (width, height))
    weight = float(rng.uniform(0.3, 0.7))  # B's share
    limit = np.array([width - 1, height - 1], np.float32)
    points_a, points_b = np.clip(points_a, 0, limit), np.clip(points_b, 0, limit)
    if method == "full":
        frame = _frame_points(image_a.shape)
        points_a, points_b = np.r_[points_a, frame], np.r_[points_b, frame]
    mean_shape = (1 - weight) * points_a + weight * points_b
    triangles = Delaunay(mean_shape).simplices
    warped_a = _warp_triangles(image_a, points_a, mean_shape, triangles)
    warped_b = _warp_triangles(aligned_b, points_b, mean_shape, triangles)
    blended = (1 - weight) * warped_a + weight * warped_b
    if method == "full":
        return np.clip(np.rint(blended), 0, 255).astype(np.uint8), weight
    hull = np.zeros((height, width), np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.rint(mean_shape[:68]).astype(np.int32)), 1)
    # outside the warped triangles there is nothing: A there, so a feathered edge fades into A
    blended = np.where(hull[..., None] > 0, blended, image_a.astype(np.float32))
    hull = cv2.erode(hull, np.ones((5, 5), np.uint8))
    hull[:2], hull[-2:], hull[:, :2], hull[:, -2:] = 0, 0, 0, 0  # seamlessClone needs a border
    inside = hull > 0
    blended[inside] += image_a[inside].mean(0) - blended[inside].mean(0)
    patch = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    if method == "poisson":
        x, y, w, h = cv2.boundingRect(hull)
        centre = (x + w // 2, y + h // 2)
        return cv2.seamlessClone(patch, image_a, hull * 255, centre, cv2.NORMAL_CLONE), weight
    alpha = np.clip(cv2.GaussianBlur(hull.astype(np.float32), (0, 0), rng.uniform(1.5, 4.0)), 0, 1)
    return composite(image_a, patch, alpha), weight


def post_process(rgb: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, str]]:
    """The same random chain for either class: resample, blur, final save (see the module)."""
    height, width = rgb.shape[:2]
    resample = RESAMPLES[int(rng.integers(len(RESAMPLES)))]
    if resample != "none":
        scale = rng.uniform(0.5, 0.85)
        size = (max(8, round(width * scale)), max(8, round(height * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        if resample == "downup":
            up = (cv2.INTER_LINEAR, cv2.INTER_CUBIC)[int(rng.integers(2))]
            rgb = cv2.resize(rgb, (width, height), interpolation=up)
    blur = rng.random() < 0.3
    if blur:
        rgb = cv2.GaussianBlur(rgb, (0, 0), rng.uniform(0.4, 1.0))
    final = FINALS[int(rng.integers(len(FINALS)))]
    if final != "lossless":
        rgb = jpeg_roundtrip(rgb, int(final[4:]))
    return rgb, {"resample": resample, "blur": "blur" if blur else "sharp", "final": final}


def build(root: Path, limit: int | None, seed: int, more: bool = True) -> dict[str, np.ndarray]:
    """The kiosk's face crop of every bona fide and morph image, labels and provenance (crops,
    not features: a feature change then costs a minute in train.py, not a rebuild). `more`
    adds the KIOSK_LANDMARKED sources after the stored-point ones."""
    config, registry = Config(), ModelRegistry(MODELS)
    detector = make_detector(DEFAULT_BACKEND, registry, config.detector)
    dropped = {"no_single_face": 0, "small_face": 0, "morph_failed": 0}
    everyone = faces(root)
    if more:
        predictor = landmark_predictor(config, registry, DEFAULT_BACKEND)
        everyone += landmarked_faces(root, detector, predictor, dropped)
    rng = np.random.default_rng(seed)
    if limit:
        everyone = [everyone[i] for i in np.sort(rng.choice(len(everyone), limit, replace=False))]
    pools: dict[tuple[str, str], list[Face]] = {}
    for face in everyone:
        pools.setdefault((face.dataset, face.split), []).append(face)
    columns = ("crop", "y", "split", "source", "method", "resample", "blur", "final", "a", "b", "w")
    rows: dict[str, list] = {k: [] for k in columns}
    started = time.time()
    for index, face in enumerate(everyone):
        image_a = load_rgb(face.path)
        others = [f for f in pools[(face.dataset, face.split)] if f.group != face.group]
        # Two bona fide variants (own post-processing each): negatives set the false-alarm rate.
        jobs: list[tuple[str, Face | None]] = [("bona_fide", None), ("bona_fide", None)]
        if others:  # a --limit run can leave a face alone in its split
            jobs += [(m, others[int(rng.integers(len(others)))]) for m in METHODS]
        for method, partner in jobs:
            weight = 0.0
            image = image_a
            if partner is not None:
                try:
                    image, weight = morph(
                        image_a, face.points, load_rgb(partner.path), partner.points, method, rng
                    )
                except (ValueError, cv2.error):
                    dropped["morph_failed"] += 1
                    continue
            image, post = post_process(image, rng)
            found = detector.detect(image)
            if len(found) != 1:
                dropped["no_single_face"] += 1
                continue
            box = found[0].box
            if max(box[2] - box[0], box[3] - box[1]) < MIN_FACE_PX:
                dropped["small_face"] += 1
                continue
            rows["crop"].append(face_crop(image, box))
            rows["y"].append(int(partner is not None))
            rows["split"].append(face.split)
            rows["source"].append(face.dataset)
            rows["method"].append(method)
            rows["a"].append(face.group)
            rows["b"].append(partner.group if partner else "")
            rows["w"].append(weight)
            for key, value in post.items():
                rows[key].append(value)
        if index % 200 == 0:
            log.info("%d/%d faces, %.0f s", index, len(everyone), time.time() - started)
    log.info("dropped %s", dropped)
    arrays = {k: np.asarray(v) for k, v in rows.items()}
    for key, value in dropped.items():
        arrays[f"dropped_{key}"] = np.array(value)
    return arrays


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--limit", type=int, default=None, help="faces (for a quick try)")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--old-sources", action="store_true",
        help="faces68 + faces68_ytf only (the first build), not the kiosk-landmarked sources",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    arrays = build(data_root(args.data_root), args.limit, args.seed, more=not args.old_sources)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    print(f"{len(arrays['y'])} images ({int(arrays['y'].sum())} morphs) -> {args.out}")


if __name__ == "__main__":
    main()
