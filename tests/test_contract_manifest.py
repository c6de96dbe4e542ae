"""The manifest contract: schema refusals, bundle file checks, signatures, the writer, the CLI."""

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kiosk.cli import main
from kiosk.config import load_config
from kiosk.contract import manifest as manifest_module
from kiosk.contract.errors import ModelError
from kiosk.contract.manifest import (
    MANIFEST,
    SIGNATURE,
    ManifestError,
    generate_key,
    load_manifest,
    read_model,
    remove_entry,
    sign_bundle,
    verify_files,
    verify_signature,
    write_entry,
)
from tests.conftest import REPO

MODEL = b"tiny model bytes " * 8


def shipped() -> dict:
    return json.loads((REPO / "models" / MANIFEST).read_text())


def write_manifest(bundle: Path, data: object) -> None:
    bundle.mkdir(exist_ok=True)
    (bundle / MANIFEST).write_text(json.dumps(data, indent=2))


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    """A one-model bundle written through the only writer."""
    directory = tmp_path / "bundle"
    directory.mkdir()
    (directory / "veil.tflite").write_bytes(MODEL)
    write_entry(
        directory,
        "veil",
        directory / "veil.tflite",
        architecture="SqueezeVGG",
        input_shape=[1, 4, 4, 1],
        quantization="int8",
        threshold=0.5,
        metrics={"test_int8": {"at_threshold_threshold": 0.5, "auc": 0.9}},
    )
    return directory


@pytest.fixture()
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return generate_key(tmp_path / "office")


def test_shipped_manifest_validates_and_every_file_verifies() -> None:
    manifest = load_manifest(REPO / "models")
    raw = (REPO / "models" / MANIFEST).read_bytes()
    assert manifest.raw_bytes == raw and manifest.sha256 == hashlib.sha256(raw).hexdigest()
    assert set(manifest.models) == set(shipped()["models"])
    verify_files(REPO / "models", manifest)
    assert manifest.models["veil"].extra["metrics"]["test_int8"]["auc"] > 0.9


def test_entries_keep_every_field_beyond_the_schema() -> None:
    entry = load_manifest(REPO / "models").models["eyes_closed"]
    core = {"file", "sha256", "bytes", "architecture", "input_shape", "quantization", "threshold"}
    assert set(entry.model_extra) == set(shipped()["models"]["eyes_closed"]) - core
    assert entry.extra == {
        "bytes": entry.bytes,
        "architecture": entry.architecture,
        **entry.model_extra,
    }
    assert entry.input_shape == (1, 56, 56, 1) and isinstance(entry.threshold, float)
    entry.extra["metrics"].clear()  # a copy: the loaded entry cannot be changed through it
    assert entry.extra["metrics"]
    again = load_manifest(REPO / "models").models["eyes_closed"]
    assert again == entry and hash(again) == hash(entry)


def entry_edit(name: str, **changes: object):
    def edit(data: dict) -> dict:
        data["models"][name].update(changes)
        return data

    return edit


BAD_MANIFESTS = {
    "threshold NaN": (entry_edit("eyes_closed", threshold=math.nan), "eyes_closed.threshold"),
    "threshold inf": (entry_edit("veil", threshold=math.inf), "finite number"),
    "threshold 0.999": (entry_edit("tamper_ela", threshold=0.999), "must lie in [0.01, 0.99]"),
    "threshold 0": (entry_edit("tamper_ela", threshold=0), "must lie in"),
    "threshold 1": (entry_edit("tamper_ela", threshold=1.0), "must lie in"),
    "threshold text": (entry_edit("tamper_ela", threshold="0.5"), "valid number"),
    "threshold bool": (entry_edit("tamper_ela", threshold=True), "valid number"),
    "threshold edited by hand": (
        entry_edit("eyes_closed", threshold=0.5),
        "differs from metrics.threshold",
    ),
    "models list": (lambda d: {"models": []}, "models: Input should be a valid dictionary"),
    "models null": (lambda d: {"models": None}, "models: Input should be a valid dictionary"),
    "models empty": (lambda d: {"models": {}}, "at least 1 item"),
    "no models key": (lambda d: {"model": d["models"]}, "models: Field required"),
    "top-level list": (lambda d: [d], "must be a JSON object"),
    "file /dev/zero": (entry_edit("veil", file="/dev/zero"), "veil.file: must be a relative"),
    "file ../": (entry_edit("veil", file="../veil.tflite"), "no leading /, no .."),
    "file empty": (entry_edit("veil", file=""), "veil.file"),
    "file not text": (entry_edit("veil", file=7), "veil.file"),
    "unknown architecture": (
        entry_edit("veil", architecture="ResNet-1000"),
        "unknown architecture",
    ),
    "shape zero": (entry_edit("veil", input_shape=[1, 0, 128, 1]), "sizes must be positive"),
    "shape negative": (entry_edit("veil", input_shape=[1, -2, 128, 1]), "sizes must be positive"),
    "shape text": (entry_edit("veil", input_shape=[1, "128", 128, 1]), "input_shape.1"),
    "shape float": (entry_edit("veil", input_shape=[1, 1.5, 128, 1]), "input_shape.1"),
    "shape not a list": (entry_edit("veil", input_shape="1x128"), "input_shape"),
    "tflite without shape": (entry_edit("veil", input_shape=[]), "must state its input shape"),
    "sha256 short": (entry_edit("veil", sha256="abc"), "64 lowercase hex"),
    "sha256 upper": (
        entry_edit("veil", sha256=shipped()["models"]["veil"]["sha256"].upper()),
        "64 lowercase hex",
    ),
    "bytes zero": (entry_edit("veil", bytes=0), "veil.bytes"),
    "bytes huge": (entry_edit("veil", bytes=1 << 40), "veil.bytes"),
    "bad name": (lambda d: {"models": {"Veil Model": d["models"]["veil"]}}, "model name"),
    "missing fields": (lambda d: {"models": {"x": {"file": "x"}}}, "models.x.sha256: Field"),
    "entry not an object": (lambda d: {"models": {"x": [1]}}, "models.x: Input should be a valid"),
    "seven problems": (
        lambda d: {"models": {"x": {"file": "/x", "input_shape": "1"}}},
        "models.x.file: must be a relative path inside the bundle (no leading /, no ..) (got '/x')"
        "; models.x.sha256: Field required; models.x.bytes: Field required; models.x.architecture"
        ": Field required; models.x.input_shape: Input should be a valid tuple (got '1'); and 1 more",
    ),
}


@pytest.mark.parametrize("case", BAD_MANIFESTS, ids=list(BAD_MANIFESTS))
def test_bad_manifest_is_refused_naming_the_field(tmp_path: Path, case: str) -> None:
    edit, expected = BAD_MANIFESTS[case]
    write_manifest(tmp_path, edit(shipped()))
    with pytest.raises(ManifestError, match=r"model manifest .*manifest\.json") as caught:
        load_manifest(tmp_path)
    assert expected in str(caught.value)
    assert isinstance(caught.value, ModelError)  # the kiosk reports it as "checks unavailable"


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[" * 100_000, "not valid JSON"),  # RecursionError, not a traceback
        (b'{"models": {"a": {}, "a": {}}}', "'a' appears twice"),
        (b" " * (1 << 20) + b"{}", "larger than"),
    ],
    ids=["not utf-8", "not json", "deep", "duplicate name", "oversized"],
)
def test_unreadable_manifest_bytes_are_refused(tmp_path: Path, content: bytes, expected: str):
    (tmp_path / MANIFEST).write_bytes(content)
    with pytest.raises(ManifestError, match=expected):
        load_manifest(tmp_path)


def test_special_manifest_paths_are_refused_without_blocking(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no model manifest"):
        load_manifest(tmp_path)
    (tmp_path / MANIFEST).mkdir()
    with pytest.raises(ManifestError, match="not a regular file"):
        load_manifest(tmp_path)
    fifo_dir = tmp_path / "fifo"
    fifo_dir.mkdir()
    os.mkfifo(fifo_dir / MANIFEST)
    with pytest.raises(ManifestError, match="not a regular file"):
        load_manifest(fifo_dir)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ManifestError, match="missing or unreadable"):
        load_manifest(tmp_path / "file")


def test_model_files_must_be_regular_files_inside_the_bundle(bundle: Path, tmp_path: Path):
    manifest = load_manifest(bundle)
    assert read_model(bundle, "veil", manifest.models["veil"]) == MODEL
    model = bundle / "veil.tflite"
    model.unlink()
    with pytest.raises(ManifestError, match="missing or unreadable"):
        verify_files(bundle, manifest)
    model.symlink_to("/dev/zero")  # used to read until MemoryError
    with pytest.raises(ManifestError, match="resolves outside the bundle"):
        verify_files(bundle, manifest)
    outside = tmp_path / "outside.tflite"
    outside.write_bytes(MODEL)
    model.unlink()
    model.symlink_to(outside)  # same bytes, but not part of the bundle
    with pytest.raises(ManifestError, match="resolves outside the bundle"):
        verify_files(bundle, manifest)
    model.unlink()
    os.mkfifo(model)  # would block a plain open()
    with pytest.raises(ManifestError, match="not a regular file"):
        verify_files(bundle, manifest)
    model.unlink()
    model.mkdir()
    with pytest.raises(ManifestError, match="not a regular file"):
        verify_files(bundle, manifest)
    model.rmdir()
    model.write_bytes(MODEL + b"x")
    with pytest.raises(
        ManifestError, match=r"does not match the manifest \(more than 136 bytes expected\)"
    ):
        verify_files(bundle, manifest)
    model.write_bytes(MODEL[:-1])
    with pytest.raises(
        ManifestError, match=r"does not match the manifest \(135 bytes, 136 bytes expected\)"
    ):
        verify_files(bundle, manifest)
    model.write_bytes(MODEL[:-1] + b"!")
    with pytest.raises(ManifestError, match="does not match the manifest"):
        verify_files(bundle, manifest)
    (bundle / "inner").mkdir()
    (bundle / "inner" / "real.tflite").write_bytes(MODEL)
    model.unlink()
    model.symlink_to("inner/real.tflite")  # a link that stays inside is fine
    verify_files(bundle, manifest)


@pytest.mark.parametrize("chunk", [7, 1 << 20])  # several reads per file, or one
def test_read_model_refuses_what_verify_files_refuses(bundle: Path, chunk: int, monkeypatch):
    """read_model reads a file into one buffer, verify_files hashes it chunk by chunk: both
    refuse the same altered files."""
    monkeypatch.setattr(manifest_module, "_CHUNK", chunk)
    manifest = load_manifest(bundle)
    entry = manifest.models["veil"]
    verify_files(bundle, manifest)
    model = bundle / "veil.tflite"
    for content, message in (
        (MODEL + b"x", "more than 136 bytes"),
        (MODEL[:-1], "135 bytes, 136 bytes expected"),
        (MODEL[:-1] + b"!", "sha256"),
    ):
        model.write_bytes(content)
        with pytest.raises(ManifestError, match=message):
            read_model(bundle, "veil", entry)
        with pytest.raises(ManifestError, match=message):
            verify_files(bundle, manifest)


def test_signed_bundle_verifies_and_tampering_is_refused(bundle: Path, keys, tmp_path: Path):
    private, public = keys
    assert private.stat().st_mode & 0o777 == 0o600
    with pytest.raises(ManifestError, match="not signed"):
        verify_signature(bundle, public)
    sign_bundle(bundle, private)
    fingerprint = verify_signature(bundle, public)
    assert len(fingerprint) == 64

    _, other_public = generate_key(tmp_path / "other")
    with pytest.raises(ManifestError, match="signed with another key"):
        verify_signature(bundle, other_public)

    manifest_path = bundle / MANIFEST
    original = manifest_path.read_bytes()
    manifest_path.write_bytes(original.replace(b'"auc": 0.9', b'"auc": 0.99'))
    with pytest.raises(ManifestError, match="changed after signing"):
        verify_signature(bundle, public)
    manifest_path.write_bytes(original + b" ")  # even whitespace: the exact bytes are signed
    with pytest.raises(ManifestError, match="changed after signing"):
        verify_signature(bundle, public)
    manifest_path.write_bytes(original)
    verify_signature(bundle, public)

    (bundle / SIGNATURE).write_text("garbage")
    with pytest.raises(ManifestError, match="damaged"):
        verify_signature(bundle, public)
    with pytest.raises(ManifestError, match="not a PEM public key"):
        verify_signature(bundle, private)
    with pytest.raises(ManifestError, match=r"public key .* is missing"):
        verify_signature(bundle, tmp_path / "nowhere.pub")


def test_a_bundle_that_would_be_refused_is_never_signed(bundle: Path, keys) -> None:
    private, _ = keys
    (bundle / "veil.tflite").write_bytes(MODEL[::-1])
    with pytest.raises(ManifestError, match="does not match the manifest"):
        sign_bundle(bundle, private)
    assert not (bundle / SIGNATURE).exists()
    with pytest.raises(ManifestError, match="already exists"):
        generate_key(private.with_suffix(""))


def test_writer_validates_before_replacing(bundle: Path) -> None:
    path = bundle / MANIFEST
    entry = load_manifest(bundle).models["veil"]
    assert entry.sha256 == hashlib.sha256(MODEL).hexdigest() and entry.bytes == len(MODEL)
    assert entry.extra["git_revision"] and entry.extra["exported"].endswith("Z")
    before = path.read_bytes()
    (bundle / "eyes.tflite").write_bytes(MODEL)
    for bad in (math.nan, 0.999):
        with pytest.raises(ManifestError, match="threshold"):
            write_entry(
                bundle,
                "eyes_closed",
                bundle / "eyes.tflite",
                architecture="SqueezeMiniVGG",
                input_shape=[1, 4, 4, 1],
                quantization="int8",
                threshold=bad,
            )
    assert path.read_bytes() == before
    assert [p.name for p in bundle.iterdir() if p.name.endswith(".tmp")] == []
    with pytest.raises(ManifestError, match="must lie inside"):
        write_entry(bundle, "x", Path(os.devnull), architecture="SqueezeVGG")
    with pytest.raises(ValueError, match="computes sha256"):
        write_entry(bundle, "veil", bundle / "veil.tflite", sha256="0" * 64)


def test_writer_keeps_names_sorted_drops_a_stale_signature_and_can_fix_an_entry(
    bundle: Path, keys
) -> None:
    sign_bundle(bundle, keys[0])
    broken = json.loads((bundle / MANIFEST).read_text())
    broken["models"]["veil"]["threshold"] = None
    broken["models"]["veil"]["architecture"] = "unknown"
    write_manifest(bundle, broken)
    (bundle / "eyes.tflite").write_bytes(MODEL)
    fields = {"architecture": "SqueezeVGG", "input_shape": [1, 4, 4, 1], "quantization": "int8"}
    with pytest.raises(ManifestError, match=r"veil\.architecture"):
        write_entry(bundle, "eyes_closed", bundle / "eyes.tflite", **fields)
    write_entry(bundle, "veil", bundle / "veil.tflite", threshold=0.4, **fields)
    write_entry(bundle, "eyes_closed", bundle / "eyes.tflite", threshold=0.3, **fields)
    manifest = load_manifest(bundle)
    assert list(manifest.models) == ["eyes_closed", "veil"]
    assert manifest.models["veil"].threshold == 0.4
    assert not (bundle / SIGNATURE).exists()


def test_an_entry_is_removed_as_it_is_written(bundle: Path, keys) -> None:
    """Training drops an entry that must no longer ship (the morph CNN when the trees win):
    the file stays, the stale signature goes, an absent name changes nothing."""
    (bundle / "eyes.tflite").write_bytes(MODEL)
    fields = {"architecture": "SqueezeVGG", "input_shape": [1, 4, 4, 1], "quantization": "int8"}
    write_entry(bundle, "eyes_closed", bundle / "eyes.tflite", **fields)
    sign_bundle(bundle, keys[0])
    remove_entry(bundle, "eyes_closed")
    assert list(load_manifest(bundle).models) == ["veil"]
    assert (bundle / "eyes.tflite").exists() and not (bundle / SIGNATURE).exists()
    before = (bundle / MANIFEST).read_bytes()
    remove_entry(bundle, "eyes_closed")
    assert (bundle / MANIFEST).read_bytes() == before


def test_bundle_cli_keygen_sign_verify(bundle: Path, tmp_path: Path, capsys) -> None:
    prefix = tmp_path / "keys" / "office"
    prefix.parent.mkdir()
    assert main(["bundle", "keygen", "--out", str(prefix)]) == 0
    pub = f"{prefix}.pub"
    assert main(["bundle", "verify", str(bundle), "--public-key", pub]) == 2
    assert "not signed" in capsys.readouterr().err
    assert main(["bundle", "sign", str(bundle), "--key", f"{prefix}.key"]) == 0
    assert main(["bundle", "verify", str(bundle), "--public-key", pub]) == 0
    assert "1 models" in capsys.readouterr().out
    (bundle / "veil.tflite").write_bytes(MODEL[::-1])  # the signature holds, the file does not
    assert main(["bundle", "verify", str(bundle), "--public-key", pub]) == 2
    assert "does not match the manifest" in capsys.readouterr().err
    assert main(["bundle", "verify", str(REPO / "models"), "--no-signature"]) == 0
    config = tmp_path / "kiosk.toml"
    config.write_text("[models]\n")  # no public_key: verify refuses rather than skip silently
    assert main(["--config", str(config), "bundle", "verify", str(REPO / "models")]) == 2
    assert "no public key" in capsys.readouterr().err


def test_contract_is_a_leaf() -> None:
    """Training, deploy and every kiosk layer import it: no OpenCV, numpy or TensorFlow (nor
    pydantic: ~0.25 s of every start, issue 16)."""
    code = (
        "import sys, kiosk.contract.manifest; "
        "print(sorted(m for m in ('cv2', 'numpy', 'tensorflow', 'pydantic') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "[]"


def test_install_script_sets_the_public_key_in_an_older_config(tmp_path: Path) -> None:
    """install-rpi.sh --public-key on a Pi whose kiosk.toml predates the setting."""
    config = tmp_path / "kiosk.toml"
    original = (REPO / "firmware_config" / "kiosk.toml").read_text()
    config.write_text(
        "".join(line for line in original.splitlines(True) if "public_key" not in line)
    )
    script = f"""
        source {REPO / "firmware_config" / "install-rpi.sh"}
        set_key {config} models public_key /etc/kiosk/models.pub
        set_key {config} models public_key /etc/kiosk/models.pub
    """
    subprocess.run(["bash", "-c", script], check=True, capture_output=True)
    assert config.read_text().count("public_key") == 1
    assert load_config(config).models.public_key_path == Path("/etc/kiosk/models.pub")
