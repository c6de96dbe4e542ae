import pytest

from kiosk.cli import main
from kiosk.config import load_config, parse_config
from kiosk.contract.errors import ConfigError


def test_default_config_is_valid(capsys):
    config = load_config()
    assert config.gates.min_face_px == 100
    assert main(["--validate-config"]) == 0
    assert "valid" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"gates": {"min_face_pix": 90}}, "unknown key gates.min_face_pix"),
        ({"gate": {}}, r"unknown section \[gate\]"),
        ({"gates": {"min_face_px": "big"}}, "gates.min_face_px = 'big' must be an int"),
        ({"detector": {"threshold_onet": 1.5}}, r"detector.threshold_onet = 1.5 is outside"),
        ({"models": "models"}, r"\[models\] must be a table"),
    ],
)
def test_bad_config_names_the_key(raw, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(raw)


def test_ints_accepted_for_floats():
    assert parse_config({"input": {"max_megapixels": 20}}).input.max_megapixels == 20.0


def test_validate_config_reports_bad_file(tmp_path, capsys):
    path = tmp_path / "kiosk.toml"
    path.write_text("[gates]\nmin_face_px = 0\n")
    assert main(["--config", str(path), "--validate-config"]) == 2
    assert "gates.min_face_px" in capsys.readouterr().err
    path.write_text("[gates\n")
    assert main(["--config", str(path), "--validate-config"]) == 2
