"""The shipped `jpeg_history` model through `kiosk forensics`: never-JPEG vs JPEG, bad input."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from kiosk.cli import main
from kiosk.config import load_config
from kiosk.contract.errors import InputError
from kiosk.runtime.forensics.jpeg import make_jpeg_check, patch_corners, pool
from kiosk.runtime.models.registry import ModelRegistry
from tests.conftest import bundle_without, data_root_or_skip

# A held-out (test-split) never-JPEG picture; the detector never saw it or its group.
HELD_OUT = "uncompressed/kodak/kodim05.png"


def forensics_json(capsys, *paths) -> tuple[int, list[dict]]:
    code = main(["forensics", "--json", *map(str, paths)])
    return code, [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]


@pytest.fixture(scope="module")
def never_jpeg() -> np.ndarray:
    return np.asarray(Image.open(data_root_or_skip() / HELD_OUT).convert("L"))


def test_real_model_separates_png_from_its_jpeg(tmp_path, capsys, never_jpeg):
    png = tmp_path / "never_jpeg.png"
    Image.fromarray(never_jpeg).save(png)
    buffer = io.BytesIO()
    Image.fromarray(never_jpeg).save(buffer, "JPEG", quality=50)
    jpeg = tmp_path / "qf50.jpg"
    jpeg.write_bytes(buffer.getvalue())
    code, (clean, compressed) = forensics_json(capsys, png, jpeg)
    assert clean["error"] is None and compressed["error"] is None
    assert clean["jpeg"]["score"] < clean["jpeg"]["threshold"] and not clean["jpeg"]["flagged"]
    assert compressed["jpeg"]["score"] >= compressed["jpeg"]["threshold"]
    assert compressed["jpeg"]["flagged"] and code == 1
    assert compressed["jpeg"]["patches"] == (never_jpeg.shape[0] // 64) * (
        never_jpeg.shape[1] // 64
    )


def test_too_small_and_corrupt_give_error_records(tmp_path, capsys):
    small = tmp_path / "small.png"
    Image.fromarray(np.full((40, 300), 128, np.uint8)).save(small)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    code, (too_small, broken) = forensics_json(capsys, small, corrupt)
    assert "smaller than one 64x64 patch" in too_small["jpeg"]["error"]
    assert broken["error"] and "jpeg" not in broken
    assert code == 2


def test_factory_follows_the_manifest(tmp_path):
    config = load_config()
    assert make_jpeg_check(ModelRegistry(config.models_dir), config) is not None
    assert make_jpeg_check(ModelRegistry(bundle_without(tmp_path, "jpeg_history")), config) is None


def test_patch_grid_and_pooling():
    assert patch_corners(130, 200, 64) == [(0, 0), (0, 64), (0, 128), (64, 0), (64, 64), (64, 128)]
    thinned = patch_corners(64 * 40, 64 * 40, 64, limit=100)
    assert len(thinned) <= 100 and all(y % 64 == 0 and x % 64 == 0 for y, x in thinned)
    with pytest.raises(InputError):
        patch_corners(63, 500, 64)
    assert pool(np.array([0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0])) == pytest.approx(1.0)
    assert pool(np.array([0.2])) == pytest.approx(0.2)
