"""Face-miss per dataset and latency per 640x480 frame of every face detector we can ship or
compare, then what YuNet's boxes change in the landmarks and crops the classifiers were trained on.

    .venv/bin/python bench/face_miss.py [--limit 300] [--seed 7] [--mmod-limit 20] [--detectors ...]

Each photo of a face subset of the shared datasets (a seeded sample of `--limit` per subset)
is padded by 25 % with grey as training/collect.py pads (the crops on disk are tight: detectors
need context). Every photo holds one applicant, so a miss is "no face" or "several faces",
counted after the kiosk's background rule (faces under half the largest one's side are ignored).
dlib's MMOD CNN takes ~1-3 s a photo on one x86 thread: it runs on the first `--mmod-limit`
photos of each sample only. Latency: median over the bench_pipeline frames (640x480, one face of
~150-250 px), one thread. The landmark table runs on faces68's persisted test split (hand
landmarks): NME (mean point error / outer-eye-corner distance) of the stock dlib model and the
shipped MTCNN-trained one from each detector's box, and the IoU of the crop squares cut from them.
`--fit-box-map` fits the BlazeFace -> YuNet box map of the kiosk's fallback on faces68's train
split and reports the boxes' IoU before and after it on the test split.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from bench.frames import kiosk_frames  # noqa: E402
from kiosk.config import DetectorConfig  # noqa: E402
from kiosk.contract.errors import InputError  # noqa: E402
from kiosk.contract.models import EYE, FACE, MOUTH  # noqa: E402
from kiosk.runtime.imageio import load_rgb  # noqa: E402
from kiosk.runtime.models.registry import ModelRegistry  # noqa: E402
from kiosk.runtime.vision.blazeface import (  # noqa: E402
    BLAZEFACE_FULL,
    BLAZEFACE_SHORT,
    BlazeFace,
    BlazeFaceSettings,
    mapped,
)
from kiosk.runtime.vision.detectors import (  # noqa: E402
    YUNET_BOX_MAPS,
    Cascade,
    FaceDetector,
    blazeface_fallback,
    make_detector,
)
from kiosk.runtime.vision.landmarks import LandmarkPredictor, find_model  # noqa: E402
from kiosk.runtime.vision.mtcnn_lite import MtcnnLite, MtcnnSettings  # noqa: E402
from kiosk.runtime.vision.yunet import Yunet, YunetSettings  # noqa: E402
from training import splits  # noqa: E402
from training.collect import padded  # noqa: E402
from training.geometry import read_pts  # noqa: E402
from training.paths import data_root  # noqa: E402
from training.review import several_people  # noqa: E402

Box = tuple[float, float, float, float]
Detect = Callable[[np.ndarray], list[Box]]

SETS = {
    "faces68 (AFW + HELEN)": "faces68/*/*.jpg",
    "mouth (HELEN)": "mouth/images/*.jpg",
    "mask/without_mask": "mask/*/without_mask/*",
    "eyes_closed_faces (CEW)": "eyes_closed_faces/closed/*",
    "faces68_ytf (YouTube)": "faces68_ytf/ytf/*.jpg",
    "mask/with_mask": "mask/*/with_mask/*",
    "mask_kaggle_faces": "mask_kaggle_faces/*/*",
    "mask_web_types (masked web portraits)": "mask_web_types/with_mask/*",
}
MASKED = ("mask/with_mask", "mask_kaggle_faces", "mask_web_types (masked web portraits)")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MIN_FACE = 20  # every detector looks for faces down to 20 px (MTCNN's default, as collect.py)
BACKGROUND_RATIO = 0.5  # the kiosk's default: kiosk/runtime/vision/analysis.py
KIOSK_YUNET_SCORE = DetectorConfig().yunet_score_threshold  # the kiosk default
# skimage's sample images without a person: a detector that finds a face here makes one up.
NO_FACE_SCENES = (
    "coffee", "chelsea", "rocket", "coins", "moon", "page", "horse", "hubble_deep_field",
    "immunohistochemistry", "text", "brick", "grass", "gravel", "colorwheel", "logo", "retina",
    "cell", "clock",
)  # fmt: skip


def _boxes(faces) -> list[Box]:
    return [tuple(float(v) for v in face.box) for face in faces]


def make_detectors(
    names: list[str],
    registry: ModelRegistry,
    yunet_scores: tuple[float, ...] = (),
    candidates: bool = False,
) -> dict[str, Detect]:
    """name -> detect(rgb) -> boxes; the slow and optional ones are imported only if asked for.
    `yunet_scores`: extra kiosk YuNet columns at these score thresholds (default 0.6).
    `candidates`: with blazeface, other second passes run only when kiosk YuNet finds no face."""
    cv2.setNumThreads(1)
    detectors: dict[str, Detect] = {}
    if "mtcnn" in names:
        lite = MtcnnLite(registry, MtcnnSettings(min_face_size=MIN_FACE))
        detectors["MTCNN (ours, LiteRT)"] = lambda rgb: _boxes(lite.detect(rgb))
    if "mtcnn-package" in names:
        import tensorflow as tf

        from training.mtcnn_reference import MtcnnReference

        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        reference = MtcnnReference(min_face_size=MIN_FACE)
        detectors["MTCNN (mtcnn package)"] = lambda rgb: _boxes(reference.detect(rgb))
    if "yunet" in names:
        yunet = Yunet(registry, YunetSettings(min_face_size=MIN_FACE, detect_width=0))
        detectors["YuNet"] = lambda rgb: _boxes(yunet.detect(rgb))
        kiosk = Yunet(registry, YunetSettings(min_face_size=MIN_FACE))
        detectors["YuNet (kiosk: 320 px wide)"] = lambda rgb: _boxes(kiosk.detect(rgb))
        for score in yunet_scores:
            other = Yunet(registry, YunetSettings(min_face_size=MIN_FACE, score_threshold=score))
            detectors[f"YuNet (kiosk, score >= {score})"] = lambda rgb, d=other: _boxes(
                d.detect(rgb)
            )
    if "blazeface" in names:
        short = BlazeFace(
            registry.verified_bytes(BLAZEFACE_SHORT), BlazeFaceSettings(min_face_size=MIN_FACE)
        )
        detectors["BlazeFace short range"] = lambda rgb: _boxes(short.detect(rgb))
        full = BlazeFace(
            registry.verified_bytes(BLAZEFACE_FULL), BlazeFaceSettings(min_face_size=MIN_FACE)
        )
        detectors["BlazeFace full range"] = lambda rgb: _boxes(full.detect(rgb))
        kiosk_yunet = YunetSettings(min_face_size=MIN_FACE, score_threshold=KIOSK_YUNET_SCORE)
        first = Yunet(registry, kiosk_yunet)
        short_fallback = blazeface_fallback(registry, MIN_FACE)
        fallback = Cascade(first, short_fallback)
        detectors[f"YuNet (kiosk, score >= {KIOSK_YUNET_SCORE})"] = lambda rgb: _boxes(
            first.detect(rgb)
        )
        detectors["YuNet (kiosk) + BlazeFace fallback"] = lambda rgb: _boxes(fallback.detect(rgb))
        both = Cascade(
            first, short_fallback, blazeface_fallback(registry, MIN_FACE, model=BLAZEFACE_FULL)
        )
        detectors["YuNet (kiosk) + BlazeFace short, then full"] = lambda rgb: _boxes(
            both.detect(rgb)
        )
        shipped = make_detector(
            "yunet", registry, DetectorConfig(min_face_size=MIN_FACE, fallback="blazeface_all")
        )
        detectors["YuNet (kiosk) + BlazeFace short, full, mirrored short (shipped)"] = lambda rgb: (
            _boxes(shipped.detect(rgb))
        )
        if candidates:
            seconds: dict[str, FaceDetector] = {
                "YuNet 320 px, score >= 0.2": Yunet(
                    registry, YunetSettings(min_face_size=MIN_FACE, score_threshold=0.2)
                ),
                "YuNet whole frame, score >= 0.3": Yunet(
                    registry,
                    YunetSettings(min_face_size=MIN_FACE, score_threshold=0.3, detect_width=0),
                ),
            }
            seconds["BlazeFace full range"] = full
            for label, second in seconds.items():
                chained = Cascade(first, second)
                detectors[f"YuNet (kiosk) + fallback: {label}"] = lambda rgb, d=chained: _boxes(
                    d.detect(rgb)
                )
    if "hog" in names or "mmod" in names:
        import dlib
        import face_recognition_models

        def rects(found) -> list[Box]:
            found = [getattr(r, "rect", r) for r in found]  # MMOD wraps its rectangles
            return [(r.left(), r.top(), r.right(), r.bottom()) for r in found]

        # Upsampled once (face_recognition's default): both find faces of ~80 px natively.
        if "hog" in names:
            hog = dlib.get_frontal_face_detector()
            detectors["dlib HOG"] = lambda rgb: rects(hog(rgb, 1))
        if "mmod" in names:
            weights = Path(face_recognition_models.cnn_face_detector_model_location())
            mmod = dlib.cnn_face_detection_model_v1(str(weights))
            detectors["dlib MMOD CNN"] = lambda rgb: rects(mmod(rgb, 1))
    return detectors


def sample(root: Path, pattern: str, limit: int | None, seed: int = 7) -> list[Path]:
    paths = sorted(p for p in root.glob(pattern) if p.suffix.lower() in IMAGE_SUFFIXES)
    if limit is not None and limit < len(paths):
        paths = sorted(random.Random(seed).sample(paths, limit))
    return paths


def counted(boxes: list[Box]) -> int:
    """Faces the kiosk counts: background faces much smaller than the largest are ignored."""
    if not boxes:
        return 0
    sides = [max(b[2] - b[0], b[3] - b[1]) for b in boxes]
    return sum(side >= BACKGROUND_RATIO * max(sides) for side in sides)


def face_miss(
    root: Path, detectors: dict[str, Detect], limit: int | None, mmod_limit: int, seed: int = 7
) -> dict[str, dict[str, tuple[int, int, int, int]]]:
    """dataset -> detector -> (photos, no face, several faces, several faces on a photo reviewed
    as several people: the right answer, not a miss; training/labels/several_people.csv)."""
    reviewed = several_people()
    table: dict[str, dict[str, tuple[int, int, int, int]]] = {}
    for dataset, pattern in SETS.items():
        tallies = {name: [0, 0, 0, 0] for name in detectors}
        started = time.perf_counter()
        for index, path in enumerate(sample(root, pattern, limit, seed)):
            try:
                rgb, _ = padded(load_rgb(path))
            except InputError:
                continue
            right = path.relative_to(root).as_posix() in reviewed
            for name, detect in detectors.items():
                if name == "dlib MMOD CNN" and index >= mmod_limit:
                    continue
                faces = counted(detect(rgb))
                tally = tallies[name]
                tally[0] += 1
                tally[1] += faces == 0
                tally[2 + right] += faces > 1
        table[dataset] = {name: tuple(t) for name, t in tallies.items()}
        print(f"  {dataset}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return table


def empty_frame() -> np.ndarray:
    """640x480 without a face (blurred noise, as tests/conftest.py's no_face)."""
    noise = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 6)


def latency(
    detectors: dict[str, Detect], count: int, frames: list[np.ndarray]
) -> dict[str, tuple[float, float]]:
    """detector -> (median, p90) ms per frame of `frames` (cycled)."""
    result = {}
    for name, detect in detectors.items():
        detect(frames[0])
        runs = count if name != "dlib MMOD CNN" else 1  # ~15 s a frame
        times = []
        for i in range(runs):
            start = time.perf_counter()
            detect(frames[i % len(frames)])
            times.append((time.perf_counter() - start) * 1000)
        result[name] = (float(np.median(times)), float(np.percentile(times, 90)))
    return result


def false_faces(detectors: dict[str, Detect]) -> dict[str, int]:
    """detector -> how many of NO_FACE_SCENES it finds a face in."""
    import skimage.data

    scenes = []
    for name in NO_FACE_SCENES:
        image = np.asarray(getattr(skimage.data, name)())
        if image.ndim == 2:
            image = np.stack([image] * 3, axis=-1)
        if image.dtype != np.uint8:
            image = (255 * (image.astype(np.float64) / image.max())).astype(np.uint8)
        scenes.append(np.ascontiguousarray(image[..., :3]))
    return {
        name: sum(bool(detect(scene)) for scene in scenes)
        for name, detect in detectors.items()
        if name != "dlib MMOD CNN"
    }


def fit_box_map(root: Path, registry: ModelRegistry, model: str = BLAZEFACE_SHORT) -> list[str]:
    """Lines: the median BlazeFace (`model`: short or full range) -> YuNet box map on faces68's
    train split; on its test split the IoU of the two detectors' boxes and the NME (hand
    landmarks) of the landmark model paired with YuNet started from YuNet's box, BlazeFace's raw
    box, and with the fitted / shipped map."""
    yunet = Yunet(registry, YunetSettings(min_face_size=MIN_FACE, score_threshold=0.4))
    blaze = BlazeFace(registry.verified_bytes(model), BlazeFaceSettings(min_face_size=MIN_FACE))
    entry = registry.entries["shape_predictor_yunet"]
    predictor = LandmarkPredictor(
        registry.models_dir / entry.file,
        box_scale=entry.extra.get("box_scale"),
        data=registry.verified_bytes("shape_predictor_yunet"),
    )
    pairs: dict[str, list[tuple[Box, Box]]] = {"train": [], "test": []}
    faces: list[tuple[np.ndarray, np.ndarray]] = []  # test photos: gray, hand landmarks
    for relative, (_, part) in sorted(splits.load("faces68").items()):
        if part not in pairs:
            continue
        path = root / "faces68" / relative
        rgb, pad = padded(load_rgb(path))
        found_y, found_b = _boxes(yunet.detect(rgb)), _boxes(blaze.detect(rgb))
        if len(found_y) == 1 and len(found_b) == 1:
            pairs[part].append((found_b[0], found_y[0]))
            if part == "test":
                gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
                faces.append((gray, read_pts(path.with_suffix(".pts")) + pad))
    params = tuple(float(round(v, 3)) for v in _fit_box_map(pairs["train"]))
    lines = [
        f"{model}: faces68 train split, {len(pairs['train'])} faces found once by both: "
        f"BlazeFace -> YuNet box map (dx, dy, sx, sy) = {params}",
        f"faces68 test split, {len(pairs['test'])} faces: IoU with YuNet's box (median / p10); "
        "NME of shape_predictor_yunet from the box (mean / median / > 0.08)",
    ]

    def nme(boxes: list[Box]) -> np.ndarray:
        errors = []
        for (gray, truth), box in zip(faces, boxes, strict=True):
            points = predictor.predict(gray, box).points
            scale = float(np.linalg.norm(truth[45] - truth[36]))
            errors.append(float(np.linalg.norm(points - truth, axis=1).mean()) / scale)
        return np.array(errors)

    errors = nme([y for _, y in pairs["test"]])
    lines.append(
        f"  YuNet's box: NME {errors.mean():.4f} / {np.median(errors):.4f} / {(errors > 0.08).sum()}"
    )
    for label, box_map in (
        ("raw", None),
        ("fitted map", params),
        ("shipped map", YUNET_BOX_MAPS[model]),
    ):
        boxes = [b if box_map is None else mapped(b, box_map) for b, _ in pairs["test"]]
        ious = [_iou(b, y) for b, (_, y) in zip(boxes, pairs["test"], strict=True)]
        errors = nme(boxes)
        lines.append(
            f"  BlazeFace {label}: IoU {np.median(ious):.3f} / {np.percentile(ious, 10):.3f}; "
            f"NME {errors.mean():.4f} / {np.median(errors):.4f} / {(errors > 0.08).sum()}"
        )
    return lines


def _iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _square(center: np.ndarray, side: float) -> Box:
    half = side / 2
    return (center[0] - half, center[1] - half, center[0] + half, center[1] + half)


def crop_squares(points: np.ndarray, box: Box) -> dict[str, Box]:
    """The classifier crops as axis-aligned squares (kiosk/runtime/vision/regions.py's centres
    and sides; the common roll rotation is left out)."""

    def region(group: slice, first: int, second: int, margin: float) -> Box:
        side = margin * max(float(np.linalg.norm(points[second] - points[first])), 4.0)
        return _square(points[group].mean(axis=0), side)

    x0, y0, x1, y1 = box
    face_side = FACE.margin * max(x1 - x0, y1 - y0)
    return {
        "right eye": region(slice(36, 42), 36, 39, EYE.margin),
        "left eye": region(slice(42, 48), 42, 45, EYE.margin),
        "mouth": region(slice(48, 68), 48, 54, MOUTH.margin),
        "face": _square(np.array([(x0 + x1) / 2, (y0 + y1) / 2]), face_side),
    }


def _fit_box_map(pairs: list[tuple[Box, Box]]) -> np.ndarray:
    """Median (dx, dy, sx, sy): the second box's centre offset and size in units of the first
    box (YuNet, MTCNN for the landmark table)."""
    rows = []
    for yunet, mtcnn in pairs:
        yw, yh = yunet[2] - yunet[0], yunet[3] - yunet[1]
        rows.append(
            [
                ((mtcnn[0] + mtcnn[2]) - (yunet[0] + yunet[2])) / 2 / yw,
                ((mtcnn[1] + mtcnn[3]) - (yunet[1] + yunet[3])) / 2 / yh,
                (mtcnn[2] - mtcnn[0]) / yw,
                (mtcnn[3] - mtcnn[1]) / yh,
            ]
        )
    return np.median(np.array(rows), axis=0)


def _mapped(box: Box, params: np.ndarray) -> Box:
    w, h = box[2] - box[0], box[3] - box[1]
    cx, cy = (box[0] + box[2]) / 2 + params[0] * w, (box[1] + box[3]) / 2 + params[1] * h
    return (
        cx - params[2] * w / 2,
        cy - params[3] * h / 2,
        cx + params[2] * w / 2,
        cy + params[3] * h / 2,
    )


def _matched(boxes: list[Box], truth: Box) -> Box | None:
    best = max(boxes, key=lambda b: _iou(b, truth), default=None)
    return best if best is not None and _iou(best, truth) > 0.3 else None


def landmark_shift(root: Path, registry: ModelRegistry, limit: int | None) -> list[str]:
    """Markdown lines: NME per (detector box, landmark model) and crop IoU vs MTCNN's path."""
    mtcnn = MtcnnLite(registry, MtcnnSettings(min_face_size=MIN_FACE))
    yunet = Yunet(registry, YunetSettings(min_face_size=MIN_FACE, detect_width=0))
    split = splits.load("faces68")
    photos: dict[str, list[tuple[np.ndarray, np.ndarray, Box, Box]]] = {"train": [], "test": []}
    for relative, (_, part) in sorted(split.items()):
        if part not in photos or (part == "train" and len(photos["train"]) >= 150):
            continue
        path = root / "faces68" / relative
        rgb, pad = padded(load_rgb(path))
        truth = read_pts(path.with_suffix(".pts")) + pad
        truth_box = (*truth.min(axis=0), *truth.max(axis=0))
        found = (
            _matched(_boxes(mtcnn.detect(rgb)), truth_box),
            _matched(_boxes(yunet.detect(rgb)), truth_box),
        )
        if None not in found:
            photos[part].append((cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), truth, *found))
    params = _fit_box_map([(y, m) for _, _, m, y in photos["train"]])
    tested = photos["test"][:limit]
    predictors = {
        "stock dlib (kiosk default)": LandmarkPredictor(find_model()),
        "shape_predictor_mtcnn (shipped)": LandmarkPredictor(
            REPO / "models" / "shape_predictor_mtcnn.npz"
        ),
    }
    boxes = {
        "MTCNN": lambda m, y: m,
        "YuNet": lambda m, y: y,
        "YuNet mapped to MTCNN geometry": lambda m, y: _mapped(y, params),
    }
    lines = [
        f"faces68 test split: {len(tested)} photos found by both detectors (box map fitted on "
        f"{len(photos['train'])} train photos: centre offset {params[0]:+.3f} w, {params[1]:+.3f} h; "
        f"size {params[2]:.3f} w x {params[3]:.3f} h)\n",
        "| box | landmark model | NME mean | NME median | > 0.08 | eye crop IoU vs MTCNN path | "
        "mouth crop IoU | face crop IoU | crop IoU p5 (worst crop) | eye+mouth crop IoU vs "
        "hand-landmark crops |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model_name, predictor in predictors.items():
        reference = [crop_squares(predictor.predict(gray, m).points, m) for gray, _, m, _ in tested]
        for box_name, choose in boxes.items():
            errors, ious = [], {"eye": [], "mouth": [], "face": [], "worst": [], "truth": []}
            for (gray, truth, m, y), ref in zip(tested, reference, strict=True):
                box = choose(m, y)
                points = predictor.predict(gray, box).points
                scale = float(np.linalg.norm(truth[45] - truth[36]))
                errors.append(float(np.linalg.norm(points - truth, axis=1).mean()) / scale)
                squares = crop_squares(points, box)
                each = {k: _iou(squares[k], ref[k]) for k in squares}
                ious["eye"] += [each["right eye"], each["left eye"]]
                ious["mouth"].append(each["mouth"])
                ious["face"].append(each["face"])
                ious["worst"].append(min(each.values()))
                hand = crop_squares(truth, box)
                ious["truth"] += [
                    _iou(squares[k], hand[k]) for k in ("right eye", "left eye", "mouth")
                ]
            errors_a = np.array(errors)
            lines.append(
                f"| {box_name} | {model_name} | {errors_a.mean():.4f} | {np.median(errors_a):.4f} | "
                f"{int((errors_a > 0.08).sum())} | {np.mean(ious['eye']):.3f} | "
                f"{np.mean(ious['mouth']):.3f} | {np.mean(ious['face']):.3f} | "
                f"{np.percentile(ious['worst'], 5):.3f} | {np.mean(ious['truth']):.3f} |"
            )
    lines += [
        "",
        *decision_flips(tested, predictors["stock dlib (kiosk default)"], registry, params),
    ]
    return lines


def decision_flips(
    tested, predictor: LandmarkPredictor, registry: ModelRegistry, params
) -> list[str]:
    """Markdown lines: how often each shipped classifier's verdict differs when the crops come
    from YuNet's box instead of MTCNN's (kiosk default landmark model, shipped thresholds)."""
    from kiosk.runtime.checks import PLUGINS
    from kiosk.runtime.vision.analysis import Analysis
    from kiosk.runtime.vision.regions import extract_regions
    from kiosk.runtime.vision.types import Face

    checks = [factory(registry, 1) for factory in PLUGINS.values()]

    def results(gray: np.ndarray, box: Box) -> list:
        landmarks = predictor.predict(gray, box)
        face = Face(box, 1.0, np.zeros((5, 2), np.float32))
        analysis = Analysis([face], face, landmarks, extract_regions(gray, landmarks, box), None)
        return [check(analysis) for check in checks]

    lines = [
        "| box vs MTCNN's | "
        + " | ".join(f"{c.name}: verdict flips, mean abs score change" for c in checks)
        + " |",
        "|---|" + "---|" * len(checks),
    ]
    reference = [results(gray, m) for gray, _, m, _ in tested]
    for box_name, choose in (
        ("YuNet", lambda m, y: y),
        ("YuNet mapped", lambda m, y: _mapped(y, params)),
    ):
        flips, deltas = np.zeros(len(checks), int), [[] for _ in checks]
        for (gray, _, m, y), ref in zip(tested, reference, strict=True):
            for i, (mine, theirs) in enumerate(zip(results(gray, choose(m, y)), ref, strict=True)):
                flips[i] += mine.failed != theirs.failed
                deltas[i].append(abs(mine.score - theirs.score))
        cells = [
            f"{f} / {len(tested)} ({100 * f / len(tested):.1f} %), {np.mean(d):.3f}"
            for f, d in zip(flips, deltas, strict=True)
        ]
        lines.append(f"| {box_name} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="default: IDKIOSK_DATA_ROOT")
    parser.add_argument("--limit", type=int, default=300, help="photos per dataset (seeded sample)")
    parser.add_argument("--seed", type=int, default=7, help="pick on one seed, report on another")
    parser.add_argument("--mmod-limit", type=int, default=20, help="photos per dataset for MMOD")
    parser.add_argument("--frames", type=int, default=30, help="640x480 frames for the latency")
    parser.add_argument(
        "--detectors",
        nargs="+",
        default=["mtcnn", "mtcnn-package", "yunet", "blazeface", "hog", "mmod"],
        choices=["mtcnn", "mtcnn-package", "yunet", "blazeface", "hog", "mmod"],
    )
    parser.add_argument("--fit-box-map", action="store_true", help="only the fallback's box map")
    parser.add_argument(
        "--fallback-candidates",
        action="store_true",
        help="with blazeface: other second passes (lower YuNet score, whole frame, full range)",
    )
    parser.add_argument("--skip-landmarks", action="store_true")
    parser.add_argument("--only-landmarks", action="store_true")
    parser.add_argument(
        "--yunet-scores", nargs="*", type=float, default=[], help="extra YuNet score thresholds"
    )
    args = parser.parse_args()
    root = data_root(args.data_root)
    registry = ModelRegistry(REPO / "models")
    if args.only_landmarks:
        print("\n".join(landmark_shift(root, registry, None)))
        return
    if args.fit_box_map:
        for model in (BLAZEFACE_SHORT, BLAZEFACE_FULL):
            print("\n".join(fit_box_map(root, registry, model)))
        return
    detectors = make_detectors(
        args.detectors,
        registry,
        tuple(args.yunet_scores),
        args.fallback_candidates,
    )
    table = face_miss(root, detectors, args.limit, args.mmod_limit, args.seed)
    times = latency(detectors, args.frames, kiosk_frames())
    empty = latency(detectors, args.frames, [empty_frame()])
    made_up = false_faces(detectors)

    names = list(detectors)
    print(
        f"Face-miss (no face + several faces), % of photos; sample {args.limit} per dataset, "
        f"seed {args.seed}. [k]: k photos reviewed as several people refused as several "
        "faces: right, not counted as misses (the 'every several a miss' rows count them)\n"
    )
    print("| dataset | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for dataset, row in table.items():
        cells = [
            f"{100 * (none + several) / max(n, 1):.1f} ({none}+{several}/{n}) [{right}]"
            for n, none, several, right in row.values()
        ]
        print(f"| {dataset} | " + " | ".join(cells) + " |")
    unmasked = [d for d in table if d not in MASKED]
    for label, chosen, raw in (
        ("real faces, unmasked", unmasked, False),
        ("masked", MASKED, False),
        ("masked, every several a miss", MASKED, True),
    ):
        cells = []
        for name in names:
            n = sum(table[d][name][0] for d in chosen)
            missed = sum(sum(table[d][name][1 : 4 if raw else 3]) for d in chosen)
            cells.append(f"**{100 * missed / max(n, 1):.1f}** ({missed}/{n})")
        print(f"| **all {label}** | " + " | ".join(cells) + " |")
    print(
        "| latency ms / 640x480 frame, 1 thread (median / p90) | "
        + " | ".join(f"{times[name][0]:.1f} / {times[name][1]:.1f}" for name in names)
        + " |"
    )
    print(
        "| latency ms / 640x480 frame without a face (median / p90) | "
        + " | ".join(f"{empty[name][0]:.1f} / {empty[name][1]:.1f}" for name in names)
        + " |"
    )
    print(
        f"| scenes without a person where a face is found (of {len(NO_FACE_SCENES)}) | "
        + " | ".join(str(made_up.get(name, "-")) for name in names)
        + " |"
    )
    if not args.skip_landmarks:
        print("\nLandmarks and crops from each detector's box\n")
        print("\n".join(landmark_shift(root, registry, None)))


if __name__ == "__main__":
    main()
