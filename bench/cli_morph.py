"""The morph check through `kiosk forensics --json` itself, on people the models never saw.

    .venv/bin/python bench/cli_morph.py [--pairs 60] [--seed 3] [--reference MODELS_DIR]
        [--bona-fide-folder DIR ...]

The morph report (reports/morph) scores face crops in one process; this runs the command an
examiner runs, on whole pictures. `--pairs` faces of faces68's *test* split (hand landmarks;
these people are in no training split): each gives one **synthetic** morph with another test
person (feathered, Poisson and full-image in turn, training/morph/data.py's `morph`) and its
own picture as bona fide, both through the data's random post-processing (resampling, blur,
JPEG), saved losslessly. One `kiosk forensics --json` process per folder; the table gives, at the
shipped threshold, the morphs that pass (APCER) and the bona fide pictures flagged (BPCER).
`--bona-fide-folder`: pictures of another source, all bona fide (e.g. a face source no morph
model trained on); `--reference`: another model bundle (an earlier release) run on the same
pictures in the same run, a column beside ours.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from training.kiosk_json import kiosk_records  # noqa: E402
from training.morph.data import METHODS, faces, load_rgb, morph, post_process  # noqa: E402
from training.paths import data_root  # noqa: E402


def write_pictures(out: Path, pairs: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    test = [f for f in faces(data_root(None)) if f.split == "test" and f.dataset == "faces68"]
    for index in rng.choice(len(test), pairs, replace=False):
        face = test[index]
        a = load_rgb(face.path)
        others = [f for f in test if f.group != face.group]
        partner = others[int(rng.integers(len(others)))]
        method = METHODS[int(index) % len(METHODS)]
        morphed, _ = morph(a, face.points, load_rgb(partner.path), partner.points, method, rng)
        for kind, picture in (("morph", morphed), ("bona_fide", a)):
            picture, _ = post_process(picture, rng)
            (out / kind).mkdir(exist_ok=True)
            cv2.imwrite(str(out / kind / f"{index:04d}.png"), picture[..., ::-1])


def flagged(folder: Path, models: Path | None) -> tuple[int, int, int]:
    """(pictures, with one face checked, flagged) by `kiosk forensics --json` on `folder`."""
    records = kiosk_records("forensics", folder, models)
    checked = [r["morph"] for r in records if (r.get("morph") or {}).get("applied")]
    return len(records), len(checked), sum(m["flagged"] for m in checked)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--reference", type=Path, default=None, help="another model bundle")
    parser.add_argument("--bona-fide-folder", type=Path, nargs="*", default=[])
    args = parser.parse_args()
    bundles = {"ours": None, **({"reference": args.reference} if args.reference else {})}
    with tempfile.TemporaryDirectory() as tmp:
        write_pictures(Path(tmp), args.pairs, args.seed)
        sets = [("morph", Path(tmp) / "morph", "faces68 test people")]
        sets.append(("bona_fide", Path(tmp) / "bona_fide", "faces68 test people"))
        sets += [("bona_fide", folder, str(folder)) for folder in args.bona_fide_folder]
        print(
            "| pictures | kind | n | face checked | "
            + " | ".join(f"{name}: flagged | {name}: error" for name in bundles)
            + " |"
        )
        print("|---|---|---:|---:|" + "---:|---:|" * len(bundles))
        for kind, folder, what in sets:
            cells, n, checked = [], 0, 0
            for models in bundles.values():
                n, checked, hits = flagged(folder, models)
                wrong = checked - hits if kind == "morph" else hits
                error = "APCER (passed)" if kind == "morph" else "BPCER (flagged)"
                cells.append(f"{hits} | {error} {wrong / max(checked, 1):.1%}")
            print(f"| {what} | {kind} | {n} | {checked} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
