"""The whole capture path of `kiosk run` on one still: forensics (`capture.examine`), then after
Accept the token photo, JPEG encoding and the encrypted store write (`StoreSlot.keep`), with the
shipped bundle, as the service's capture worker runs them. One table: time per step (median of
--runs) and the process's peak RSS above what it held with the models loaded.

    .venv/bin/python bench/bench_capture.py [--size 4056x3040] [--runs 3]

4056x3040 is the Raspberry Pi HQ camera's 12.3 MP still. The face (tests/data/face_open.jpg) is
scaled to a third of the still's height, a passport framing, and the preview verdict's face box
is mapped onto the still by the camera geometry, as in the service. The forensic checks get a
copy of at most [input] work_megapixels (the JPEG-history check reads the full-resolution luma);
--full runs them on the still itself, as the service did before.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from kiosk.config import load_config  # noqa: E402
from kiosk.runtime.cameras.base import Still, StreamGeometry, downscale  # noqa: E402
from kiosk.service.bundle import load_checks  # noqa: E402
from kiosk.service.capture import StoreSlot, examine  # noqa: E402
from kiosk.service.store import CaptureStore  # noqa: E402

FACE = REPO / "tests" / "data" / "face_open.jpg"


def still_of(width: int, height: int) -> np.ndarray:
    face = cv2.cvtColor(cv2.imread(str(FACE)), cv2.COLOR_BGR2RGB)
    side = height // 3
    face = cv2.resize(face, (side, side), interpolation=cv2.INTER_CUBIC)
    still = np.full((height, width, 3), 200, np.uint8)
    top, left = (height - side) // 2 - height // 20, (width - side) // 2
    still[top : top + side, left : left + side] = face
    return still


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="4056x3040", help="still size WxH")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--full",
        action="store_true",
        help="forensics on the full-resolution still (the service before issue 14)",
    )
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.split("x"))

    config = load_config()
    checks = load_checks(config)
    image = still_of(width, height)
    preview = downscale(image, config.service.preview_width)
    geometry = StreamGeometry(
        (preview.shape[1], preview.shape[0]), (image.shape[1], image.shape[0])
    )
    verdict, _ = checks.pipeline.check(preview, still_scale=width / preview.shape[1])
    if verdict.face_box is None:
        print("the test face was not found in the preview", file=sys.stderr)
        return 1
    cv2.setNumThreads(1)
    work = None if args.full else int(config.input.work_megapixels * 1e6)
    with tempfile.TemporaryDirectory() as tmp:
        slot = StoreSlot(
            lambda: CaptureStore(Path(tmp) / "store", Path(tmp) / "key", min_free_mb=0)
        )
        slot.open()
        baseline = peak_mib()  # models loaded, the still in memory
        forensics_s, keep_s = [], []
        for _ in range(args.runs):
            started = time.perf_counter()
            held, event = examine(
                Still(image, geometry), verdict, 0, checks.forensics, work, config.forensics.workers
            )
            forensics_s.append(time.perf_counter() - started)
            started = time.perf_counter()
            stored = slot.keep(
                held,
                event.forensics,
                checks.models,
                "bench",
                config.service.capture_quality,
                checks.token,
                {"case_ref": "bench"},
            )
            keep_s.append(time.perf_counter() - started)
        slot.close()
    peak = peak_mib() - baseline
    forensic, keep = statistics.median(forensics_s), statistics.median(keep_s)
    copy = "full resolution" if work is None else f"{config.input.work_megapixels} MP copy"
    print(
        f"| step ({width}x{height} still, forensics on the {copy}, median of {args.runs}) | value |"
    )
    print("|---|---|")
    print(f"| forensics ({', '.join(c.key for c in checks.forensics.checks)}) | {forensic:.3f} s |")
    print(f"| token photo + JPEG + encrypted store ({type(stored).__name__}) | {keep:.3f} s |")
    print(f"| whole capture path | {forensic + keep:.3f} s |")
    print(f"| peak RSS above the loaded service | {peak:.0f} MiB |")
    print(f"| peak RSS of the process | {peak_mib():.0f} MiB |")
    print(f"| load average (1 min) while measuring | {os.getloadavg()[0]:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
