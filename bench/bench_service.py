"""Service loop benchmark: checks per second on a replay source, preview latency, RSS growth.

The replay plays a 640x480 face with closed eyes at 30 fps (a camera's rate), so every frame
goes the whole way (detection, landmarks, three classifiers) and the session never leaves
`checking`. A client reads the console's MJPEG stream meanwhile; latency = part received - frame grabbed (both
time.monotonic() in this process). RSS is read after 100 checked frames and at the end.

    .venv/bin/python bench/bench_service.py [--frames 10000] [--preview-fps 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import httpx
import numpy as np
import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from kiosk.config import load_config  # noqa: E402
from kiosk.service.console.app import create_app  # noqa: E402
from kiosk.service.console.server import ThreadedServer  # noqa: E402
from kiosk.service.loop import KioskService  # noqa: E402


def replay_folder(root: Path) -> Path:
    face = cv2.imread(str(REPO / "tests" / "data" / "face_eyes_closed.jpg"))
    scale = 400 / max(face.shape[:2])
    face = cv2.resize(face, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    canvas = np.full((480, 640, 3), 128, np.uint8)
    y, x = (480 - face.shape[0]) // 2, (640 - face.shape[1]) // 2
    canvas[y : y + face.shape[0], x : x + face.shape[1]] = face
    folder = root / "replay"
    folder.mkdir()
    cv2.imwrite(str(folder / "frame.png"), canvas)
    return folder


def read_preview(url: str, latencies: list[float], stop: threading.Event) -> None:
    with httpx.Client(timeout=10) as client, client.stream("GET", url) as stream:
        buffer = b""
        for piece in stream.iter_bytes():
            now = time.monotonic()
            buffer += piece
            while (start := buffer.find(b"X-Grabbed: ")) >= 0 and b"\r\n" in buffer[start:]:
                end = buffer.index(b"\r\n", start)
                latencies.append(now - float(buffer[start + 11 : end]))
                buffer = buffer[end:]
            buffer = buffer[-4096:]
            if stop.is_set():
                return


def checked(service: KioskService) -> int:
    return service.snapshot()["counters"]["checked"]


def wait_checked(service: KioskService, count: int) -> None:
    while checked(service) < count:
        time.sleep(0.01)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000, help="checked frames in all")
    parser.add_argument("--preview-fps", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        base = load_config()
        config = dataclasses.replace(
            base,
            service=dataclasses.replace(
                base.service, source=str(replay_folder(Path(temp))), replay_fps=30.0
            ),
            console=dataclasses.replace(base.console, preview_fps=args.preview_fps),
            store=dataclasses.replace(
                base.store, dir=f"{temp}/store", key_file=f"{temp}/key", min_free_mb=0
            ),
        )
        process = psutil.Process()
        service = KioskService(config)
        service.start()
        server = ThreadedServer(create_app(service, config.console))
        latencies: list[float] = []
        stop = threading.Event()
        reader = threading.Thread(
            target=read_preview, args=(server.url + "/preview.mjpg", latencies, stop), daemon=True
        )
        reader.start()
        wait_checked(service, 100)
        rss_100 = process.memory_info().rss
        started, first = time.monotonic(), checked(service)
        wait_checked(service, args.frames)
        elapsed, last = time.monotonic() - started, checked(service)
        rss_end = process.memory_info().rss
        snap = service.snapshot()
        stop.set()
        server.stop()
        service.stop()

    fps = (last - first) / elapsed
    lat = sorted(latencies)
    rows = [
        ("frames checked", f"{last}"),
        ("service loop, checks/s", f"{fps:.1f}"),
        ("camera frames dropped (newer frame won)", f"{snap['counters']['dropped']}"),
        ("preview parts received", f"{len(lat)}"),
        ("preview latency median, ms", f"{1000 * statistics.median(lat):.1f}"),
        ("preview latency p95, ms", f"{1000 * lat[int(0.95 * (len(lat) - 1))]:.1f}"),
        ("RSS after 100 frames, MiB", f"{rss_100 / 2**20:.1f}"),
        (f"RSS after {last} frames, MiB", f"{rss_end / 2**20:.1f}"),
        ("RSS growth, MiB", f"{(rss_end - rss_100) / 2**20:+.1f}"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}} | value")
    print(f"{'-' * width}-|------")
    for name, value in rows:
        print(f"{name:<{width}} | {value}")


if __name__ == "__main__":
    main()
