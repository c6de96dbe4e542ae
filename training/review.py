"""Labels reviewed by eye where a dataset has none or only automatic ones (issue 12).

Why: these questions have no trustworthy or consistent label in `../shared/datasets`.
- YouTube-Faces eyes (`faces68_ytf`): the one source of open eyes the eye model never trained
  on; its label was automatic ("open unless the automatic points' EAR < 0.15"), and the faces the
  model flagged mostly had shut eyes or lowered lids: the label, not the model, was wrong.
- CEW mouths (`eyes_closed_faces`): 1,192 real faces, many smiling with closed lips or laughing,
  exactly what the mouth model confuses, but with no mouth label at all.
- `mouth/` (HELEN pictures) has hand labels, but calls slightly parted lips open; its evaluated
  photos (val, test) were reviewed by the CEW rule so every source's "open" means the same, and
  its train photos for a trial (`mouth_helen_train`; not shipped).
- Web faces' eyes (`mask/without_mask`, `eyes_web` and `eyes_web_train`): taken as open by
  assumption, some are shut or lowered; the shipped eye model trains on the reviews. The dataset
  has no points: tiles are cut around the kiosk pipeline's landmarks.
- faces68's half-open eyes (`eyes_faces68`): train/val faces with an eye between the manual
  landmarks' cut-offs, which the landmark label leaves out (a trial; not shipped).
- YouTube-Faces mouths (`mouth_ytf`): OFIQ's rule on the automatic points called 69 of the 360
  mouths the review found closed open; the review is their evaluation label.
- faces68's mouths (`mouth_faces68`: val and test, a check of OFIQ's rule on the hand points,
  which labels them; `mouth_faces68_train`: the train mouths between its cut-offs, for a trial
  that did not ship). Tiles: the mouth, 2.2 x its width, around points 48-67.

A reviewer looks at a seeded random order of the photos, blind to every score, in sheets of 48
numbered tiles, and notes per sheet which tiles show the failure and which the compliant state;
every other tile is unclear:
- eyes: open = both irises clearly visible; closed = an eye shut or the lids lowered over the
  pupil (blinking, looking down) - a passport photo fails either way; tiles = eye bands cut
  around points 36-47 and enlarged;
- mouth: open = lips apart (teeth or a dark gap between them); closed = lips touching, smiling
  or not; tiles = the lower half of the (tight) face photo.

    python -m training.review sheets eyes --count 12 --out /tmp/review   # sheets s00..s11.png
    python -m training.review record eyes notes.txt                      # notes -> labels CSV

A note line is `s03 O:4,6,8 C:2,7` (sheet, tiles open, tiles closed). The CSVs in
`training/labels/` (path, sheet, tile, state) are what training and evaluation read.

Two more reviews look at whole photos, in sheets of 12 or 24, and are recorded per photo
(`states`):
- `several_people.csv`: is a photo the detector refuses as "several faces" really of several
  people? Every photo of the face datasets where kiosk YuNet with both BlazeFace fallbacks
  (faces from 20 px, the background rule applied) counts two or more faces (169): `several` = a
  second human face at a scale comparable to the main one (a partial face at the edge and a
  collage panel count), `one` = a single person (the second box is a mask, a product or the
  same face twice), `unclear` = a second face much smaller or too blurred to judge. Refusing a
  `several` photo is the kiosk's right answer, not a face miss (training/verdicts.py,
  bench/face_miss.py). Photos where the detector found one face were not reviewed, so a second
  person it missed is not known.
- `mask_kaggle_faces_without_mask.csv`: the Kaggle crowd crops labelled "without mask", all
  106, their sorted names shuffled by random.Random(SEED), in sheets of 24; blind to scores
  except that the reviewer had seen the 16 the veil model scored highest: `clean` = uncovered,
  `covered` = a hand, a camera or a mask over the lower face, `unclear` = no face to judge.
  Only `clean` faces are the veil check's compliant faces of that source
  (training/evaluate_faces.py).
"""

from __future__ import annotations

import argparse
import csv
import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from kiosk.runtime.imageio import load_rgb
from kiosk.runtime.vision.analysis import FaceAnalyzer
from training.geometry import EAR_CLOSED, EAR_OPEN, read_pts
from training.paths import data_root
from training.splits import split_of

LABELS = Path(__file__).parent / "labels"
SEED = 12


@cache
def states(name: str) -> dict[str, str]:
    """path -> state of the whole-photo review `training/labels/<name>.csv`."""
    with open(LABELS / f"{name}.csv", newline="") as handle:
        return {row["path"]: row["state"] for row in csv.DictReader(handle)}


def kaggle_veil(path: str, label: str) -> int | None:
    """The veil label of a `mask_kaggle_faces` crop (`path`, `label` as its index names them):
    1 with a mask, 0 only where the review found the face uncovered, else None."""
    if label == "with_mask":
        return 1
    if label == "without_mask" and states("mask_kaggle_faces_without_mask").get(path) == "clean":
        return 0
    return None


def several_people() -> set[str]:
    """Photos (paths under the data root) reviewed as showing several comparable faces."""
    return {path for path, state in states("several_people").items() if state == "several"}


@dataclass(frozen=True)
class Review:
    dataset: str
    part: str
    columns: int
    rows: int
    tile: tuple[int, int]  # width, height
    failure: str  # the state that fails the check: "closed" eyes, an "open" mouth
    index: str  # the dataset's list of photos: a CSV, or a glob pattern of its files
    cut: Callable[[Path, str], np.ndarray]  # (dataset dir, index path) -> tile
    column: str = "path"  # the index's column naming a photo
    prefix: str = ""  # folder of the photos inside the dataset, when the index omits it
    splits: tuple[str, ...] = ()  # only photos of these splits (none: every photo)
    keep: Callable[[Path, str], bool] | None = None  # (data root, index path): review it?

    @property
    def per_sheet(self) -> int:
        return self.columns * self.rows

    @property
    def labels(self) -> Path:
        return LABELS / f"{self.dataset}_{self.part}.csv"


def _eye_band(folder: Path, path: str) -> np.ndarray:
    """Both eyes (points 36-47, 1.7 x their width, 3:1) enlarged to one tile."""
    image = cv2.imread(str(folder / path))
    return _band(image, read_pts(folder / Path(path).with_suffix(".pts"))[36:48])


def _band(
    image: np.ndarray, points: np.ndarray, margin: float = 1.7, tile: tuple[int, int] = (240, 80)
) -> np.ndarray:
    """The points' box, `margin` x their width wide, in a tile of that shape, enlarged."""
    width = (points[:, 0].max() - points[:, 0].min()) * margin
    scale = tile[0] / width
    corner = points.mean(0) - np.array([width / 2, width * tile[1] / tile[0] / 2])
    warp = np.array([[scale, 0, -corner[0] * scale], [0, scale, -corner[1] * scale]])
    return cv2.warpAffine(image, warp, tile, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def _mouth_tile(folder: Path, path: str) -> np.ndarray:
    """The mouth (points 48-67, 2.2 x its width: nose tip to chin) enlarged to one tile."""
    image = cv2.imread(str(folder / path))
    return _band(image, read_pts(folder / Path(path).with_suffix(".pts"))[48:68], 2.2, (168, 120))


def _eye_band_found(folder: Path, path: str) -> np.ndarray:
    """Both eyes as `_eye_band` cuts them, around the kiosk pipeline's points 36-47 (photos
    without hand points); a photo where the kiosk finds no single face: its upper half."""
    from training.collect import padded  # collect imports this module

    rgb, pad = padded(load_rgb(folder / path))
    analysis = _kiosk_analyzer().analyze(rgb)
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if analysis.reason:
        h = image.shape[0]
        return cv2.resize(image[pad : h // 2, pad:-pad], (240, 80), interpolation=cv2.INTER_AREA)
    return _band(image, analysis.landmarks.points[36:48])


@cache
def _kiosk_analyzer() -> FaceAnalyzer:
    from training.collect import kiosk_analyzer  # collect imports this module

    return kiosk_analyzer()


def _eye_in_between(root: Path, path: str) -> bool:
    """A faces68 photo with an eye between the landmark cut-offs (EAR_CLOSED-EAR_OPEN on the
    manual points, faces68_measures), which the landmark label leaves out."""
    return path in _faces68_where(root, _an_eye_between)


def _mouth_in_between(root: Path, path: str) -> bool:
    """A faces68 photo whose mouth OFIQ's rule on the hand points calls neither open nor closed."""
    return path in _faces68_where(root, _mouth_between)


def _an_eye_between(row: dict[str, str]) -> bool:
    return any(EAR_CLOSED < float(row[k]) < EAR_OPEN for k in ("ear_left", "ear_right"))


def _mouth_between(row: dict[str, str]) -> bool:
    return row["mouth_label"] == "ambiguous"


@cache
def _faces68_where(root: Path, test: Callable[[dict[str, str]], bool]) -> frozenset[str]:
    """faces68 photos (paths under faces68/) whose faces68_measures row passes `test` (read once
    per test: `order` asks about every photo)."""
    with open(root / "faces68_measures" / "measures.csv", newline="") as handle:
        return frozenset(
            row["image"].removeprefix("faces68/") for row in csv.DictReader(handle) if test(row)
        )


def _lower_face(folder: Path, path: str) -> np.ndarray:
    """The lower half of a tight face photo, central 70 % of its width."""
    image = cv2.imread(str(folder / path))
    h, w = image.shape[:2]
    part = image[h // 2 :, int(w * 0.15) : int(w * 0.85)]
    return cv2.resize(part, (168, 120), interpolation=cv2.INTER_AREA)


REVIEWS = {
    "eyes": Review("faces68_ytf", "eyes", 4, 12, (240, 80), "closed", "index.csv", _eye_band),
    "mouth": Review(
        "eyes_closed_faces", "mouth", 6, 8, (168, 120), "open", "index.csv", _lower_face
    ),
    # mouth/'s own labels call slightly parted lips open, which the CEW review calls unclear:
    # its evaluated photos (val, test) reviewed by the same rule, so every source means the same
    "mouth_helen": Review(
        "mouth",
        "reviewed",
        6,
        8,
        (168, 120),
        "open",
        "annotations.csv",
        _lower_face,
        column="filename",
        prefix="images/",
        splits=("val", "test"),
    ),
    # mask/without_mask's eyes were taken as open; its evaluated photos (val, test) reviewed as
    # YTF's were, so a face with shut or lowered lids is not counted as a false "closed"
    "eyes_web": Review(
        "mask",
        "without_mask_eyes",
        4,
        12,
        (240, 80),
        "closed",
        "*/without_mask/*",
        _eye_band_found,
        splits=("val", "test"),
    ),
    # faces68's train/val faces with an eye between the landmark cut-offs, which the landmark
    # label leaves out: half-open, lowered or squinting eyes
    "eyes_faces68": Review(
        "faces68",
        "eyes",
        4,
        12,
        (240, 80),
        "closed",
        "*/*.jpg",
        _eye_band,
        splits=("train", "val"),
        keep=_eye_in_between,
    ),
}
# YouTube faces' mouths: the automatic points' OFIQ label is weak (they often draw a gap that is
# not there), and YTF is the one source of ordinary faces no compliance model trained on
REVIEWS["mouth_ytf"] = Review(
    "faces68_ytf", "mouth", 6, 8, (168, 120), "open", "index.csv", _mouth_tile
)
# faces68's evaluated mouths (val, test) by the same rule: how far OFIQ's landmark rule, which
# labels them, agrees with an eye that calls slightly parted lips unclear
REVIEWS["mouth_faces68"] = Review(
    "faces68",
    "mouth_reviewed",
    6,
    8,
    (168, 120),
    "open",
    "*/*.jpg",
    _mouth_tile,
    splits=("val", "test"),
)
# faces68's train mouths OFIQ's rule leaves out (opening between its cut-offs): lips barely
# apart, the mouths the CNN gets wrong on unseen sources, reviewed for a trial (not shipped)
REVIEWS["mouth_faces68_train"] = replace(
    REVIEWS["mouth_faces68"],
    part="mouth_reviewed_train",
    splits=("train",),
    keep=_mouth_in_between,
)
# The train photos of two of them, by the same rule: mouth/'s for a trial (the mouth model
# learning the boundary it is judged by), the web faces' for the eye model (not learning shut
# or lowered lids as open)
REVIEWS["mouth_helen_train"] = replace(
    REVIEWS["mouth_helen"], part="reviewed_train", splits=("train",)
)
REVIEWS["eyes_web_train"] = replace(
    REVIEWS["eyes_web"], part="without_mask_eyes_train", splits=("train",)
)


def order(root: Path, review: Review) -> list[str]:
    """Every photo of the dataset (its index path) in the review's seeded order."""
    folder = root / review.dataset
    if "*" in review.index:
        paths = sorted(p.relative_to(folder).as_posix() for p in folder.glob(review.index))
    else:
        with open(folder / review.index, newline="") as handle:
            paths = [review.prefix + row[review.column] for row in csv.DictReader(handle)]
    if review.splits:
        paths = [p for p in paths if split_of(review.dataset, p) in review.splits]
    if review.keep:
        paths = [p for p in paths if review.keep(root, p)]
    random.Random(SEED).shuffle(paths)
    return paths


def sheets(root: Path, review: Review, count: int, out: Path, first: int = 0) -> None:
    out.mkdir(parents=True, exist_ok=True)
    paths, n = order(root, review), review.per_sheet
    for sheet in range(first, first + count):
        tiles = []
        for tile, path in enumerate(paths[sheet * n : (sheet + 1) * n]):
            image = review.cut(root / review.dataset, path)
            cv2.putText(image, str(tile), (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255))
            cv2.rectangle(image, (0, 0), (review.tile[0] - 1, review.tile[1] - 1), (0, 0, 0))
            tiles.append(image)
        if not tiles:
            break
        tiles += [np.zeros_like(tiles[0])] * (n - len(tiles))
        grid = [
            np.hstack(tiles[r * review.columns : (r + 1) * review.columns])
            for r in range(review.rows)
        ]
        cv2.imwrite(str(out / f"s{sheet:02d}.png"), np.vstack(grid))


def record(root: Path, review: Review, notes: Path, out: Path | None = None) -> None:
    """Turn note lines into one row per reviewed photo (unlisted tiles: unclear)."""
    paths, n = order(root, review), review.per_sheet
    names = {"O": "open", "C": "closed"}
    rows = []
    for line in notes.read_text().splitlines():
        name, *marks = line.split()
        sheet = int(name.removeprefix("s"))
        state = {}
        for mark in marks:
            kind, _, tiles = mark.partition(":")
            state |= {int(t): names[kind] for t in tiles.split(",") if t}
        for tile, path in enumerate(paths[sheet * n : (sheet + 1) * n]):
            rows.append(
                {"path": path, "sheet": sheet, "tile": tile, "state": state.get(tile, "unclear")}
            )
    out = out or review.labels
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["path", "sheet", "tile", "state"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["path"]))


def reviewed(review: Review, path: Path | None = None) -> dict[str, int | None]:
    """index path -> 1 the failure (closed eyes, open mouth), 0 compliant, None unclear."""
    compliant = "closed" if review.failure == "open" else "open"
    with open(path or review.labels, newline="") as handle:
        return {
            row["path"]: {review.failure: 1, compliant: 0}.get(row["state"])
            for row in csv.DictReader(handle)
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    commands = parser.add_subparsers(dest="command", required=True)
    draw = commands.add_parser("sheets", help="draw review sheets")
    draw.add_argument("review", choices=sorted(REVIEWS))
    draw.add_argument("--count", type=int, default=12)
    draw.add_argument("--first", type=int, default=0)
    draw.add_argument("--out", type=Path, required=True)
    note = commands.add_parser("record", help="notes -> labels CSV")
    note.add_argument("review", choices=sorted(REVIEWS))
    note.add_argument("notes", type=Path)
    note.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    root, review = data_root(args.data_root), REVIEWS[args.review]
    if args.command == "sheets":
        sheets(root, review, args.count, args.out, args.first)
    else:
        record(root, review, args.notes, args.out)


if __name__ == "__main__":
    main()
