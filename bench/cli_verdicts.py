"""Eye, mouth and veil verdicts through `kiosk check --json` itself, on faces the models never saw.

    .venv/bin/python bench/cli_verdicts.py [--limit N]

The per-face tables (`make verdicts`) run the kiosk's modules in one process; this runs the
command an operator runs. Photos, with the labels reviewed by eye (training/review.py):
- eyes: `faces68_ytf` reviewed open and closed (YouTube, never in eye training), CEW test
  closed (`eyes_closed_faces`, the eye model's test split) and web faces' test split reviewed
  open and closed (`mask/without_mask`);
- mouth: CEW's and YouTube's reviewed open and closed mouths (never in mouth training);
- veil: Kaggle crowd crops with a mask and those reviewed as uncovered
  (training/labels/mask_kaggle_faces_without_mask.csv), and web mask portraits (never in veil
  training).
Each photo gets evaluate_faces' grey border and is scaled x2 with Lanczos, so these small faces
pass the kiosk's 100 px face gate; one `kiosk check --json` process reads the whole folder.
A face the kiosk refuses (no face, too small, several) counts as missed, apart from errors.
`--reference DIR` runs another model bundle on the same photos in the same run, beside ours.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import tempfile
from collections import Counter
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kiosk.runtime.imageio import load_rgb  # noqa: E402
from training import review, splits  # noqa: E402
from training.collect import padded  # noqa: E402
from training.kiosk_json import kiosk_records  # noqa: E402
from training.paths import data_root  # noqa: E402

CHECKS = {"eyes": "eyes_closed", "mouth": "mouth_open", "veil": "veil"}


def photos(root: Path, limit: int) -> list[tuple[str, str, int, Path]]:
    """(check, source, label 1 = the failure, path), at most `limit` per source and label."""
    out = []
    eyes = review.reviewed(review.REVIEWS["eyes"])
    for label in (0, 1):
        paths = sorted(p for p, v in eyes.items() if v == label)
        out += [("eyes", "faces68_ytf", label, root / "faces68_ytf" / p) for p in paths]
    cew = sorted((root / "eyes_closed_faces" / "closed").glob("*.jpg"))
    test = [p for p in cew if splits.lookup("eyes_closed_faces", f"closed/{p.name}")[1] == "test"]
    out += [("eyes", "eyes_closed_faces test", 1, p) for p in test]
    web = review.reviewed(review.REVIEWS["eyes_web"])
    for label in (0, 1):
        paths = sorted(
            p for p, v in web.items() if v == label and splits.split_of("mask", p) == "test"
        )
        out += [("eyes", "mask/without_mask test", label, root / "mask" / p) for p in paths]
    for kind, dataset in (("mouth", "eyes_closed_faces"), ("mouth_ytf", "faces68_ytf")):
        mouths = review.reviewed(review.REVIEWS[kind])
        for label in (0, 1):
            paths = sorted(p for p, v in mouths.items() if v == label)
            out += [("mouth", dataset, label, root / dataset / p) for p in paths]
    for dataset in ("mask_kaggle_faces", "mask_web_types"):
        with open(root / dataset / "index.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                label = (
                    1
                    if dataset == "mask_web_types"  # every web portrait is masked
                    else review.kaggle_veil(row["path"], row["label"])
                )
                if label is not None:
                    out.append(("veil", dataset, label, root / dataset / row["path"]))
    groups: dict[tuple[str, str, int], list] = {}
    for item in out:
        groups.setdefault(item[:3], []).append(item)
    rng = random.Random(7)
    return [x for items in groups.values() for x in rng.sample(items, min(limit, len(items)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=120, help="photos per source and label")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--reference", type=Path, default=None, help="another model bundle")
    args = parser.parse_args()
    chosen = photos(data_root(args.data_root), args.limit)
    with tempfile.TemporaryDirectory() as tmp:
        names = {}
        for i, (check, source, label, path) in enumerate(chosen):
            rgb, _ = padded(load_rgb(path))
            big = cv2.resize(rgb, None, fx=2, fy=2, interpolation=cv2.INTER_LANCZOS4)
            name = f"{i:05d}.png"
            cv2.imwrite(str(Path(tmp) / name), cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
            names[name] = (check, source, label)
        bundles = {"ours": kiosk_records("check", Path(tmp))}
        if args.reference is not None:
            bundles["reference"] = kiosk_records("check", Path(tmp), args.reference)
    tallies = {bundle: tally(done, names) for bundle, done in bundles.items()}
    print(f"`kiosk check --json` on {len(names)} photos ({', '.join(bundles)})\n")
    columns = " | ".join(f"{b}: missed · error · e2e" for b in bundles)
    print(f"| check | source | class | n | {columns} |")
    print("|---|---|---|---:|" + "---|" * len(bundles))
    for check, source, label in sorted({key[:3] for key in tallies["ours"]}):
        cells = []
        for counts in tallies.values():
            right, wrong, missed = (
                counts[(check, source, label, o)] for o in ("right", "wrong", "missed")
            )
            n = right + wrong + missed
            cells.append(
                f"{missed} · {100 * wrong / max(right + wrong, 1):.1f} % · "
                f"{100 * (wrong + missed) / n:.1f} %"
            )
        kind = {
            ("eyes", 1): "closed",
            ("eyes", 0): "open",
            ("mouth", 1): "open",
            ("mouth", 0): "closed",
            ("veil", 1): "covered",
            ("veil", 0): "uncovered",
        }[(check, label)]
        print(f"| {CHECKS[check]} | {source} | {kind} | {n} | {' | '.join(cells)} |")


def tally(done: list[dict], names: dict[str, tuple[str, str, int]]) -> Counter:
    """(check, source, label, right | wrong | missed) -> faces, from one bundle's records."""
    counts: Counter = Counter()
    for record in done:
        check, source, label = names[Path(record["source"]).name]
        result = record.get("checks", {}).get(CHECKS[check])
        if result is None:
            outcome = "missed"
        else:
            outcome = "wrong" if bool(result["failed"]) != bool(label) else "right"
        counts[(check, source, label, outcome)] += 1
    return counts


if __name__ == "__main__":
    main()
