"""Per-face, whole-pipeline evaluation of the three compliance verdicts (issue 12).

Why: crop-level reports overstate. The paper scores per *face* (the higher eye score) on crops the
kiosk itself cuts, and an applicant the detector misses never hears the right prompt. So every
photo of every source goes through the kiosk's own code - detector, gates, landmarks, regions
(`kiosk.runtime.vision.analysis.FaceAnalyzer`) and the check plugins' `features()` (CNN score and
landmark measure, `kiosk/runtime/checks/`) - and one row per photo is written, face misses
included. `training/verdicts.py` turns the rows into thresholds, fusion and tables.

Sources and labels (a source is a dataset and, where it has several, a class):
- faces68 (val + test split only: its train split trained the eye and mouth models): eyes from the
  hand landmarks' eye aspect ratio (closed if the smaller EAR <= 0.10, open if >= 0.22), mouth
  from `faces68_measures` (OFIQ's rule on the hand landmarks: open > 0.06, closed < 0.01); clean.
- mouth (val + test): mouths reviewed by eye with CEW's rule (`training/review.py mouth_helen`;
  its own labels call slightly parted lips open: of its 96 open val/test mouths, 12 were closed
  and 14 unclear on review); clean.
- mask (val + test): with_mask = covered (real); without_mask = clean, eyes as reviewed by eye
  with YouTube's rule (`training/review.py eyes_web`: 310 open, 25 closed or lids lowered, 232
  unclear = no label; they used to be assumed open).
- faces68_ytf (all): eyes as reviewed by eye (`training/review.py`: open / closed or lids
  lowered / unclear = no label; the automatic-EAR label was wrong or unsure on most of the faces
  the model flagged); mouths reviewed by eye with CEW's rule (`training/review.py mouth_ytf`:
  344 open, 360 closed, 450 unclear; OFIQ's rule on the automatic points, the label before,
  called 69 of the reviewed closed mouths open); clean.
- eyes_closed_faces (all): eyes closed (CEW); mouth where reviewed by eye (training/review.py);
  clean.
- mask_kaggle_faces (all): with_mask covered, without_mask clean where a review by eye found the
  face uncovered (`training/labels/mask_kaggle_faces_without_mask.csv`: 97 of 106; a hand, a
  camera or no judgeable face: no veil label), mask_weared_incorrect kept as its own class
  (reported, not in the error rates).
- mask_web_types (all): covered.
- synthetic: a mask overlay or cloth (training.masks, as training made them) on the clean val/test
  faces of faces68 and mask/without_mask - reported apart from real masks.

Photos on disk are tight face crops: each gets the grey border training/collect.py gives it, and
the minimum face size is collect's (40 px), so "too small" is a property of the dataset, counted
apart from a detector miss: where the kiosk's detector (which looks for faces from 40 px) finds
none, the same detector looking down to 20 px tells a face too small for the kiosk ("please move
closer") from a miss.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import inspect
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kiosk.config import load_config
from kiosk.contract import models as contract_models
from kiosk.contract.errors import InputError
from kiosk.contract.reasons import FACE_TOO_SMALL, NO_FACE
from kiosk.runtime import models as runtime_models
from kiosk.runtime import vision
from kiosk.runtime.checks.base import ClassifierCheck
from kiosk.runtime.checks.eyes_closed import EyesClosed
from kiosk.runtime.checks.fusion import FusedClassifierCheck
from kiosk.runtime.checks.mouth_open import MouthOpen
from kiosk.runtime.checks.veil import Veil
from kiosk.runtime.imageio import load_rgb
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.analysis import FaceAnalyzer
from kiosk.runtime.vision.detectors import DEFAULT_BACKEND, DETECTORS, make_detector
from kiosk.runtime.vision.landmarks import landmark_predictor
from training import masks, review, splits
from training.collect import COLLECT_MIN_FACE_PX, padded
from training.geometry import EAR_CLOSED, EAR_OPEN, inner_lip_gap, read_pts
from training.paths import MODELS, WORK, data_root

logger = logging.getLogger(__name__)

DETECT_MIN_FACE_PX = 20  # as bench/face_miss.py: smaller faces than the kiosk's detector sees
TRAINED_SPLITS = ("val", "test")  # of the datasets the shipped models were trained on
COLUMNS = (
    "dataset", "path", "group", "split", "source", "variant", "eyes", "mouth", "veil",
    "outcome", "face_px", "eyes_cnn", "ear_min", "mouth_cnn", "mouth_opening", "lip_gap",
    "veil_cnn", "eyes_model", "mouth_model", "veil_model", "face_models", "eyes_cnn_lower",
)  # fmt: skip
# Which model made each row's scores (sha256 prefix from the bundle's manifest): rows copied by
# --reuse keep theirs, and training/verdicts.py refuses to mix models in one verdict.
FINGERPRINT = {"eyes_closed": "eyes_model", "mouth_open": "mouth_model", "veil": "veil_model"}
# The columns a retrained model writes, by the label whose photos `--rerun` runs again.
RERUN_SCORES = {
    "eyes": ("eyes_cnn", "eyes_cnn_lower", "eyes_model"),
    "mouth": ("mouth_cnn", "mouth_model"),
}
# The code that turns a photo into crops (detectors, their box maps, the landmark fit, regions,
# gates) and the crop specs, and the code that turns crops into the three scores (the checks'
# views and fusion, the interpreter wrapper): an edit there changes scores as a new model file
# would, so it is part of the rows' face_models fingerprint (a --reuse across it then fails in
# training/verdicts.py instead of mixing rows silently). The per-model columns stay the model
# files' sha256 prefixes, which the manifest entries are matched against.
CROP_CODE = (Path(vision.__file__).parent, Path(contract_models.__file__))
SCORE_CODE = (
    *(
        Path(inspect.getfile(check))  # the three checks and the base classes they build on
        for check in (EyesClosed, MouthOpen, Veil, ClassifierCheck, FusedClassifierCheck)
    ),
    Path(runtime_models.__file__).parent,
)


def without_stale(row: dict[str, str], rerun: tuple[str, ...]) -> dict[str, str]:
    """A row copied by `--reuse`, its `rerun` models' scores left empty: they came from the old
    model files, and the new ones never scored this photo (no such label)."""
    return {**row, **{column: "" for label in rerun for column in RERUN_SCORES[label]}}


def source_digest(paths: tuple[Path, ...]) -> str:
    """sha256 of the Python sources under `paths` (folders or files): names and bytes."""
    digest = hashlib.sha256()
    for path in paths:
        for source in sorted(path.glob("*.py")) if path.is_dir() else [path]:
            digest.update(f"{source.name}\0".encode() + source.read_bytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Photo:
    """One photo to run and what it should get. Labels: 1 = the failure (closed, open,
    covered), 0 = compliant, None = unknown or not applicable."""

    dataset: str
    path: Path
    source: str
    eyes: int | None = None
    mouth: int | None = None
    veil: int | None = None
    pts: Path | None = None  # hand landmarks, for the synthetic overlay
    synthetic: bool = False  # also make a synthetically covered twin


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def photos(root: Path) -> Iterator[tuple[Photo, str, str]]:
    """(photo, group, split) of every source, in a fixed order."""

    def where(dataset: str, path: Path) -> tuple[str, str]:
        return splits.lookup(dataset, path.relative_to(root / dataset).as_posix())

    measures = {r["image"]: r for r in _csv(root / "faces68_measures" / "measures.csv")}
    ytf_eyes = review.reviewed(review.REVIEWS["eyes"])
    ytf_mouths = review.reviewed(review.REVIEWS["mouth_ytf"])
    cew_mouths = review.reviewed(review.REVIEWS["mouth"])
    web_eyes = review.reviewed(review.REVIEWS["eyes_web"])  # val + test, as evaluated here
    for image, row in sorted(measures.items()):
        path = root / image
        group, split = where("faces68", path)
        if split not in TRAINED_SPLITS:
            continue
        ear = min(float(row["ear_left"]), float(row["ear_right"]))
        eyes = 1 if ear <= EAR_CLOSED else 0 if ear >= EAR_OPEN else None
        mouth = {"open": 1, "closed": 0}.get(row["mouth_label"])
        photo = Photo("faces68", path, "faces68", eyes, mouth, 0, root / row["pts"], True)
        yield photo, group, split
    helen_mouths = review.reviewed(review.REVIEWS["mouth_helen"])
    for row in sorted(_csv(root / "mouth/annotations.csv"), key=lambda r: r["filename"]):
        path = root / "mouth" / "images" / row["filename"]
        group, split = where("mouth", path)
        if split in TRAINED_SPLITS:
            mouth = helen_mouths[f"images/{row['filename']}"]
            yield Photo("mouth", path, "mouth", None, mouth, 0), group, split
    for path in sorted((root / "mask").glob("*/*/*")):
        if path.suffix.lower() not in splits.IMAGE_SUFFIXES:
            continue
        group, split = where("mask", path)
        if split not in TRAINED_SPLITS:
            continue
        covered = path.parent.name == "with_mask"
        source = f"mask/{path.parent.name}"
        eyes = None if covered else web_eyes.get(path.relative_to(root / "mask").as_posix())
        yield (
            Photo("mask", path, source, eyes, None, int(covered), synthetic=not covered),
            group,
            split,
        )
    for row in _csv(root / "faces68_ytf" / "index.csv"):
        path = root / "faces68_ytf" / row["path"]
        eyes, mouth = ytf_eyes.get(row["path"]), ytf_mouths.get(row["path"])
        yield Photo("faces68_ytf", path, "faces68_ytf", eyes, mouth, 0), *where("faces68_ytf", path)
    for path in sorted((root / "eyes_closed_faces" / "closed").glob("*.jpg")):
        mouth = cew_mouths.get(path.relative_to(root / "eyes_closed_faces").as_posix())
        photo = Photo("eyes_closed_faces", path, "eyes_closed_faces", 1, mouth, 0)
        yield photo, *where("eyes_closed_faces", path)
    for row in _csv(root / "mask_kaggle_faces" / "index.csv"):
        path = root / "mask_kaggle_faces" / row["path"]
        veil = review.kaggle_veil(row["path"], row["label"])
        source = f"mask_kaggle_faces/{row['label']}"
        yield (
            Photo("mask_kaggle_faces", path, source, None, None, veil),
            *where("mask_kaggle_faces", path),
        )
    for row in _csv(root / "mask_web_types" / "index.csv"):
        path = root / "mask_web_types" / row["path"]
        photo = Photo("mask_web_types", path, "mask_web_types", None, None, 1)
        yield photo, *where("mask_web_types", path)


class _Recording(ModelRegistry):
    """A registry that remembers which models were read: the rows' fingerprints."""

    def __init__(self, models_dir: Path) -> None:
        super().__init__(models_dir)
        self.read: set[str] = set()

    def verified_bytes(self, name: str) -> bytes:
        self.read.add(name)
        return super().verified_bytes(name)


class Runner:
    """The kiosk's analyzer and classifier checks, built once from the bundle."""

    def __init__(self, detector: str, models_dir: Path, overlays: list[np.ndarray]) -> None:
        config = load_config()
        registry = _Recording(models_dir)
        landmarks = landmark_predictor(config, registry, detector)
        self.analyzer = FaceAnalyzer(
            make_detector(detector, registry, config.detector),
            landmarks,
            min_face_px=COLLECT_MIN_FACE_PX,
            background_face_ratio=getattr(config.gates, "background_face_ratio", 0.5),
        )
        # Where the kiosk's detector finds no face, the same detector looking down to
        # DETECT_MIN_FACE_PX (no fallback) tells a face too small for the kiosk from a miss.
        small = replace(
            config.detector,
            min_face_size=DETECT_MIN_FACE_PX,
            fallback="none",
        )
        self.small_faces = make_detector(detector, registry, small)
        self.eyes, self.mouth, self.veil = EyesClosed(registry), MouthOpen(registry), Veil(registry)
        self.overlays = overlays
        self.rng = np.random.default_rng(7)
        sha = {name: registry.entry(name).sha256 for name in registry.read}
        self.fingerprint = {column: sha[name][:12] for name, column in FINGERPRINT.items()}
        # the detector(s) and landmark model files, the detector's settings, the code that cuts
        # crops with them (box maps, landmark fit, regions) and scores them: every score
        # depends on them
        stack = ",".join(f"{name}:{sha[name]}" for name in sorted(set(sha) - set(FINGERPRINT)))
        stack += f",detector:{config.detector!r},code:{source_digest(CROP_CODE)}"
        stack += f",scoring:{source_digest(SCORE_CODE)}"
        self.fingerprint["face_models"] = hashlib.sha256(stack.encode()).hexdigest()[:12]

    def row(self, rgb: np.ndarray) -> dict[str, object]:
        """Outcome and features of one (padded) photo."""
        analysis = self.analyzer.analyze(rgb)
        if analysis.reason == NO_FACE and (small := self.small_faces.detect(rgb)):
            face_px = round(max(max(f.width, f.height) for f in small), 1)
            return {"outcome": FACE_TOO_SMALL, "face_px": face_px, **self.fingerprint}
        if analysis.reason:
            face_px = "" if analysis.face is None else round(max(analysis.face.width, 1), 1)
            return {"outcome": analysis.reason, "face_px": face_px, **self.fingerprint}
        eyes, mouth = self.eyes.features(analysis), self.mouth.features(analysis)
        landmarks = analysis.landmarks
        return {
            **self.fingerprint,
            "outcome": "ok",
            "face_px": round(max(analysis.face.width, analysis.face.height), 1),
            "eyes_cnn": round(eyes["cnn_score"], 6),
            "ear_min": round(eyes["eye_aspect_ratio"], 5),
            "eyes_cnn_lower": round(eyes["lower_eye_cnn_score"], 6),
            "mouth_cnn": round(mouth["cnn_score"], 6),
            "mouth_opening": round(mouth["mouth_opening"], 5),
            "lip_gap": round(inner_lip_gap(landmarks), 5),
            "veil_cnn": round(self.veil.score(analysis), 6),
            "_points": landmarks.points,
        }

    def cover(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        """A synthetic occluder as training makes them: 70 % mask overlays, 30 % cloth."""
        if self.rng.random() < 0.7:
            overlay = self.overlays[self.rng.integers(len(self.overlays))]
            return masks.apply_mask_overlay(rgb, points, overlay, self.rng)
        return masks.apply_cloth(rgb, points, self.rng)


def collect(
    root: Path,
    detector: str,
    out: Path,
    limit: int | None,
    models_dir: Path = MODELS,
    reuse: Path | None = None,
    rerun: tuple[str, ...] = ("eyes",),
) -> Path:
    """Run every photo (at most `limit` per source) and write one row each to `out`;
    `models_dir` = the bundle to judge (a candidate bundle before it ships). With `reuse` (rows of
    the same detector and the same other models) only photos with a label in `rerun` (eyes,
    mouth) are run again: the rows no figure of the retrained models reads (no such label,
    synthetic twins) are copied from it, without the retrained models' old scores - half the time
    when only the eye model changed."""
    runner = Runner(detector, models_dir, masks.load_overlays(root / "mask_overlays"))
    kept: dict[tuple[str, str], list[dict[str, str]]] = {}
    for old in _csv(reuse) if reuse else []:
        kept.setdefault((old["path"], old["variant"]), []).append(old)
    rows: list[dict[str, object]] = []
    seen: dict[str, int] = {}
    start = time.perf_counter()
    for photo, group, split in photos(root):
        if limit and seen.get(photo.source, 0) >= limit:
            continue
        seen[photo.source] = seen.get(photo.source, 0) + 1
        base = {
            "dataset": photo.dataset,
            "path": photo.path.relative_to(root).as_posix(),
            "group": group,
            "split": split,
            "source": photo.source,
            "variant": "real",
            "eyes": photo.eyes,
            "mouth": photo.mouth,
            "veil": photo.veil,
        }
        old = kept.get((base["path"], "real"), [])
        twins = [without_stale(row, rerun) for row in kept.get((base["path"], "synthetic"), [])]
        labelled = any(getattr(photo, label) is not None for label in rerun)
        if reuse and not labelled:
            # the labels are today's (a review may have changed them), the scores the old run's
            labels = {k: "" if base[k] is None else base[k] for k in ("eyes", "mouth", "veil")}
            rows += [{**without_stale(row, rerun), **labels} for row in old] + twins
            continue
        try:
            rgb, pad = padded(load_rgb(photo.path))
        except InputError as exc:
            rows.append({**base, "outcome": f"unreadable: {exc}"})
            continue
        result = runner.row(rgb)
        points = result.pop("_points", None)
        rows.append({**base, **result})
        if reuse:
            rows += twins
        elif photo.synthetic and split in TRAINED_SPLITS:
            if photo.pts is not None:
                points = read_pts(photo.pts) + pad
            if points is not None:
                covered = runner.row(runner.cover(rgb, points))
                covered.pop("_points", None)
                synthetic = {"source": f"synthetic/{photo.source}", "variant": "synthetic"}
                rows.append(
                    {**base, **synthetic, "eyes": None, "mouth": None, "veil": 1, **covered}
                )
        if sum(seen.values()) % 500 == 0:
            logger.info("%d photos, %.0f s", sum(seen.values()), time.perf_counter() - start)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})
    logger.info("%s: %d rows in %.0f s", out, len(rows), time.perf_counter() - start)
    return out


def faces_file(detector: str, work: Path = WORK) -> Path:
    return work / "verdicts" / f"faces_{detector}.csv"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run every evaluation photo through the kiosk.")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--detector", choices=sorted(DETECTORS), default=DEFAULT_BACKEND)
    parser.add_argument("--limit", type=int, default=None, help="photos per source (tests)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--models-dir", type=Path, default=MODELS, help="bundle to evaluate")
    parser.add_argument(
        "--reuse", type=Path, default=None,
        help="run only photos with a --rerun label again; copy the other rows from this file",
    )  # fmt: skip
    parser.add_argument(
        "--rerun", nargs="+", choices=["eyes", "mouth"], default=["eyes"],
        help="with --reuse: the labels whose photos run again (the retrained models')",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = args.out or faces_file(args.detector)
    collect(
        data_root(args.data_root),
        args.detector,
        out,
        args.limit,
        args.models_dir,
        args.reuse,
        tuple(args.rerun),
    )


if __name__ == "__main__":
    main()
