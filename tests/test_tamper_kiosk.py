"""The shipped `tamper_ela` and `sr_x4` models through `kiosk forensics --json --out`."""

import dataclasses
import json

import cv2
import numpy as np
import pytest
from PIL import Image

from kiosk.cli import main
from kiosk.config import load_config
from kiosk.contract.errors import ModelError
from kiosk.runtime.forensics.capture import Artifacts, Capture
from kiosk.runtime.forensics.ela import make_ela_check
from kiosk.runtime.forensics.sr import face_square, make_sr_check
from kiosk.runtime.models.registry import ModelRegistry
from tests.conftest import bundle_without, save_rgb


def forensics_json(capsys, out, *paths) -> tuple[int, list[dict]]:
    code = main(["forensics", "--json", "--out", str(out), *map(str, paths)])
    return code, [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]


def test_small_face_is_super_resolved_and_heat_map_written(tmp_path, capsys, small_face):
    photo = save_rgb(tmp_path / "astronaut.png", small_face)
    _, (record,) = forensics_json(capsys, tmp_path / "out", photo)
    assert record["error"] is None
    ela = record["ela"]
    assert set(ela) == {"score", "threshold", "flagged"} and 0 <= ela["score"] <= 1
    assert ela["flagged"] == (ela["score"] >= ela["threshold"])
    assert record["sr"]["applied"] and record["sr"]["scale"] == 4
    assert record["sr"]["face_px"] < load_config().forensics.sr_token_px
    heat = cv2.imread(str(tmp_path / "out" / "astronaut_ela.png"))
    face = cv2.imread(str(tmp_path / "out" / "astronaut_face_sr.png"))
    assert heat.shape == (512, 512, 3) and face.shape == (512, 512, 3)
    assert not list((tmp_path / "out").glob(".*.tmp"))


def test_large_face_is_left_alone(small_face):
    config = load_config()
    check = make_sr_check(ModelRegistry(config.models_dir), config)
    side = config.forensics.sr_token_px + 10
    result = check.run(Capture(small_face, (100.0, 100.0, 100.0 + side, 100.0 + side)), Artifacts())
    assert result == {"applied": False, "scale": 4, "face_px": float(side)}
    assert face_square(small_face, (-20.0, 490.0, 40.0, 530.0)).shape == (90, 90, 3)


def test_bad_inputs_give_error_records(tmp_path, capsys, small_face):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    tiny = save_rgb(tmp_path / "tiny.png", small_face[:10, :12])
    grey = tmp_path / "grey.png"
    Image.fromarray(cv2.cvtColor(small_face, cv2.COLOR_RGB2GRAY)).save(grey)
    rgba = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([small_face, np.full(small_face.shape[:2], 200, np.uint8)])).save(
        rgba
    )
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), cv2.cvtColor(small_face, cv2.COLOR_RGB2GRAY).astype(np.uint16) * 257)
    code, records = forensics_json(capsys, tmp_path / "out", empty, corrupt, tiny, grey, rgba, deep)
    by_name = {r["source"].rsplit("/", 1)[-1]: r for r in records}
    assert by_name["empty.jpg"]["error"] and by_name["corrupt.png"]["error"]
    assert "too small" in by_name["tiny.png"]["ela"]["error"]
    assert by_name["tiny.png"]["sr"]["applied"] is False
    for name in ("grey.png", "rgba.png", "deep.png"):
        assert by_name[name]["error"] is None and 0 <= by_name[name]["ela"]["score"] <= 1
    assert code == 2


def test_factories_follow_the_manifest_and_the_ela_quality(tmp_path):
    config = load_config()
    bundle = bundle_without(tmp_path, "tamper_ela", "sr_x4")
    assert make_ela_check(ModelRegistry(bundle), config) is None
    assert make_sr_check(ModelRegistry(bundle), config) is None
    other = dataclasses.replace(
        config, forensics=dataclasses.replace(config.forensics, ela_quality=75)
    )
    with pytest.raises(ModelError, match="ELA quality"):
        make_ela_check(ModelRegistry(config.models_dir), other)


def test_checks_run_at_once_give_the_same_report(portrait):
    """The service runs the forensic checks on threads ([forensics] workers): same records."""
    from kiosk.runtime.forensics.suite import ForensicSuite

    suite = ForensicSuite.from_config(load_config())
    capture = Capture(portrait, (200.0, 60.0, 330.0, 240.0))
    one_at_a_time = suite.run(capture)
    assert len(one_at_a_time) >= 4 and all("error" not in r for r in one_at_a_time.values())
    assert suite.run(capture, workers=3) == one_at_a_time
