"""Data collection: the kiosk pipeline reading photos from disk, minus the checks.

Each photo goes through `kiosk.runtime.vision.analysis.FaceAnalyzer` (the kiosk's detector,
`--detector`, with the landmark model the kiosk pairs with it, region crops). Photos the pipeline
rejects are dropped and logged with the reason, as the kiosk would.
Outputs one `.npz` per task in the work dir (crops, labels, split, group, source, and the
landmark-geometry baseline feature of every crop) and `drops.csv`.

Labels:
- eyes: crops the pipeline cuts from whole faces - `faces68/` labelled from the *manual* 300-W
  landmarks (eye aspect ratio <= 0.10 closed, >= 0.22 open, in between left out as ambiguous),
  `eyes_closed_faces/` (CEW: both eyes closed) and `mask/without_mask` (both eyes open) - plus
  the `eyes/` close-ups (resized to 56x56) as extra. `faces68_ytf/` is left out on purpose: the
  verdict report (training/verdicts.py) tests on all of it, a source the model never saw;
- mouth: `mouth/` face crops with their hand-made mouth_open labels, plus mouth crops from
  `faces68/` labelled from the manual landmarks (inner-lip gap over eye-to-chin distance <= 0.02
  closed, >= 0.10 open, in between left out); reports keep the two sources apart;
- veil: `mask/` with_mask / without_mask, plus every clean face (faces68, mouth, without_mask)
  once clean (negative) and once with a synthetic occluder (positive; see `training.masks`).
  With `--kaggle-veil` (a trial) also `mask_kaggle_faces/`'s crowd crops: with_mask covered, and
  without_mask where reviewed uncovered (`training.review.kaggle_veil`) clean and occluded; the
  verdict then no longer has Kaggle as an unseen source (training/verdicts.py).

Splits are the persisted ones of `training.splits` (by HELEN photo id across faces68 and mouth,
else the file), so a photo and all crops or synthetic variants made from it land in one split.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from kiosk.config import load_config
from kiosk.contract.errors import InputError
from kiosk.contract.models import EYE
from kiosk.runtime.imageio import load_rgb
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.analysis import Analysis, FaceAnalyzer
from kiosk.runtime.vision.detectors import DEFAULT_BACKEND, DETECTORS, make_detector
from kiosk.runtime.vision.landmarks import landmark_predictor
from kiosk.runtime.vision.regions import Regions
from kiosk.runtime.vision.types import Landmarks
from training import masks, review, splits
from training.geometry import (
    EAR_CLOSED,
    EAR_OPEN,
    OFIQ_CLOSED,
    OFIQ_OPEN,
    eye_aspect_ratio,
    mouth_opening,
    ofiq_mouth_opening,
    read_pts,
)
from training.paths import MODELS, WORK, data_root

TASK_NAMES = ("eyes", "mouth", "veil")
PAD_FRACTION = 0.25  # face crops on disk are tight; a grey border gives MTCNN the context it needs


def padded(rgb: np.ndarray) -> tuple[np.ndarray, int]:
    """`rgb` inside a grey border of PAD_FRACTION of its longer side, and the border's width:
    how every training and bench step shows a tight crop to the detector and landmark model."""
    pad = int(PAD_FRACTION * max(rgb.shape[:2]))
    return cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(127,) * 3), pad


COLLECT_MIN_FACE_PX = 40  # dataset faces are smaller than a kiosk's; crops are rescaled anyway


def kiosk_analyzer(detector: str = DEFAULT_BACKEND) -> FaceAnalyzer:
    """The kiosk's detector `detector` and its landmark model from the bundle in models/, with
    faces from COLLECT_MIN_FACE_PX: how training cuts its crops and review sheets."""
    config, registry = load_config(), ModelRegistry(MODELS)
    return FaceAnalyzer(
        make_detector(detector, registry, config.detector),
        landmark_predictor(config, registry, detector),
        min_face_px=COLLECT_MIN_FACE_PX,
    )


@dataclass
class TaskData:
    """Growing columns of one task's dataset."""

    images: list[np.ndarray] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)

    def add(
        self, image: np.ndarray, label: int, where: tuple[str, str], source: str, baseline: float
    ) -> None:
        """`where` = (group, split) of the photo the crop comes from (`training.splits`)."""
        self.images.append(image)
        self.labels.append(label)
        self.groups.append(where[0])
        self.splits.append(where[1])
        self.sources.append(source)
        self.baseline.append(baseline)

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            images=np.stack(self.images),
            labels=np.array(self.labels, np.int8),
            groups=np.array(self.groups),
            splits=np.array(self.splits),
            sources=np.array(self.sources),
            baseline=np.array(self.baseline, np.float32),
        )


# Switches that change the training data, each a trial a report describes (none is what `make`
# collects): name (the `--name` flag with dashes) -> what it does.
TRIALS = {
    "cew_mouths": "add CEW's mouths reviewed by eye to the mouth crops (the shipped mouth model "
    "never saw them; its verdict then no longer has CEW as an unseen source)",
    "ytf_mouths": "add YouTube faces' mouths reviewed by eye to the mouth crops (the shipped "
    "mouth model never saw them)",
    "kaggle_veil": "add mask_kaggle_faces' crowd crops to the veil crops (the shipped veil model "
    "never saw them; its verdict then no longer has Kaggle as an unseen source)",
    "helen_review": "label mouth/'s mouths by their review by eye, unclear ones left out (the "
    "shipped mouth model was trained on the dataset's own labels)",
    "helen_ofiq_agree": "keep a mouth/ crop only where its label agrees with OFIQ's rule on its "
    "own points",
    "faces68_mouth_review": "label faces68's mouths between OFIQ's cut-offs by their review by "
    "eye (the shipped mouth model left them out)",
    "faces68_eye_review": "label faces68's eyes between the landmark cut-offs by their face's "
    "review by eye (the shipped eye model left them out)",
}


class Collector:
    def __init__(
        self,
        root: Path,
        limit: int | None,
        seed: int,
        wanted: tuple[str, ...] = TASK_NAMES,
        detector: str = DEFAULT_BACKEND,
        trials: frozenset[str] = frozenset(),
    ) -> None:
        unknown = trials - TRIALS.keys()
        if unknown:
            raise ValueError(f"unknown trials: {sorted(unknown)}")
        self.root = root
        self.trials = trials
        self.limit = limit
        self.wanted = set(wanted)
        self.rng = np.random.default_rng(seed)
        self.analyzer = kiosk_analyzer(detector)
        self.overlays = masks.load_overlays(root / "mask_overlays")
        self.tasks = {name: TaskData() for name in TASK_NAMES if name in self.wanted}
        self.drops: list[tuple[str, str, str]] = []
        self.seen: Counter[str] = Counter()

    def _where(self, dataset: str, path: Path) -> tuple[str, str]:
        """(group, split) of a photo from the persisted split of its dataset."""
        return splits.lookup(dataset, path.relative_to(self.root / dataset).as_posix())

    def _files(self, pattern: str) -> list[Path]:
        files = sorted(self.root.glob(pattern))
        return files[: self.limit] if self.limit else files

    def _analyze(self, rgb: np.ndarray, dataset: str, path: Path, variant: str = ""):
        self.seen[dataset + variant] += 1
        analysis = self.analyzer.analyze(rgb)
        if analysis.reason:
            self.drops.append(
                (dataset + variant, str(path.relative_to(self.root)), analysis.reason)
            )
            return None
        return analysis

    def _load_padded(self, path: Path, dataset: str) -> tuple[np.ndarray, int] | None:
        try:
            rgb = load_rgb(path)
        except InputError as exc:
            self.drops.append((dataset, str(path.relative_to(self.root)), f"unreadable: {exc}"))
            return None
        return padded(rgb)

    def _analysed_photos(
        self, pattern: str, dataset: str, keep: Callable[[Path], bool] = lambda _: True
    ) -> Iterator[tuple[Path, np.ndarray, int, Analysis]]:
        """(path, padded RGB, pad, analysis) of the photos that pass the kiosk's gates; the
        others are logged in the drop list with their reason."""
        for path in self._files(pattern):
            if not keep(path):
                continue
            loaded = self._load_padded(path, dataset)
            if loaded is None:
                continue
            rgb, pad = loaded
            analysis = self._analyze(rgb, dataset, path)
            if analysis is not None:
                yield path, rgb, pad, analysis

    def _veil_pair(
        self,
        rgb: np.ndarray,
        points: np.ndarray,
        regions: Regions,
        where: tuple[str, str],
        dataset: str,
        path: Path,
    ) -> None:
        """The clean face as a negative and a synthetic occluder on it as a positive."""
        if "veil" not in self.wanted:
            return
        veil = self.tasks["veil"]
        veil.add(regions.face, 0, where, f"{dataset}/clean", np.nan)
        if self.rng.random() < 0.7:
            overlay = self.overlays[self.rng.integers(len(self.overlays))]
            occluded, kind = masks.apply_mask_overlay(rgb, points, overlay, self.rng), "mask"
        else:
            occluded, kind = masks.apply_cloth(rgb, points, self.rng), "cloth"
        analysis = self._analyze(occluded, dataset, path, variant=f"+synthetic_{kind}")
        if analysis is not None:
            veil.add(analysis.regions.face, 1, where, f"{dataset}/synthetic_{kind}", np.nan)

    def steps(self) -> list[Callable[[], None]]:
        """The collection steps the wanted tasks need, in a fixed order."""
        needs = {
            self.eye_closeups: {"eyes"},
            self.faces68: {"eyes", "mouth", "veil"},
            self.closed_faces: {"eyes", "mouth"} if "cew_mouths" in self.trials else {"eyes"},
            self.mouth: {"mouth", "veil"},
            self.mask: {"eyes", "veil"},
            self.kaggle_faces: {"veil"} if "kaggle_veil" in self.trials else set(),
            self.youtube_mouths: {"mouth"} if "ytf_mouths" in self.trials else set(),
        }
        return [step for step, tasks in needs.items() if tasks & self.wanted]

    def _both_eyes(
        self, analysis: Analysis, label: int, where: tuple[str, str], source: str
    ) -> None:
        """Both pipeline eye crops of a face whose eye state is known for the whole face."""
        for name, eye_slice in (("right_eye", slice(36, 42)), ("left_eye", slice(42, 48))):
            baseline = -eye_aspect_ratio(analysis.landmarks.points[eye_slice])
            self.tasks["eyes"].add(getattr(analysis.regions, name), label, where, source, baseline)

    def eye_closeups(self) -> None:
        for path in self._files("eyes/*/*.png"):
            gray = cv2.cvtColor(load_rgb(path), cv2.COLOR_RGB2GRAY)
            crop = cv2.resize(gray, (EYE.size, EYE.size), interpolation=cv2.INTER_AREA)
            label = int(path.parent.name == "closed")
            self.tasks["eyes"].add(crop, label, self._where("eyes", path), "eyes/closeup", np.nan)

    def faces68(self) -> None:
        """faces68: eyes and mouths labelled from the hand landmarks; mouths by
        `faces68_measures`' label (OFIQ's widest inner-lip gap: open > 0.06, closed < 0.01,
        ambiguous left out), the rule the verdicts judge them by (training/evaluate_faces.py).
        The mouth model before this one learned a mean-gap rule that left out the 0.06-0.10
        band (reports/verdicts/mouth_ofiq_trial.md)."""
        with open(self.root / "faces68_measures" / "measures.csv", newline="") as handle:
            ofiq = {
                row["image"]: {"open": 1, "closed": 0}.get(row["mouth_label"])
                for row in csv.DictReader(handle)
            }
        # with `faces68_eye_review` (a trial), an eye between the cut-offs takes its face's
        # review by eye where there is one (training/review.py eyes_faces68: train and val)
        reviewed: dict[str, int | None] = {}
        if "faces68_eye_review" in self.trials:
            reviewed = review.reviewed(review.REVIEWS["eyes_faces68"])
        # with `faces68_mouth_review` (a trial), a mouth between OFIQ's cut-offs takes its
        # review by eye (training/review.py mouth_faces68_train; val and test: mouth_faces68)
        mouths_by_eye: dict[str, int | None] = {}
        if "faces68_mouth_review" in self.trials:
            for part in ("mouth_faces68", "mouth_faces68_train"):
                mouths_by_eye |= review.reviewed(review.REVIEWS[part])
        for path, rgb, pad, analysis in self._analysed_photos("faces68/*/*.jpg", "faces68"):
            truth = read_pts(path.with_suffix(".pts")) + pad
            where = self._where("faces68", path)
            photo = path.relative_to(self.root / "faces68").as_posix()
            face = reviewed.get(photo)
            for name, eye_slice in (("right_eye", slice(36, 42)), ("left_eye", slice(42, 48))):
                ear_true = eye_aspect_ratio(truth[eye_slice])
                label = 1 if ear_true <= EAR_CLOSED else 0 if ear_true >= EAR_OPEN else face
                if "eyes" not in self.wanted or label is None:
                    continue
                baseline = -eye_aspect_ratio(analysis.landmarks.points[eye_slice])
                self.tasks["eyes"].add(
                    getattr(analysis.regions, name),
                    label,
                    where,
                    "faces68/pipeline_eye",
                    baseline,
                )
            mouth = ofiq[path.relative_to(self.root).as_posix()]
            if mouth is None:
                mouth = mouths_by_eye.get(photo)
            if "mouth" in self.wanted and mouth is not None:
                self.tasks["mouth"].add(
                    analysis.regions.mouth,
                    mouth,
                    where,
                    "faces68/pipeline_mouth",
                    mouth_opening(analysis.landmarks),
                )
            self._veil_pair(rgb, truth, analysis.regions, where, "faces68", path)

    def closed_faces(self) -> None:
        """CEW: real faces with both eyes closed (the only closed-eye faces in numbers), and, with
        `cew_mouths`, their mouths where reviewed by eye (training/review.py: many smile with
        closed lips). Off by default: the shipped mouth model never saw them, which keeps CEW an
        unseen hand-reviewed source in its verdict (training/verdicts.py)."""
        mouths = review.reviewed(review.REVIEWS["mouth"]) if "cew_mouths" in self.trials else {}
        photos = self._analysed_photos("eyes_closed_faces/closed/*.jpg", "eyes_closed_faces")
        for path, _, _, analysis in photos:
            where = self._where("eyes_closed_faces", path)
            if "eyes" in self.wanted:
                self._both_eyes(analysis, 1, where, "eyes_closed_faces/pipeline_eye")
            mouth = mouths.get(path.relative_to(self.root / "eyes_closed_faces").as_posix())
            if "mouth" in self.wanted and mouth is not None:
                self.tasks["mouth"].add(
                    analysis.regions.mouth,
                    mouth,
                    where,
                    "eyes_closed_faces/pipeline_mouth",
                    mouth_opening(analysis.landmarks),
                )

    def youtube_mouths(self) -> None:
        """With `ytf_mouths` (a trial): YouTube faces' mouths reviewed by eye (training/review.py
        mouth_ytf), video frames, where the mouth CNN trained on still photos misses most
        (docs/verdicts.md). Off by default: the shipped mouth model never saw them."""
        folder = self.root / "faces68_ytf"
        mouths = review.reviewed(review.REVIEWS["mouth_ytf"])
        photos = self._analysed_photos(
            "faces68_ytf/ytf/*.jpg",
            "faces68_ytf",
            lambda p: mouths.get(p.relative_to(folder).as_posix()) is not None,
        )
        for path, _, _, analysis in photos:
            self.tasks["mouth"].add(
                analysis.regions.mouth,
                mouths[path.relative_to(folder).as_posix()],
                self._where("faces68_ytf", path),
                "faces68_ytf/pipeline_mouth",
                mouth_opening(analysis.landmarks),
            )

    def mouth(self) -> None:
        """HELEN mouths. Its own labels call slightly parted lips open, the rule no other
        source follows; with `helen_review`, every split's mouth label is its review by eye
        instead and an unclear mouth gives no crop (its veil pair is kept). Off by default: the
        shipped mouth model was trained on the dataset's labels, and a model trained on the
        reviews did not beat it (reports/verdicts/mouth_review_trial.md)."""
        with open(self.root / "mouth" / "annotations.csv") as handle:
            labels: dict[str, int | None] = {
                row["filename"]: self._helen_label(row) for row in csv.DictReader(handle)
            }
        for part in ("mouth_helen", "mouth_helen_train") if "helen_review" in self.trials else ():
            reviews = review.reviewed(review.REVIEWS[part])
            labels |= {path.removeprefix("images/"): state for path, state in reviews.items()}
        photos = self._analysed_photos("mouth/images/*.jpg", "mouth", lambda p: p.name in labels)
        for path, rgb, _, analysis in photos:
            where = self._where("mouth", path)
            # `--tasks veil` reads these photos for the veil alone
            if "mouth" in self.wanted and labels[path.name] is not None:
                self.tasks["mouth"].add(
                    analysis.regions.mouth,
                    labels[path.name],
                    where,
                    "mouth/pipeline_mouth",
                    mouth_opening(analysis.landmarks),
                )
            self._veil_pair(rgb, analysis.landmarks.points, analysis.regions, where, "mouth", path)

    def _helen_label(self, row: dict[str, str]) -> int | None:
        """A `mouth/` row's label; with `helen_ofiq_agree` (a trial) only where OFIQ's rule on
        the row's own points (dlib's) agrees with it (open > 0.06, closed < 0.01), else None."""
        label = int(row["mouth_open"])
        if "helen_ofiq_agree" not in self.trials:
            return label
        points = np.array(row["points"].split(","), float).reshape(68, 2)
        opening = ofiq_mouth_opening(Landmarks(points))
        return label if (opening > OFIQ_OPEN if label else opening < OFIQ_CLOSED) else None

    def mask(self) -> None:
        """mask/: real masks for the veil; the faces without one give the veil's clean/occluded
        pairs and eye crops labelled by their review by eye (every split; closed or lowered lids
        = closed, unclear faces give no eye crop). The eye model before this one took all of
        them as open (reports/verdicts/eyes_web_trial.md)."""
        eyes: dict[str, int | None] = {}
        for part in ("eyes_web", "eyes_web_train"):
            eyes |= review.reviewed(review.REVIEWS[part])
        # Eyes alone need only the open faces: a mask says nothing about the eyes.
        pattern = "mask/*/*/*" if "veil" in self.wanted else "mask/*/without_mask/*"
        images = self._analysed_photos(
            pattern, "mask", lambda p: p.suffix.lower() in (".jpg", ".jpeg", ".png")
        )
        for path, rgb, _, analysis in images:
            where = self._where("mask", path)
            if path.parent.name == "with_mask":
                self.tasks["veil"].add(analysis.regions.face, 1, where, "mask/real_mask", np.nan)
            else:
                state = eyes[path.relative_to(self.root / "mask").as_posix()]
                if "eyes" in self.wanted and state is not None:  # None: reviewed, unclear
                    self._both_eyes(analysis, state, where, "mask/pipeline_eye")
                self._veil_pair(
                    rgb, analysis.landmarks.points, analysis.regions, where, "mask", path
                )

    def kaggle_faces(self) -> None:
        """Kaggle's crowd crops for the veil (after every other step, so the crops before them
        and their synthetic occluders stay as they were without it)."""
        with open(self.root / "mask_kaggle_faces" / "index.csv", newline="") as handle:
            # each crop's label once: 1 masked, 0 reviewed uncovered, None left out
            veil = {
                row["path"]: review.kaggle_veil(row["path"], row["label"])
                for row in csv.DictReader(handle)
            }
        photos = self._analysed_photos(
            "mask_kaggle_faces/*/*",
            "mask_kaggle_faces",
            lambda p: veil.get(self._index_path(p)) is not None,
        )
        for path, rgb, _, analysis in photos:
            where = self._where("mask_kaggle_faces", path)
            if veil[self._index_path(path)] == 1:
                face = analysis.regions.face
                self.tasks["veil"].add(face, 1, where, "mask_kaggle_faces/real_mask", np.nan)
            else:
                points, regions = analysis.landmarks.points, analysis.regions
                self._veil_pair(rgb, points, regions, where, "mask_kaggle_faces", path)

    def _index_path(self, path: Path) -> str:
        return path.relative_to(self.root / "mask_kaggle_faces").as_posix()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Cut training crops with the kiosk pipeline.")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=WORK / "crops")
    parser.add_argument("--limit", type=int, default=None, help="files per dataset (for tests)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--detector", choices=sorted(DETECTORS), default=DEFAULT_BACKEND)
    parser.add_argument(
        "--tasks", nargs="+", choices=TASK_NAMES, default=list(TASK_NAMES),
        help="collect only these tasks' crops (skips the photos and analyses they do not need)",
    )  # fmt: skip
    for name, text in TRIALS.items():
        parser.add_argument(
            f"--{name.replace('_', '-')}",
            dest="trials",
            action="append_const",
            const=name,
            default=[],
            help=f"a trial: {text}",
        )
    args = parser.parse_args(argv)
    root = data_root(args.data_root)
    args.out.mkdir(parents=True, exist_ok=True)
    collector = Collector(
        root,
        args.limit,
        args.seed,
        tuple(args.tasks),
        args.detector,
        frozenset(args.trials),
    )
    for step in collector.steps():
        start = time.perf_counter()
        step()
        print(f"{step.__name__}: {time.perf_counter() - start:.0f} s", flush=True)
    for name, task in collector.tasks.items():
        task.save(args.out / f"{name}.npz")
        counts = Counter(zip(task.sources, task.labels, strict=True))
        print(
            f"{name}: {len(task.labels)} crops "
            + ", ".join(f"{source}[{label}]={n}" for (source, label), n in sorted(counts.items()))
        )
    drops = (
        "drops.csv" if set(args.tasks) == set(TASK_NAMES) else f"drops_{'_'.join(args.tasks)}.csv"
    )
    with open(args.out / drops, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["dataset", "path", "reason"])
        writer.writerows(collector.drops)
    reasons = Counter((d, r.split(":")[0]) for d, _, r in collector.drops)
    for dataset, seen in sorted(collector.seen.items()):
        dropped = {r: n for (d, r), n in reasons.items() if d == dataset}
        print(f"{dataset}: {seen} analysed, dropped {sum(dropped.values())} {dropped}")


if __name__ == "__main__":
    main()
