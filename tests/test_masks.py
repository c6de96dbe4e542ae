import numpy as np

from tests.conftest import data_root_or_skip
from training import masks
from training.collect import read_pts


def test_overlay_covers_lower_face_only():
    root = data_root_or_skip()
    from kiosk.runtime.imageio import load_rgb

    path = sorted((root / "faces68" / "helen_trainset").glob("*.jpg"))[0]
    rgb, points = load_rgb(path), read_pts(path.with_suffix(".pts"))
    overlays = masks.load_overlays(root / "mask_overlays")
    assert len(overlays) == 5  # six files, one byte-identical duplicate
    rng = np.random.default_rng(0)
    for out in (
        masks.apply_mask_overlay(rgb, points, overlays[0], rng),
        masks.apply_cloth(rgb, points, rng),
    ):
        changed = np.any(out != rgb, axis=2)
        mouth = points[48:68].mean(axis=0).astype(int)
        eyes_y = int(points[36:48, 1].mean())
        assert changed[mouth[1] - 3 : mouth[1] + 3, mouth[0] - 3 : mouth[0] + 3].all()
        assert changed[: eyes_y - 5].mean() < 0.02
