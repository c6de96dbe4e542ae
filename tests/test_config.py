import dataclasses
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

import kiosk.config as config_module
from kiosk.cli import main
from kiosk.config import (
    ConsoleConfig,
    ServiceConfig,
    TokenFormat,
    find_config,
    load_config,
    parse_config,
)
from kiosk.contract.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
TOKEN = "k7Qp2xVn9Lr4Tz8Wm3Hs"


def test_default_config_is_valid(capsys):
    config = load_config()
    assert config.gates.min_face_px == 100
    assert main(["--validate-config"]) == 0
    assert "valid" in capsys.readouterr().out


def test_project_file_paths_resolve_from_its_folder():
    config = load_config(REPO / "firmware_config" / "kiosk.toml")
    assert config.models_dir == REPO / "models"
    assert (config.models_dir / "manifest.json").is_file()
    assert config.store.path == REPO / "data" / "captures"
    assert config.store.key_path == REPO / "data" / "captures.key"
    assert config.models.public_key_path is None and config.landmarks.model == ""


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"gates": {"min_face_pix": 90}}, "unknown key gates.min_face_pix"),
        ({"gate": {}}, r"unknown section \[gate\]"),
        ({"gates": {"min_face_px": "big"}}, "gates.min_face_px = 'big' must be an int"),
        ({"gates": {"min_face_px": 1.5}}, "gates.min_face_px = 1.5 must be an int"),
        ({"service": {"replay_fps": True}}, "service.replay_fps = True must be a float"),
        ({"detector": {"threshold_onet": 1.5}}, r"detector.threshold_onet = 1.5 is outside"),
        ({"console": {"idle_timeout_s": 0}}, r"console.idle_timeout_s = 0.0 is outside \[0.5"),
        ({"console": {"max_connections": 1}}, r"console.max_connections = 1 is outside \[4,"),
        ({"models": "models"}, r"\[models\] must be a table"),
        ({"icao": {"max_yaw_deg": 50}}, r"icao.max_yaw_deg = 50.0 is outside \[0.0, 45.0\]"),
        ({"token": {"print_sheet": {"dpi": 10}}}, r"token.print_sheet.dpi = 10 is outside"),
    ],
)
def test_bad_config_names_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"service": {"retry_min_s": 20.0}}, "retry_min_s = 20.0 exceeds service.retry_max_s"),
        ({"service": {"source": "camera:x"}}, "camera index must be a number"),
        ({"service": {"source": "no/such/folder"}}, "does not exist"),
        ({"console": {"host": "0.0.0.0"}}, "set console.token"),
        ({"console": {"host": "192.168.1.20"}}, "set console.token"),
        ({"console": {"host": "::", "token": TOKEN}}, "console.allowed_hosts"),
        ({"console": {"token": "short"}}, "at least 16 characters"),
        ({"console": {"token": "0123456789abcdef"}}, "too easy to guess"),
        ({"console": {"allowed_hosts": ["kiosk.local:80"]}}, "not a host name"),
        ({"forensics": {"ela_quality": 75}}, "differs from 90, the quality the tamper_ela"),
        ({"landmarks": {"box_scale": 1.2}}, "box_scale = 1.2 differs from 1.0"),
        ({"token": {"default_format": "a4"}}, "token.default_format = 'a4' is not one of"),
        ({"detector": {"backend": "mtcnn", "fallback": "blazeface"}}, 'backend = "yunet"'),
    ],
)
def test_cross_field_rules(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_rules_allow_what_they_should():
    names = ["kiosk-3.local", "192.168.1.20", "fe80::1"]
    config = parse_config(
        {
            "console": {"host": "0.0.0.0", "token": TOKEN, "allowed_hosts": names},
            "service": {"source": "camera:2", "retry_min_s": 10.0, "retry_max_s": 10.0},
            "forensics": {"ela_quality": 90},  # repeating the model's own is fine
            "landmarks": {"box_scale": 1},
        }
    )
    assert config.console.allowed_hosts == names and config.service.source == "camera:2"
    assert parse_config({"service": {"source": "tests/data"}}).service.source == str(
        REPO / "tests" / "data"
    )


def test_every_error_is_reported_on_its_own_line():
    with pytest.raises(ConfigError) as caught:
        parse_config({"gates": {"min_face_px": 0}, "service": {"stall_s": 0}}, source="k.toml")
    lines = str(caught.value).splitlines()
    assert len(lines) == 2 and all(line.startswith("k.toml: ") for line in lines)


def test_sections_built_in_code_obey_the_same_rules():
    with pytest.raises(ConfigError, match=r"set console\.token"):
        ConsoleConfig(host="0.0.0.0")
    with pytest.raises(ConfigError, match=r"console\.idle_timeout_s = 0\.0 is outside"):
        ConsoleConfig(idle_timeout_s=0.0)
    with pytest.raises(ConfigError, match=r"exceeds service\.retry_max_s"):
        dataclasses.replace(ServiceConfig(), retry_min_s=30.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ServiceConfig().retry_min_s = 1.0  # type: ignore[misc]


def test_token_formats_keep_the_builtin_ones():
    config = load_config()
    assert config.token.default_format == "icao_35x45"
    icao, us = config.token.formats["icao_35x45"], config.token.formats["us_2x2"]
    assert (icao.width_mm, icao.height_mm, icao.dpi) == (35.0, 45.0, 600)
    assert (us.head_min_ratio, us.head_max_ratio) == (0.50, 0.69)
    assert (config.token.print_sheet.width_mm, config.token.print_sheet.dpi) == (100.0, 300)
    extra = {"width_mm": 40, "height_mm": 50, "head_min_ratio": 0.6, "head_max_ratio": 0.75}
    extra |= {"eye_line_from_bottom_min": 0.55, "eye_line_from_bottom_max": 0.7}
    token = parse_config({"token": {"formats": {"lab": {**extra, "background": "grey"}}}}).token
    assert set(token.formats) == {"icao_35x45", "us_2x2", "lab"}
    with pytest.raises(ConfigError, match=r"head_min_ratio = 0\.8 exceeds head_max_ratio"):
        parse_config(
            {"token": {"formats": {"lab": {**extra, "head_min_ratio": 0.8, "background": "x"}}}}
        )
    with pytest.raises(ConfigError, match=r"token\.formats\.lab\.background is required"):
        parse_config({"token": {"formats": {"lab": extra}}})


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    folder = tmp_path / "etc"
    (folder / "replay").mkdir(parents=True)
    path = folder / "kiosk.toml"
    path.write_text(
        '[models]\ndir = "bundle"\npublic_key = "keys/models.pub"\n'
        '[store]\ndir = "../captures"\n[service]\nsource = "replay"\n'
    )
    config = load_config(path)
    assert config.models_dir == folder / "bundle"
    assert config.models.public_key_path == folder / "keys" / "models.pub"
    assert config.store.path == tmp_path / "captures"
    assert config.store.key_path == folder / "data" / "captures.key"  # defaults too
    assert config.service.source == str(folder / "replay")


def test_search_order(tmp_path, monkeypatch):
    system, project, env, given = (tmp_path / f"{n}.toml" for n in ("sys", "proj", "env", "arg"))
    monkeypatch.setattr(config_module, "SYSTEM_CONFIG", system)
    monkeypatch.setattr(config_module, "PROJECT_CONFIG", project)
    monkeypatch.delenv("KIOSK_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="no config file: pass --config FILE"):
        find_config()
    for path, min_face_px in ((project, 101), (system, 102), (env, 103), (given, 104)):
        path.write_text(f"[gates]\nmin_face_px = {min_face_px}\n")
    assert load_config().gates.min_face_px == 102  # /etc before the project's file
    system.unlink()
    assert load_config().gates.min_face_px == 101
    monkeypatch.setenv("KIOSK_CONFIG", str(env))
    assert load_config().gates.min_face_px == 103
    assert load_config(given).gates.min_face_px == 104
    assert main(["--validate-config"]) == 0


def test_ints_accepted_for_floats():
    assert parse_config({"input": {"max_megapixels": 20}}).input.max_megapixels == 20.0


def test_validate_config_reports_bad_file(tmp_path, capsys):
    path = tmp_path / "kiosk.toml"
    path.write_text("[gates]\nmin_face_px = 0\n")
    assert main(["--config", str(path), "--validate-config"]) == 2
    assert "gates.min_face_px" in capsys.readouterr().err
    path.write_text("[gates\n")
    assert main(["--config", str(path), "--validate-config"]) == 2


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('[console]\nhost = "0.0.0.0"\n', "set console.token"),
        ('[service]\nsource = "camera:x"\n', "camera index must be a number"),
        ("[service]\nretry_min_s = 5.0\nretry_max_s = 1.0\n", "exceeds service.retry_max_s"),
        (f'[models]\ndir = "{REPO / "models"}"\n[forensics]\nela_quality = 75\n', "differs"),
    ],
)
def test_validate_config_refuses_what_run_refuses(tmp_path, capsys, monkeypatch, body, message):
    def no_bind(*args: object) -> None:  # a config that passed would get this far
        raise AssertionError("kiosk run accepted the config")

    monkeypatch.setattr("kiosk.service.console.server.bind", no_bind)
    path = tmp_path / "kiosk.toml"
    path.write_text(body)
    assert main(["--config", str(path), "--validate-config"]) == 2
    validate = capsys.readouterr().err
    assert main(["--config", str(path), "run"]) == 2
    assert capsys.readouterr().err == validate and message in validate


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"service": {"replay_fps": float("nan")}}, r"service.replay_fps = nan must be a finite"),
        ({"icao": {"max_yaw_deg": float("inf")}}, r"icao.max_yaw_deg = inf must be a finite"),
        ({"detector": {"backend": "dlib"}}, r"detector.backend = 'dlib' must be 'mtcnn' or"),
        ({"service": {"kiosk_id": "k" * 65}}, r"service.kiosk_id = 'k+' must be at most 64"),
        ({"console": {"allowed_hosts": ["a", 7]}}, r"console.allowed_hosts.1 = 7 must be a str"),
        ({"token": {"formats": {"lab": "x"}}}, r"\[token.formats.lab\] must be a table"),
        ({"forensics": {"ela_quality": 90.0}}, r"forensics.ela_quality = 90.0 must be an int"),
        ({"landmarks": {"box_scale": "1"}}, r"landmarks.box_scale = '1' must be a float"),
    ],
)
def test_types_are_strict(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_every_problem_of_one_section_is_reported_in_field_order():
    raw = {"gates": {"typo": 1, "background_face_ratio": 2, "min_face_px": 0}}
    with pytest.raises(ConfigError) as caught:
        parse_config(raw, source="k.toml")
    assert str(caught.value).splitlines() == [
        "k.toml: gates.min_face_px = 0 is outside [1, 10000]",
        "k.toml: gates.background_face_ratio = 2.0 is outside [0.0, 1.0]",
        "k.toml: unknown key gates.typo; known: min_face_px, background_face_ratio",
    ]


def test_sections_are_frozen_dataclasses_compared_by_value():
    config = load_config()
    assert [f.name for f in dataclasses.fields(config)][:2] == ["models", "detector"]
    assert config == load_config() and hash(config.gates) == hash(load_config().gates)
    assert config.gates != dataclasses.replace(config.gates, min_face_px=101)
    assert repr(config.gates) == "GatesConfig(min_face_px=100, background_face_ratio=0.5)"
    assert pickle.loads(pickle.dumps(config)) == config  # forensic workers get a copy
    with pytest.raises(dataclasses.FrozenInstanceError):
        del config.gates.min_face_px
    with pytest.raises(ConfigError, match=r"unknown key console\.prot; known: host, port"):
        ConsoleConfig(prot=8080)
    with pytest.raises(ConfigError, match=r"token\.formats\.background is required"):
        TokenFormat(width_mm=35, height_mm=45, head_min_ratio=0.7, head_max_ratio=0.8)
    # Values are stored as their declared type: an int given for a float is a float.
    assert type(dataclasses.replace(config.service, replay_fps=5).replay_fps) is float


def test_the_config_module_needs_no_schema_library():
    """pydantic's import and schema build were ~0.25 s of every `kiosk check` (issue 16)."""
    code = (
        "import sys, kiosk.config; print([m for m in ('pydantic', 'msgspec') if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert result.stdout.strip() == "[]"
