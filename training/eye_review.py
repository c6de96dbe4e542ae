"""Review faces68_ytf's eye state by eye (issue 12): sheets to look at, and the labels they gave.

Why: faces68_ytf is the one source of open eyes the eye model never trained on, and its labels
were automatic ("open unless the automatic points' EAR < 0.15"). Looking at the faces the model
flagged showed most of them with lowered lids or shut eyes: the label, not the model, was wrong.
A reviewer therefore looks at a seeded random sample, blind to every score, in sheets of 48 eye
bands (4 x 12, each band cut around the dataset's own points 36-47 and enlarged) and notes per
sheet which tiles are clearly open and which are closed; every other tile is unclear:

- open: both irises clearly visible;
- closed: an eye shut, or the lids lowered over the pupil (looking down, blinking) - a passport
  photo fails either way;
- unclear: too blurred, dark, small, covered by glasses or glare to say.

    python -m training.eye_review sheets --count 12 --out /tmp/review     # sheets s00..s11.png
    python -m training.eye_review record notes.txt                        # notes -> the labels CSV

A note line is `s03 O:4,6,8 C:2,7` (sheet, open tiles, closed tiles). The CSV
(`training/labels/faces68_ytf_eyes.csv`: path, sheet, tile, eyes) is what
`training/evaluate_faces.py` reads; sheets are reproducible from the seed.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

import cv2
import numpy as np

from training.collect import read_pts
from training.paths import data_root

LABELS = Path(__file__).parent / "labels" / "faces68_ytf_eyes.csv"
SEED, COLUMNS, ROWS, TILE = 12, 4, 12, (240, 80)
PER_SHEET = COLUMNS * ROWS


def order(root: Path) -> list[str]:
    """Every faces68_ytf photo (index.csv path) in the review's seeded order."""
    with open(root / "faces68_ytf" / "index.csv", newline="") as handle:
        paths = [row["path"] for row in csv.DictReader(handle)]
    random.Random(SEED).shuffle(paths)
    return paths


def eye_band(root: Path, path: str) -> np.ndarray:
    """Both eyes (points 36-47, 1.7 x their width, 3:1) enlarged to one tile."""
    image = cv2.imread(str(root / "faces68_ytf" / path))
    points = read_pts(root / "faces68_ytf" / Path(path).with_suffix(".pts"))[36:48]
    centre = points.mean(0)
    width = (points[:, 0].max() - points[:, 0].min()) * 1.7
    scale = TILE[0] / width
    corner = centre - np.array([width / 2, width / 6])
    warp = np.array([[scale, 0, -corner[0] * scale], [0, scale, -corner[1] * scale]])
    return cv2.warpAffine(image, warp, TILE, flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def sheets(root: Path, count: int, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    paths = order(root)
    for sheet in range(count):
        tiles = []
        for tile, path in enumerate(paths[sheet * PER_SHEET : (sheet + 1) * PER_SHEET]):
            band = eye_band(root, path)
            cv2.putText(band, str(tile), (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 255, 255), 1)
            cv2.rectangle(band, (0, 0), (TILE[0] - 1, TILE[1] - 1), (0, 0, 0), 1)
            tiles.append(band)
        tiles += [np.zeros_like(tiles[0])] * (PER_SHEET - len(tiles))
        grid = [np.hstack(tiles[r * COLUMNS : (r + 1) * COLUMNS]) for r in range(ROWS)]
        cv2.imwrite(str(out / f"s{sheet:02d}.png"), np.vstack(grid))


def record(root: Path, notes: Path, out: Path = LABELS) -> None:
    """Turn note lines into one row per reviewed photo (unlisted tiles: unclear)."""
    paths = order(root)
    rows = []
    for line in notes.read_text().splitlines():
        name, *marks = line.split()
        sheet = int(name.removeprefix("s"))
        state = {}
        for mark in marks:
            kind, _, tiles = mark.partition(":")
            label = {"O": "open", "C": "closed"}[kind]
            state |= {int(t): label for t in tiles.split(",") if t}
        for tile, path in enumerate(paths[sheet * PER_SHEET : (sheet + 1) * PER_SHEET]):
            rows.append(
                {"path": path, "sheet": sheet, "tile": tile, "eyes": state.get(tile, "unclear")}
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["path", "sheet", "tile", "eyes"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["path"]))


def reviewed(path: Path = LABELS) -> dict[str, int | None]:
    """index.csv path -> 1 closed, 0 open, None unclear."""
    with open(path, newline="") as handle:
        return {
            row["path"]: {"closed": 1, "open": 0}.get(row["eyes"]) for row in csv.DictReader(handle)
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    commands = parser.add_subparsers(dest="command", required=True)
    draw = commands.add_parser("sheets", help="draw review sheets")
    draw.add_argument("--count", type=int, default=12)
    draw.add_argument("--out", type=Path, required=True)
    note = commands.add_parser("record", help="notes -> labels CSV")
    note.add_argument("notes", type=Path)
    note.add_argument("--out", type=Path, default=LABELS)
    args = parser.parse_args(argv)
    root = data_root(args.data_root)
    if args.command == "sheets":
        sheets(root, args.count, args.out)
    else:
        record(root, args.notes, args.out)


if __name__ == "__main__":
    main()
