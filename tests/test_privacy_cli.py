"""`kiosk vsi` and `kiosk diag` through a parser built like kiosk/cli.py builds it."""

from __future__ import annotations

import argparse
import json
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from kiosk.cli import privacy as cli
from kiosk.runtime.privacy.encryption import encrypt


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="kiosk")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    return args.func(args)


@pytest.fixture(scope="module")
def face() -> np.ndarray:
    return cv2.resize(data.astronaut(), (96, 96), interpolation=cv2.INTER_AREA)


@pytest.fixture()
def frames(tmp_path, face):
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(face).save(folder / "a.png")
    Image.fromarray(face[::-1].copy()).save(folder / "b.png")
    return folder


@pytest.fixture()
def key(tmp_path):
    path = tmp_path / "diag.key"
    assert run("diag", "keygen", str(path)) == 0
    return path


def test_vsi_json(tmp_path, face, capsys):
    plain, encrypted = tmp_path / "plain.png", tmp_path / "enc.png"
    Image.fromarray(face).save(plain)
    Image.fromarray(encrypt(face, bytes(32), "xor", 5).pixels).save(encrypted)
    assert run("vsi", str(plain), str(plain), "--json") == 0
    same = json.loads(capsys.readouterr().out)
    assert set(same) == {"vsi", "rd", "gs"} and same["vsi"] == pytest.approx(2.0)
    assert run("vsi", str(plain), str(encrypted), "--json", "--alpha", "0.2") == 0
    assert json.loads(capsys.readouterr().out)["vsi"] < 1.2
    assert run("vsi", str(plain), str(encrypted)) == 0
    assert capsys.readouterr().out.startswith("VSI ")


def test_vsi_bad_input_is_one_line_and_exit_2(tmp_path, face, capsys):
    plain, small, text = tmp_path / "plain.png", tmp_path / "small.png", tmp_path / "x.png"
    Image.fromarray(face).save(plain)
    Image.fromarray(face[:20, :20].copy()).save(small)
    text.write_text("not an image")
    for other in (small, text, tmp_path / "missing.png"):
        assert run("vsi", str(plain), str(other)) == 2
        err = capsys.readouterr().err
        assert err.startswith("kiosk vsi: error:") and err.count("\n") == 1
    assert run("vsi", str(small), str(small)) == 2
    assert "at least 32 px" in capsys.readouterr().err


def test_export_then_decrypt_restores_the_frames(tmp_path, frames, key, face):
    package = tmp_path / "diag.zip"
    assert run("diag", "export", str(frames), "--key", str(key), "--out", str(package)) == 0
    with zipfile.ZipFile(package) as archive:
        manifest = json.loads(archive.read("manifest.json"))
        assert sorted(archive.namelist()) == ["frame_000.png", "frame_001.png", "manifest.json"]
    assert manifest["scheme"] == "xor" and manifest["strength"] == 5
    assert all(f["vsi"] <= manifest["vsi_threshold"] for f in manifest["frames"])
    assert "a.png" not in json.dumps(manifest)  # no original file names leave the kiosk
    out = tmp_path / "restored"
    assert run("diag", "decrypt", str(package), "--key", str(key), "--out", str(out)) == 0
    restored = np.asarray(Image.open(out / "frame_000.png"))
    np.testing.assert_array_equal(restored, face)


def test_frames_above_the_threshold_are_refused(tmp_path, frames, key, capsys):
    package = tmp_path / "leaky.zip"
    argv = ["diag", "export", str(frames / "a.png"), "--key", str(key), "--out", str(package)]
    assert run(*argv, "--threshold", "0.1") == 1  # stricter than any encryption can score
    assert "REFUSED" in capsys.readouterr().out
    assert not package.exists()


def test_vsi_size_option(tmp_path, face, capsys):
    big = cv2.resize(face, (640, 640), interpolation=cv2.INTER_LINEAR)
    plain = tmp_path / "plain.png"
    Image.fromarray(big).save(plain)
    assert run("vsi", str(plain), str(plain), "--json", "--size", "64") == 0
    assert json.loads(capsys.readouterr().out)["vsi"] == pytest.approx(2.0)
    with pytest.raises(SystemExit):
        run("vsi", str(plain), str(plain), "--size", "5000")


def test_decrypt_errors(tmp_path, frames, key, capsys):
    package = tmp_path / "diag.zip"
    assert run("diag", "export", str(frames), "--key", str(key), "--out", str(package)) == 0
    other = tmp_path / "other.key"
    assert run("diag", "keygen", str(other)) == 0
    assert run("diag", "keygen", str(other)) == 2  # never overwrites a key
    out = str(tmp_path / "out")
    assert run("diag", "decrypt", str(package), "--key", str(other), "--out", out) == 2
    assert "wrong key" in capsys.readouterr().err
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"PK not really")
    assert run("diag", "decrypt", str(broken), "--key", str(key), "--out", out) == 2
    assert "not a valid diagnostic package" in capsys.readouterr().err
    missing = str(tmp_path / "missing.zip")
    assert run("diag", "decrypt", missing, "--key", str(key), "--out", out) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run("diag", "export", str(empty), "--key", str(key), "--out", str(package)) == 2
