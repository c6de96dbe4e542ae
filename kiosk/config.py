"""Kiosk configuration: `firmware_config/kiosk.toml`, validated into frozen dataclasses.

Unknown keys are refused (a typo must not silently fall back to a default) and every error names
the key path. Relative paths are resolved against the project root.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kiosk.contract.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "firmware_config" / "kiosk.toml"


@dataclass(frozen=True)
class ModelsConfig:
    dir: str = "models"
    num_threads: int = 1
    # Ed25519 public key (PEM) that must have signed the bundle's manifest.sig; empty: loaded
    # unchecked with a warning (a developer checkout: no private key may live in git).
    public_key: str = ""

    @property
    def public_key_path(self) -> Path | None:
        return resolve(self.public_key) if self.public_key else None


@dataclass(frozen=True)
class MtcnnSettings:
    """MTCNN cascade parameters; the defaults are the `mtcnn` package's. They live with the
    configuration because the kiosk's [detector] section is these settings."""

    min_face_size: int = 20
    scale_factor: float = 0.709
    threshold_pnet: float = 0.6
    threshold_rnet: float = 0.7
    threshold_onet: float = 0.8
    nms_pnet_scale: float = 0.5
    nms_pnet_all: float = 0.7
    nms_rnet: float = 0.7
    nms_onet: float = 0.7


@dataclass(frozen=True)
class DetectorConfig(MtcnnSettings):
    """The MTCNN cascade's settings, with the kiosk's own default minimum face size."""

    min_face_size: int = 40


@dataclass(frozen=True)
class LandmarksConfig:
    model: str = ""  # empty: face-recognition-models, then /usr/share/dlib
    box_scale: float = 1.0


@dataclass(frozen=True)
class GatesConfig:
    min_face_px: int = 100


@dataclass(frozen=True)
class InputConfig:
    """What one input may cost; `kiosk check`/`forensics` stay under 300 MB (docs/input.md)."""

    max_megapixels: float = 50.0  # any format; JPEGs are decoded at reduced scale
    max_full_decode_megapixels: float = 16.0  # PNG, BMP, TIFF, WebP: decoded whole
    max_file_mb: int = 200  # file size, checked before anything is read
    work_megapixels: float = 1.3  # checks run on a copy at most this large (as on the preview)

    def __post_init__(self) -> None:
        bounds = {
            "max_full_decode_megapixels": (0.1, 1000.0),
            "max_file_mb": (1, 100_000),
            "work_megapixels": (0.1, 100.0),
        }
        for key, (low, high) in bounds.items():
            if not low <= getattr(self, key) <= high:
                raise ConfigError(
                    f"input.{key} = {getattr(self, key)!r} is outside [{low}, {high}]"
                )


@dataclass(frozen=True)
class ForensicsConfig:
    sr_token_px: int = 256  # faces smaller than this (box side, px) are super-resolved
    ela_quality: int = 90  # JPEG quality of the Error Level Analysis re-save


@dataclass(frozen=True)
class StoreConfig:
    dir: str = "data/captures"  # on a Pi: /var/lib/kiosk/captures (the unit's StateDirectory)
    key_file: str = "data/captures.key"  # AES-256 key, created with mode 0600 on first run
    min_free_mb: int = 200  # captures are refused when less space than this would remain

    @property
    def path(self) -> Path:
        return resolve(self.dir)

    @property
    def key_path(self) -> Path:
        return resolve(self.key_file)


@dataclass(frozen=True)
class ServiceConfig:
    source: str = "camera:0"  # camera[:N], picamera, or a folder / image / video to replay
    replay_fps: float = 10.0
    replay_loop: bool = True
    preview_width: int = 640  # the checks run on this low-resolution stream
    smoothing_frames: int = 5  # N: prompts are smoothed over the last N frame verdicts
    ready_frames: int = 3  # K: consecutive passing frames before the still is taken
    retry_min_s: float = 0.5  # camera reconnect backoff, doubling up to retry_max_s
    retry_max_s: float = 10.0
    stall_s: float = 10.0  # /health reports 503 when the loop has not turned for this long
    capture_quality: int = 95  # JPEG quality of stored captures


@dataclass(frozen=True)
class ConsoleConfig:
    host: str = "127.0.0.1"  # any other address requires a token
    port: int = 8080
    token: str = ""
    preview_fps: float = 10.0
    max_body_bytes: int = 4096
    # Host names the console answers to besides loopback and `host` (an address on 0.0.0.0).
    allowed_hosts: list[str] = field(default_factory=list)
    idle_timeout_s: float = 5.0  # a connection without a complete request is closed after this
    max_connections: int = 32  # beyond this the oldest idle connection is closed
    max_header_bytes: int = 8192
    max_preview_viewers: int = 4
    session_s: float = 43200.0  # operator sign-in (/login) lasts this long
    max_token_failures: int = 5  # wrong tokens per client per minute before 429


@dataclass(frozen=True)
class Config:
    models: ModelsConfig = field(default_factory=ModelsConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    landmarks: LandmarksConfig = field(default_factory=LandmarksConfig)
    gates: GatesConfig = field(default_factory=GatesConfig)
    input: InputConfig = field(default_factory=InputConfig)
    forensics: ForensicsConfig = field(default_factory=ForensicsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    service: ServiceConfig = field(default_factory=ServiceConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)

    @property
    def models_dir(self) -> Path:
        return resolve(self.models.dir)


BOUNDS: dict[str, tuple[float, float]] = {
    "models.num_threads": (1, 64),
    "detector.min_face_size": (12, 2000),
    "detector.threshold_pnet": (0.0, 1.0),
    "detector.threshold_rnet": (0.0, 1.0),
    "detector.threshold_onet": (0.0, 1.0),
    "detector.scale_factor": (0.3, 0.95),
    "detector.nms_pnet_scale": (0.0, 1.0),
    "detector.nms_pnet_all": (0.0, 1.0),
    "detector.nms_rnet": (0.0, 1.0),
    "detector.nms_onet": (0.0, 1.0),
    "landmarks.box_scale": (0.5, 2.0),
    "gates.min_face_px": (1, 10000),
    "input.max_megapixels": (0.1, 1000.0),
    "forensics.sr_token_px": (16, 4096),
    "forensics.ela_quality": (50, 100),
    "store.min_free_mb": (0, 1_000_000),
    "service.replay_fps": (0.1, 1000.0),
    "service.preview_width": (160, 4096),
    "service.smoothing_frames": (1, 100),
    "service.ready_frames": (1, 100),
    "service.retry_min_s": (0.01, 60.0),
    "service.retry_max_s": (0.01, 3600.0),
    "service.stall_s": (1.0, 3600.0),
    "service.capture_quality": (50, 100),
    "console.port": (0, 65535),
    "console.preview_fps": (0.5, 60.0),
    "console.max_body_bytes": (64, 1_048_576),
}


def resolve(path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else PROJECT_ROOT / candidate


def load_config(path: Path | str | None = None) -> Config:
    """Read and validate a TOML config; no path means the project's default file."""
    path = Path(path) if path else DEFAULT_CONFIG
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    return parse_config(raw, source=str(path))


def parse_config(raw: dict[str, Any], source: str = "config") -> Config:
    sections = {}
    fields = {f.name: f for f in dataclasses.fields(Config)}
    for name, value in raw.items():
        if name not in fields:
            raise ConfigError(f"{source}: unknown section [{name}]; known: {', '.join(fields)}")
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        sections[name] = _section(fields[name].default_factory, name, value, source)
    return Config(**sections)


def _section(cls: type, section: str, values: dict[str, Any], source: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    parsed = {}
    for key, value in values.items():
        where = f"{section}.{key}"
        if key not in known:
            raise ConfigError(f"{source}: unknown key {where}; known: {', '.join(known)}")
        expected = type(getattr(cls(), key))
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if type(value) is not expected:
            raise ConfigError(f"{source}: {where} = {value!r} must be a {expected.__name__}")
        if where in BOUNDS:
            low, high = BOUNDS[where]
            if not low <= value <= high:
                raise ConfigError(f"{source}: {where} = {value!r} is outside [{low}, {high}]")
        parsed[key] = value
    return cls(**parsed)
