"""training.kiosk_json: the kiosk's own command over a folder, one record per picture."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO
from training.kiosk_json import kiosk_records


def test_forensics_records_one_per_picture_with_a_named_bundle(tmp_path: Path) -> None:
    folder = tmp_path / "pictures"
    folder.mkdir()
    shutil.copy(REPO / "tests" / "data" / "face_open.jpg", folder / "a.jpg")
    (folder / "b.jpg").write_bytes(b"not a picture")
    records = kiosk_records("forensics", folder, REPO / "models")
    assert sorted(Path(r["source"]).name for r in records) == ["a.jpg", "b.jpg"]
    good = next(r for r in records if r["source"].endswith("a.jpg"))
    assert good["splice"]["model"] == "trees+cnn"
    assert next(r for r in records if r["source"].endswith("b.jpg")).get("error")
    assert list(tmp_path.iterdir()) == [folder]  # nothing written beside the folder


def test_the_named_bundle_is_the_one_used(tmp_path: Path) -> None:
    folder = tmp_path / "pictures"
    folder.mkdir()
    shutil.copy(REPO / "tests" / "data" / "face_open.jpg", folder / "a.jpg")
    empty = tmp_path / "no_models"
    empty.mkdir()
    with pytest.raises(RuntimeError, match="kiosk forensics failed"):
        kiosk_records("forensics", folder, empty)


def test_a_failing_command_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="kiosk nonsense failed"):
        kiosk_records("nonsense", tmp_path)


def test_a_named_bundle_keeps_every_other_setting(tmp_path: Path) -> None:
    """`--models` replaces the bundle alone: the rest is the project config (a bare [models]
    file would fall back to the code's defaults, e.g. other detector passes)."""
    from kiosk.config import load_config

    other = tmp_path / "bundle"
    shipped, named = load_config(), load_config(None, other)
    assert named.models.dir == str(other.absolute()) != shipped.models.dir
    assert named.detector == shipped.detector and named.store == shipped.store
    assert named.gates == shipped.gates and named.icao == shipped.icao
    assert named.models.public_key == shipped.models.public_key
