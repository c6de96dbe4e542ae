"""Face-miss rate of the LiteRT MTCNN detector on each dataset the classifiers use.

A miss = no face found. Photos are padded by 25 % with grey as in training/collect.py (the
datasets hold tight face crops). `mask/with_mask` is listed apart: covered faces are harder.

    .venv/bin/python bench/face_miss.py [--limit N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402

from kiosk.contract.errors import InputError  # noqa: E402
from kiosk.runtime.imageio import load_rgb  # noqa: E402
from kiosk.runtime.vision.mtcnn_lite import MtcnnLite, MtcnnSettings  # noqa: E402
from training.paths import data_root  # noqa: E402

SETS = {
    "faces68 (AFW + HELEN)": "faces68/*/*.jpg",
    "mouth": "mouth/images/*.jpg",
    "mask/without_mask": "mask/*/without_mask/*",
    "mask/with_mask": "mask/*/with_mask/*",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None, help="default: IDKIOSK_DATA_ROOT")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--min-face-size", type=int, default=20)
    args = parser.parse_args()
    root = data_root(args.data_root)
    detector = MtcnnLite.from_models_dir(
        REPO / "models", settings=MtcnnSettings(min_face_size=args.min_face_size)
    )
    print("| dataset | photos | missed | miss rate |\n|---|---|---|---|")
    for name, pattern in SETS.items():
        paths = sorted(root.glob(pattern))[: args.limit]
        missed = 0
        for path in paths:
            try:
                rgb = load_rgb(path)
            except InputError:
                continue
            pad = int(0.25 * max(rgb.shape[:2]))
            rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(127,) * 3)
            missed += not detector.detect(rgb)
        print(f"| {name} | {len(paths)} | {missed} | {100 * missed / max(len(paths), 1):.2f} % |")


if __name__ == "__main__":
    main()
