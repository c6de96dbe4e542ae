"""`kiosk export`: decrypted JPEGs plus JSON/CSV records, beside a running writer."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

from kiosk.cli import main
from kiosk.service.store import CaptureRecord, CaptureStore


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "kiosk.toml"
    config.write_text(
        f'[store]\ndir = "{tmp_path / "captures"}"\nkey_file = "{tmp_path / "capture.key"}"\n'
    )
    return config


def test_export_decrypts_with_sidecars(tmp_path, capsys):
    config = write_config(tmp_path)
    base = CaptureRecord(
        session_id="s1",
        created="2026-11-20T10:00:00Z",
        decision="accept",
        verdict={"decision": "accept", "reasons": [], "checks": {"veil": {"score": 0.25}}},
        forensics={"jpeg_history": 0.1},
        models={"veil": "ab" * 32},
    )
    writer = CaptureStore(tmp_path / "captures", tmp_path / "capture.key")
    old = writer.save(base, b"\xff\xd8old")
    new = writer.save(
        replace(base, session_id="s2", created="2026-11-21T10:00:00Z"), b"\xff\xd8new"
    )
    # The writer stays open (the service), the export reads beside it.
    out = tmp_path / "out"
    assert main(["--config", str(config), "export", "--out", str(out)]) == 0
    assert "exported 2 capture(s)" in capsys.readouterr().out
    assert (out / f"{old}.jpg").read_bytes() == b"\xff\xd8old"
    assert (out / f"{new}.jpg").read_bytes() == b"\xff\xd8new"
    assert oct(out.stat().st_mode & 0o777) == "0o700"
    records = json.loads((out / "records.json").read_text())
    assert [r["id"] for r in records] == [old, new]  # oldest first
    assert records[0]["forensics"] == {"jpeg_history": 0.1}
    rows = list(csv.DictReader((out / "records.csv").open()))
    assert rows[1]["session_id"] == "s2"
    assert rows[1]["score_veil"] == "0.25"
    assert json.loads(rows[1]["models"]) == {"veil": "ab" * 32}

    since = tmp_path / "since"
    assert (
        main(["--config", str(config), "export", "--out", str(since), "--since", "2026-11-21"]) == 0
    )
    assert [r["id"] for r in json.loads((since / "records.json").read_text())] == [new]

    # An altered file is skipped and named; the rest is still exported.
    (tmp_path / "captures" / "images" / f"{old}.cap").write_bytes(b"IDKC1" + bytes(40))
    assert main(["--config", str(config), "export", "--out", str(tmp_path / "o2")]) == 1
    assert "failed authentication" in capsys.readouterr().err
    writer.close()


def test_export_without_store_or_key_is_a_clear_error(tmp_path, capsys):
    config = write_config(tmp_path)
    assert main(["--config", str(config), "export", "--out", str(tmp_path / "o")]) == 2
    assert "no capture store" in capsys.readouterr().err
    CaptureStore(tmp_path / "captures", tmp_path / "capture.key").close()
    (tmp_path / "capture.key").unlink()
    assert main(["--config", str(config), "export", "--out", str(tmp_path / "o")]) == 2
    assert "key file" in capsys.readouterr().err


def test_export_writes_token_photos_and_print_sheet(tmp_path, capsys):
    """A capture stored with its token photo exports the still, the token, the Token Frontal
    image and, with --print-sheet, a 10x15 cm sheet at 300 dpi; every check's value is in the
    CSV."""
    import numpy as np
    from PIL import Image

    from kiosk.runtime.token.render import encode_jpeg

    config = write_config(tmp_path)
    token_jpeg = encode_jpeg(np.full((1063, 827, 3), 90, np.uint8), 600)
    frontal_jpeg = encode_jpeg(np.full((640, 480, 3), 90, np.uint8), 600)
    verdict = {
        "decision": "accept",
        "reasons": [],
        "checks": {"framing": {"score": 0.0, "value": 0.0, "limit": 0.0}, "veil": {"score": 0.2}},
    }
    record = CaptureRecord(
        session_id="s1",
        created="2026-11-20T10:00:00Z",
        decision="accept",
        verdict=verdict,
        token={"format": "icao_35x45", "geometry": {"head_ratio": 0.75}, "warnings": []},
    )
    with CaptureStore(tmp_path / "captures", tmp_path / "capture.key") as writer:
        with_token = writer.save(record, b"\xff\xd8still", token_jpeg, frontal_jpeg)
        without = writer.save(replace(record, token={}), b"\xff\xd8plain")
    out = tmp_path / "out"
    assert main(["--config", str(config), "export", "--out", str(out), "--print-sheet"]) == 0
    capsys.readouterr()
    assert (out / f"{with_token}.jpg").read_bytes() == b"\xff\xd8still"
    assert (out / f"{with_token}_token.jpg").read_bytes() == token_jpeg
    assert (out / f"{with_token}_token_frontal.jpg").read_bytes() == frontal_jpeg
    with Image.open(out / f"{with_token}_print.jpg") as sheet:
        assert sorted(sheet.size) == [1181, 1772]
        assert sheet.info["dpi"] == (300, 300)
    assert not list(out.glob(f"{without}_*"))
    records = {r["id"]: r for r in json.loads((out / "records.json").read_text())}
    assert records[with_token]["token"]["format"] == "icao_35x45"
    assert records[with_token]["token_image"] == f"{with_token}_token.jpg"
    assert records[with_token]["print_sheet"] == f"{with_token}_print.jpg"
    rows = {r["id"]: r for r in csv.DictReader((out / "records.csv").open())}
    assert rows[with_token]["value_framing"] == "0.0"
    assert rows[with_token]["token"] == f"{with_token}_token.jpg"
    assert rows[without]["token"] == ""
    # Without --print-sheet: the images, no sheet.
    plain = tmp_path / "plain"
    assert main(["--config", str(config), "export", "--out", str(plain)]) == 0
    assert (plain / f"{with_token}_token.jpg").exists()
    assert not (plain / f"{with_token}_print.jpg").exists()
