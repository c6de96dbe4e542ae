"""Kiosk configuration: one schema for `firmware_config/kiosk.toml` (pydantic dataclasses).

Every section refuses unknown keys (a typo must not silently fall back to a default), bounds and
a description live on each field, and every rule between fields is a validator, so
`kiosk --validate-config` applies exactly what `kiosk run` does. The sections are frozen
pydantic dataclasses: `dataclasses.replace` re-validates, and building one with bad values raises
ConfigError naming the key path, the value and the rule (one line per error).

The file is found by `--config`, then `$KIOSK_CONFIG`, then /etc/kiosk/kiosk.toml, then the
project's firmware_config/kiosk.toml; relative paths in it resolve against its own folder
(a config given as a dict, or a section built in code, resolves against the project root).
Parameters a model was trained with (ELA quality, landmark box scale) come from the bundle's
manifest: the config may only repeat them (docs/configuration.md).
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
import logging
import math
import os
import re
import tomllib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.dataclasses import dataclass

from kiosk.contract.errors import ConfigError, ModelError
from kiosk.contract.manifest import load_manifest

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROJECT_CONFIG = PROJECT_ROOT / "firmware_config" / "kiosk.toml"
SYSTEM_CONFIG = Path("/etc/kiosk/kiosk.toml")
CONFIG_ENV = "KIOSK_CONFIG"

# Console exposure rules (docs/service.md): off loopback the console needs a strong token.
MIN_TOKEN_CHARS = 16
MIN_TOKEN_BITS = 80.0
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
CLASS_SIZES = {"lower": 26, "upper": 26, "digit": 10, "other": 33}
HEX_DIGITS = frozenset("0123456789abcdef")
GENERATE = "e.g. `openssl rand -hex 16`"
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")

# What a landmark model's manifest entry omits: the MTCNN box as it is. Also the stock dlib
# model's value: training/landmarks.py's sweep on train+val picked 1.0 (reports/landmarks).
DEFAULT_BOX_SCALE = 1.0
ELA_MODEL = "tamper_ela"

# TOML types, checked strictly ("5" is not an int, true is not a number); an int is a float.
Int = Annotated[int, Field(strict=True)]
Float = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Str = Annotated[str, Field(strict=True)]
Bool = Annotated[bool, Field(strict=True)]

_TYPE_NAMES = {
    "int_type": "an int",
    "float_type": "a float",
    "bool_type": "a bool",
    "string_type": "a str",
    "list_type": "a list",
    "dict_type": "a table",
}


def section(name: str) -> Any:
    """A frozen pydantic dataclass for the [name] table: unknown keys refused, and construction
    in code (or `dataclasses.replace`) raising ConfigError like a bad file does."""

    def wrap(cls: type) -> type:
        cls = dataclass(frozen=True, kw_only=True, config=ConfigDict(extra="forbid"))(cls)
        init = cls.__init__

        @functools.wraps(init)
        def checked(self: Any, *args: Any, **kwargs: Any) -> None:
            try:
                init(self, *args, **kwargs)
            except ValidationError as exc:
                raise ConfigError(_describe(exc, cls, name)) from None

        cls.__init__ = checked  # type: ignore[method-assign]
        cls.section_name = name  # type: ignore[attr-defined]
        return cls

    return wrap


def resolve(path: str, base: Path | None = None) -> Path:
    """`path` with ~ expanded, made absolute against `base` (the config file's folder). `..` is
    removed lexically: symlinks are kept (models/current must follow a deploy's switch)."""
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        candidate = (base or PROJECT_ROOT) / candidate
    return Path(os.path.normpath(candidate))


def _absolute(value: str, info: ValidationInfo) -> str:
    """A path setting as an absolute path: relative ones against the config file's folder."""
    base = (info.context or {}).get("base")
    return str(resolve(value, base)) if value else value


def is_camera_spec(spec: str) -> bool:
    """True for `picamera`, `camera` and `camera:...` (the rest names a file or folder)."""
    return spec in ("picamera", "camera") or spec.startswith("camera:")


@section("models")
class ModelsConfig:
    dir: Str = Field(
        "models",
        validate_default=True,
        description="folder holding manifest.json and the model files it lists (the bundle)",
    )
    num_threads: Int = Field(1, ge=1, le=64, description="threads per TFLite interpreter")
    public_key: Str = Field(
        "",
        validate_default=True,
        description="Ed25519 public key (PEM) that must have signed the bundle's manifest.sig; "
        "empty: bundles load unchecked with a warning (a developer checkout)",
    )

    @field_validator("dir", "public_key")
    @classmethod
    def _paths(cls, value: str, info: ValidationInfo) -> str:
        return _absolute(value, info)

    @property
    def public_key_path(self) -> Path | None:
        return Path(self.public_key) if self.public_key else None


@section("detector")
class MtcnnSettings:
    """MTCNN cascade parameters; the defaults are the `mtcnn` package's. They live with the
    configuration because the kiosk's [detector] section is these settings."""

    min_face_size: Int = Field(
        20, ge=12, le=2000, description="smallest face (px) the pyramid looks for"
    )
    scale_factor: Float = Field(0.709, ge=0.3, le=0.95, description="pyramid step")
    threshold_pnet: Float = Field(0.6, ge=0.0, le=1.0, description="P-Net confidence")
    threshold_rnet: Float = Field(0.7, ge=0.0, le=1.0, description="R-Net confidence")
    threshold_onet: Float = Field(0.8, ge=0.0, le=1.0, description="O-Net confidence")
    nms_pnet_scale: Float = Field(0.5, ge=0.0, le=1.0, description="NMS IoU within a scale")
    nms_pnet_all: Float = Field(0.7, ge=0.0, le=1.0, description="NMS IoU across scales")
    nms_rnet: Float = Field(0.7, ge=0.0, le=1.0, description="NMS IoU after R-Net")
    nms_onet: Float = Field(0.7, ge=0.0, le=1.0, description="NMS IoU after O-Net")


@section("detector")
class DetectorConfig(MtcnnSettings):
    """The MTCNN cascade's settings, with the kiosk's own default minimum face size."""

    min_face_size: Int = Field(
        40,
        ge=12,
        le=2000,
        description="smallest face (px) the pyramid looks for; 40 halves "
        "the pyramid's work against the package's 20",
    )
    backend: Literal["mtcnn", "yunet"] = Field(
        "yunet",
        description="face detector: OpenCV's YuNet (fewest misses, masked faces included, "
        "~6 ms; reports/detectors) or MTCNN on LiteRT (the paper's); each uses the landmark "
        "model trained on its boxes",
    )
    yunet_score_threshold: Float = Field(
        0.4, ge=0.0, le=1.0, description="YuNet face score (OpenCV's 0.6 misses more masked faces)"
    )
    yunet_nms_threshold: Float = Field(0.3, ge=0.0, le=1.0, description="YuNet NMS IoU limit")
    detect_width: Int = Field(
        320,
        ge=0,
        le=4096,
        description="YuNet detects on a copy this wide (0: the whole frame); boxes are scaled back",
    )
    fallback: Literal["none", "blazeface"] = Field(
        "none",
        description="a second detector run only on frames where YuNet finds no face: "
        '"blazeface" (MediaPipe short range, boxes mapped to YuNet\'s) finds about half of the '
        "masked faces YuNet misses (reports/detectors); yunet backend only",
    )

    @model_validator(mode="after")
    def _fallback_needs_yunet(self) -> DetectorConfig:
        if self.fallback != "none" and self.backend != "yunet":
            raise ValueError(
                f"detector.fallback = {self.fallback!r} maps its boxes to YuNet's: use it with "
                'backend = "yunet", or set fallback = "none"'
            )
        return self


@section("landmarks")
class LandmarksConfig:
    model: Str = Field(
        "",
        validate_default=True,
        description="dlib 68-point model file; empty: face-recognition-models, then /usr/share/dlib",
    )
    box_scale: Float | None = Field(
        None,
        ge=0.5,
        le=2.0,
        description="the model's own (manifest entry `box_scale`, 1.0 when absent or for the "
        "stock model); may only be repeated here, a different value is refused",
    )

    @field_validator("model")
    @classmethod
    def _paths(cls, value: str, info: ValidationInfo) -> str:
        return _absolute(value, info)


@section("gates")
class GatesConfig:
    min_face_px: Int = Field(
        100, ge=1, le=10000, description="minimum face box side, px (ICAO capture guidance)"
    )
    background_face_ratio: Float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="faces whose side is under this share of the largest face's are people in "
        "the background and ignored; 0 counts every face",
    )


@section("tracking")
class TrackingConfig:
    """Video and camera sources: the face is tracked between detections and a check's result is
    reused while its input is unchanged (kiosk/runtime/vision/tracker.py, docs/performance.md).
    Photos are always checked from scratch."""

    redetect_every: Int = Field(
        10, ge=1, le=300, description="run the detector at least every N frames (1: every frame)"
    )
    min_correlation: Float = Field(
        0.9,
        ge=0.0,
        le=1.0,
        description="re-detect when the face patch matches its keyframe worse than this (NCC)",
    )
    max_scene_change: Float = Field(
        12.0,
        ge=0.0,
        le=255.0,
        description="re-detect when a 32x24 thumbnail of the frame moved by more than this mean "
        "grey level since the keyframe",
    )
    rescore_every: Int = Field(
        10, ge=1, le=300, description="rerun every check at least every N frames (1: every frame)"
    )
    max_crop_change: Float = Field(
        4.0,
        ge=0.0,
        le=255.0,
        description="rerun a check when its input crop changed by more than this mean grey level",
    )
    max_landmark_motion_px: Float = Field(
        3.0,
        ge=0.0,
        le=100.0,
        description="rerun the image measures (exposure, background...) when a landmark moved "
        "more than this since they last ran",
    )


@section("input")
class InputConfig:
    """What one input may cost; `kiosk check`/`forensics` stay under 300 MB (docs/input.md)."""

    max_megapixels: Float = Field(
        50.0, ge=0.1, le=1000.0, description="any format; JPEGs are decoded at reduced scale"
    )
    max_full_decode_megapixels: Float = Field(
        16.0, ge=0.1, le=1000.0, description="PNG, BMP, TIFF, WebP: decoded whole"
    )
    max_file_mb: Int = Field(
        200, ge=1, le=100_000, description="file size, checked before anything is read"
    )
    work_megapixels: Float = Field(
        1.3, ge=0.1, le=100.0, description="checks run on a copy at most this large"
    )


@section("forensics")
class ForensicsConfig:
    sr_token_px: Int = Field(
        256, ge=16, le=4096, description="faces smaller than this (box side, px) are super-resolved"
    )
    workers: Int = Field(
        2,
        ge=1,
        le=8,
        description="forensic checks run at once on a capture in `kiosk run` (each may hold the "
        "still's full-resolution luma: ~12 MB at 12 MP); `kiosk forensics` runs one at a time",
    )
    ela_quality: Int | None = Field(
        None,
        ge=50,
        le=100,
        description="the tamper_ela model's own (manifest entry `ela_quality`); may only be "
        "repeated here, a different value is refused",
    )
    jpeg_calibration: Str = Field(
        "data/jpeg_calibration.json",
        validate_default=True,
        description="this camera's JPEG-history threshold, written by `kiosk calibrate`; used "
        "instead of the manifest's while it names the same model file",
    )

    @field_validator("jpeg_calibration")
    @classmethod
    def _calibration_path(cls, value: str, info: ValidationInfo) -> str:
        return _absolute(value, info)


@section("store")
class StoreConfig:
    dir: Str = Field(
        "data/captures",
        validate_default=True,
        description="capture store folder; on a Pi /var/lib/kiosk/captures (StateDirectory)",
    )
    key_file: Str = Field(
        "data/captures.key",
        validate_default=True,
        description="AES-256 key, created with mode 0600 on first run",
    )
    min_free_mb: Int = Field(
        200, ge=0, le=1_000_000, description="captures are refused below this free space"
    )

    @field_validator("dir", "key_file")
    @classmethod
    def _paths(cls, value: str, info: ValidationInfo) -> str:
        return _absolute(value, info)

    @property
    def path(self) -> Path:
        return Path(self.dir)

    @property
    def key_path(self) -> Path:
        return Path(self.key_file)


@section("service")
class ServiceConfig:
    source: Str = Field(
        "camera:0",
        validate_default=True,
        description="camera, camera:N (USB through OpenCV), picamera, or an existing folder, "
        "image or video to replay",
    )
    replay_fps: Float = Field(10.0, ge=0.1, le=1000.0, description="replay frame rate")
    replay_loop: Bool = Field(True, description="replay: start again at the end")
    preview_width: Int = Field(
        640, ge=160, le=4096, description="width (px) of the stream the checks run on"
    )
    smoothing_frames: Int = Field(
        5, ge=1, le=100, description="N: prompts are smoothed over the last N frame verdicts"
    )
    ready_frames: Int = Field(
        3, ge=1, le=100, description="K: consecutive passing frames before the still is taken"
    )
    retry_min_s: Float = Field(
        0.5, ge=0.01, le=60.0, description="camera reconnect backoff, doubling up to retry_max_s"
    )
    retry_max_s: Float = Field(10.0, ge=0.01, le=3600.0, description="longest reconnect wait")
    stall_s: Float = Field(
        10.0, ge=1.0, le=3600.0, description="/health is 503 when the loop stalls this long"
    )
    capture_quality: Int = Field(95, ge=50, le=100, description="JPEG quality of stored captures")
    countdown_s: Float = Field(
        3.0, ge=0.0, le=10.0, description="countdown shown before the photo is taken (0: none)"
    )
    retake_waits_for_operator: Bool = Field(
        True, description="after Retake, arm the next photo only when the operator resumes"
    )
    retake_pause_s: Float = Field(
        0.0,
        ge=0.0,
        le=600.0,
        description="after Retake, arm again after this pause (when not waiting for the operator)",
    )
    kiosk_id: Str = Field(
        "", max_length=64, description="this kiosk's name in every record (empty: the host name)"
    )

    @field_validator("source")
    @classmethod
    def _camera_spec(cls, value: str, info: ValidationInfo) -> str:
        if value.startswith("camera:") and not value.partition(":")[2].isdigit():
            raise ValueError(
                f"service.source = {value!r}: the camera index must be a number, e.g. camera:0"
            )
        if is_camera_spec(value):
            return value
        path = resolve(value, (info.context or {}).get("base"))
        if not path.exists():
            raise ValueError(
                f"service.source = {value!r}: {path} does not exist; use camera, camera:N, "
                "picamera, or an existing folder, image or video"
            )
        return str(path)

    @model_validator(mode="after")
    def _backoff(self) -> ServiceConfig:
        if self.retry_min_s > self.retry_max_s:
            raise ValueError(
                f"service.retry_min_s = {self.retry_min_s} exceeds service.retry_max_s = "
                f"{self.retry_max_s}: the backoff starts at the first and doubles up to the second"
            )
        return self


@section("console")
class ConsoleConfig:
    host: Str = Field(
        "127.0.0.1", description="listen address; beyond loopback a strong token is required"
    )
    port: Int = Field(8080, ge=0, le=65535, description="listen port")
    token: Str = Field(
        "",
        description=f"shared secret, at least {MIN_TOKEN_CHARS} characters and ~80 bits "
        f"({GENERATE}); empty: allowed only on loopback",
    )
    preview_fps: Float = Field(10.0, ge=0.5, le=60.0, description="MJPEG preview frame rate cap")
    max_body_bytes: Int = Field(
        4096, ge=64, le=1_048_576, description="larger request bodies get 413"
    )
    allowed_hosts: list[Str] = Field(
        default_factory=list,
        description="Host names the console answers to besides loopback and `host` (required "
        "when host is 0.0.0.0 or ::)",
    )
    idle_timeout_s: Float = Field(
        5.0, ge=0.5, le=300.0, description="a connection without a complete request is closed"
    )
    max_connections: Int = Field(
        32, ge=4, le=4096, description="beyond this the oldest idle connection is closed"
    )
    max_header_bytes: Int = Field(8192, ge=1024, le=65536, description="larger headers get 400")
    max_preview_viewers: Int = Field(4, ge=1, le=64, description="concurrent MJPEG viewers")
    session_s: Float = Field(
        43200.0, ge=60.0, le=7 * 86400.0, description="operator sign-in (/login) lifetime"
    )
    max_token_failures: Int = Field(
        5, ge=1, le=1000, description="wrong tokens per client per minute before 429"
    )
    language: Literal["en", "de"] = Field(
        "en", description="applicant prompts' language (kiosk/contract/reasons.py MESSAGES)"
    )
    mirror_preview: Bool = Field(
        True, description="show the live preview mirrored, as applicants expect a mirror"
    )
    countdown_sound: Bool = Field(False, description="beep each second of the countdown")
    trust_loopback: Bool = Field(
        False,
        description="requests from this machine (the kiosk's own screen) need no token; others do",
    )
    ssl_certfile: Str = Field(
        "", description="PEM certificate: serve HTTPS (and a Secure session cookie)"
    )
    ssl_keyfile: Str = Field("", description="PEM private key of ssl_certfile")

    @field_validator("allowed_hosts")
    @classmethod
    def _host_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not _valid_host_name(name):
                raise ValueError(
                    f"console.allowed_hosts: {name!r} is not a host name or IP address "
                    '(no port, scheme or wildcard; e.g. "kiosk-3.local" or "192.168.1.20")'
                )
        return value

    @model_validator(mode="after")
    def _exposure(self) -> ConsoleConfig:
        if problem := console_problem(self):
            raise ValueError(problem)
        return self


def console_problem(console: ConsoleConfig) -> str | None:
    """Why these console settings would expose it (no or a guessable token off loopback) or
    refuse its own operators (listening everywhere with no names allowed); None if they are fine."""
    if console.token:
        if len(console.token) < MIN_TOKEN_CHARS:
            return f"console.token must have at least {MIN_TOKEN_CHARS} characters ({GENERATE})"
        if (bits := token_bits(console.token)) < MIN_TOKEN_BITS:
            return (
                f"console.token is too easy to guess (about {bits:.0f} bits, at least "
                f"{MIN_TOKEN_BITS:.0f} needed: no repeats, runs or short alphabets); use a random "
                f"one ({GENERATE})"
            )
    if not console.token and not is_loopback(console.host):
        return (
            f"console.host = {console.host!r} exposes the console beyond this machine: set "
            f"console.token ({GENERATE}) or bind to 127.0.0.1"
        )
    if bool(console.ssl_certfile) != bool(console.ssl_keyfile):
        return "console.ssl_certfile and console.ssl_keyfile go together: set both or neither"
    if console.host in WILDCARD_HOSTS and not console.allowed_hosts:
        return (
            f"console.host = {console.host!r} listens on every address, but browsers would be "
            "refused: list the names or addresses operators open in console.allowed_hosts "
            '(e.g. ["192.168.1.20", "kiosk-3.local"])'
        )
    return None


def token_bits(token: str) -> float:
    """A deliberately simple strength estimate: log2 of the alphabet (the character classes
    present: 26 lower, 26 upper, 10 digits, 33 others) for each character that does not repeat
    one of the two before it, continue a ±1 run ("1234", "cba") or close an already-seen
    trigram ("abcabc"); a hex token counts 4 bits a character. Random hex of 32 characters
    scores about 110, of 16 (64 random bits) at most 64; no dictionary check."""
    if all(c in HEX_DIGITS for c in token.lower()):
        pool = 16  # hex (`openssl rand -hex`): 4 bits a character, whatever letters appear
    else:
        pool = sum(CLASS_SIZES[name] for name in {_char_class(c) for c in token})
    fresh = 0
    for i, c in enumerate(token):
        repeat = c in token[max(0, i - 2) : i] or (i >= 2 and token[i - 2 : i + 1] in token[:i])
        run = i >= 2 and ord(c) - ord(token[i - 1]) == ord(token[i - 1]) - ord(token[i - 2])
        run = run and abs(ord(c) - ord(token[i - 1])) == 1
        fresh += not (repeat or run)
    return fresh * math.log2(max(pool, 2))


def _char_class(c: str) -> str:
    if c.isascii() and c.isalnum():
        return "digit" if c.isdigit() else "upper" if c.isupper() else "lower"
    return "other"


def _valid_host_name(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return bool(_HOST_NAME.fullmatch(name.lower())) and len(name) <= 253


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@section("icao")
class IcaoConfig:
    """Pose and resolution limits of the ICAO checks (ISO/IEC 19794-5, ICAO Doc 9303 part 3)."""

    max_yaw_deg: Float = Field(
        5.0, ge=0.0, le=45.0, description="frontal pose: yaw within ±5° (ISO/IEC 19794-5)"
    )
    max_pitch_deg: Float = Field(
        5.0, ge=0.0, le=45.0, description="frontal pose: pitch within ±5° (ISO/IEC 19794-5)"
    )
    max_roll_deg: Float = Field(
        8.0, ge=0.0, le=45.0, description="frontal pose: roll within ±8° (ISO/IEC 19794-5)"
    )
    min_eye_distance_px: Int = Field(
        90,
        ge=0,
        le=10000,
        description="pupil-to-pupil distance in the full-resolution still (ICAO 9303 part 3: "
        "at least 90 px)",
    )
    # Image-measure limits (kiosk/runtime/checks/, docs/compliance.md: each with its source and
    # the share of ordinary portraits it flags, measured by bench/bench_icao.py).
    max_dark_fraction: Float = Field(
        0.30,
        ge=0.0,
        le=1.0,
        description="share of face pixels at luma 0-25 (OFIQ under-exposure range) above which "
        "the face is too dark",
    )
    max_bright_fraction: Float = Field(
        0.10,
        ge=0.0,
        le=1.0,
        description="share of face pixels at luma 247-255 (OFIQ over-exposure range) above which "
        "the face is over-exposed",
    )
    min_dynamic_range_bits: Float = Field(
        5.0,
        ge=0.0,
        le=8.0,
        description="entropy of the face's luma histogram, bits (OFIQ dynamic range)",
    )
    min_illumination_uniformity: Float = Field(
        0.30,
        ge=0.0,
        le=1.0,
        description="histogram intersection of the left and right face halves (OFIQ "
        "illumination uniformity; ICAO 9303-3: no shadows across the face)",
    )
    min_sharpness: Float = Field(
        0.05,
        ge=0.0,
        le=10.0,
        description="Laplacian energy over intensity variance of the face at a fixed eye "
        "distance (ICAO 9303-3: in focus; limit measured)",
    )
    max_motion_blur: Float = Field(
        0.72,
        ge=0.0,
        le=1.0,
        description="coherence of the face's gradient directions, 0 isotropic, 1 all one way "
        "(motion blur; limit measured)",
    )
    max_background_edges: Float = Field(
        0.06,
        ge=0.0,
        le=1.0,
        description="share of edge pixels in the ring around the head (ICAO 9303-3: plain "
        "background without pattern; limit measured)",
    )
    max_background_colour_std: Float = Field(
        28.0,
        ge=0.0,
        le=255.0,
        description="colour standard deviation around the head, 0-255 (ISO/IEC 19794-5: "
        "uniform background; limit measured)",
    )
    max_forehead_non_skin: Float = Field(
        0.80,
        ge=0.0,
        le=1.0,
        description="share of the band above the brows not coloured like the cheeks (head "
        "covering; ICAO 9303-3: no hat; limit measured)",
    )


@section("token.formats")
class TokenFormat:
    """A printed photo's geometry; ratios are fractions of the photo's height."""

    width_mm: Float = Field(ge=10.0, le=300.0, description="photo width, mm")
    height_mm: Float = Field(ge=10.0, le=300.0, description="photo height, mm")
    dpi: Int = Field(600, ge=150, le=2400, description="print resolution")
    head_min_ratio: Float = Field(ge=0.1, le=1.0, description="chin-to-crown / height, least")
    head_max_ratio: Float = Field(ge=0.1, le=1.0, description="chin-to-crown / height, most")
    eye_line_from_bottom_min: Float = Field(
        ge=0.0, le=1.0, description="eye line above the bottom edge / height, least"
    )
    eye_line_from_bottom_max: Float = Field(
        ge=0.0, le=1.0, description="eye line above the bottom edge / height, most"
    )
    background: Str = Field(description="what the background must be (checked and printed)")

    @model_validator(mode="after")
    def _ranges(self) -> TokenFormat:
        for low, high in (
            ("head_min_ratio", "head_max_ratio"),
            ("eye_line_from_bottom_min", "eye_line_from_bottom_max"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"token format: {low} = {getattr(self, low)} exceeds {high} = "
                    f"{getattr(self, high)}"
                )
        return self


@section("token.print_sheet")
class PrintSheet:
    width_mm: Float = Field(100.0, ge=50.0, le=1000.0, description="sheet width, mm")
    height_mm: Float = Field(150.0, ge=50.0, le=1000.0, description="sheet height, mm")
    dpi: Int = Field(300, ge=150, le=2400, description="print resolution")


# ICAO Doc 9303 part 3 / ISO/IEC 19794-5: 35x45 mm, head 32-36 mm of 45, eye line 50-70 % of
# the height above the bottom edge. US Department of State: 2x2 in, head 1-1 3/8 in, eyes
# 1 1/8-1 3/8 in above the bottom.
TOKEN_FORMATS = {
    "icao_35x45": TokenFormat(
        width_mm=35.0,
        height_mm=45.0,
        head_min_ratio=0.70,
        head_max_ratio=0.80,
        eye_line_from_bottom_min=0.50,
        eye_line_from_bottom_max=0.70,
        background="plain, uniform, light-coloured (ICAO 9303 part 3)",
    ),
    "us_2x2": TokenFormat(
        width_mm=51.0,
        height_mm=51.0,
        head_min_ratio=0.50,
        head_max_ratio=0.69,
        eye_line_from_bottom_min=0.56,
        eye_line_from_bottom_max=0.69,
        background="plain white or off-white (US Department of State)",
    ),
}


@section("token")
class TokenConfig:
    default_format: Str = Field("icao_35x45", description="the format printed by default")
    formats: dict[Str, TokenFormat] = Field(
        default_factory=lambda: dict(TOKEN_FORMATS),
        description="named photo formats; the built-in ones are kept unless a same-named one "
        "replaces them",
    )
    print_sheet: PrintSheet = Field(
        default_factory=PrintSheet, description="the sheet photos are printed on (10x15 cm)"
    )

    @field_validator("formats", mode="before")
    @classmethod
    def _keep_builtin(cls, value: Any) -> Any:
        return {**TOKEN_FORMATS, **value} if isinstance(value, dict) else value

    @model_validator(mode="after")
    def _known_default(self) -> TokenConfig:
        if self.default_format not in self.formats:
            raise ValueError(
                f"token.default_format = {self.default_format!r} is not one of token.formats: "
                f"{', '.join(sorted(self.formats))}"
            )
        return self


@section("")
class Config:
    models: ModelsConfig = Field(default_factory=ModelsConfig)
    detector: DetectorConfig = Field(default_factory=DetectorConfig)
    landmarks: LandmarksConfig = Field(default_factory=LandmarksConfig)
    gates: GatesConfig = Field(default_factory=GatesConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    input: InputConfig = Field(default_factory=InputConfig)
    forensics: ForensicsConfig = Field(default_factory=ForensicsConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    console: ConsoleConfig = Field(default_factory=ConsoleConfig)
    icao: IcaoConfig = Field(default_factory=IcaoConfig)
    token: TokenConfig = Field(default_factory=TokenConfig)

    @property
    def models_dir(self) -> Path:
        return Path(self.models.dir)

    @model_validator(mode="after")
    def _model_parameters(self, info: ValidationInfo) -> Config:
        """A loaded file may repeat a model's own parameters, not change them. Checked against
        the bundle it names (an unreadable bundle is the runtime's to report); the runtime
        checks again at every bundle (re)load."""
        if not (info.context or {}).get("check_bundle"):
            return self
        try:
            entries = load_manifest(self.models_dir).models
        except ModelError:
            return self
        quality = self.forensics.ela_quality
        if ELA_MODEL in entries and quality is not None:
            trained = entries[ELA_MODEL].extra.get("ela_quality")
            if quality != trained:
                raise ValueError(
                    f"forensics.ela_quality = {quality} differs from {trained}, the quality the "
                    f"{ELA_MODEL} model in {self.models_dir} was trained with: delete the line "
                    "(the model's own is used)"
                )
        scale = self.landmarks.box_scale
        if scale is not None and scale != (own := model_box_scale(entries, self)):
            raise ValueError(
                f"landmarks.box_scale = {scale} differs from {own}, the landmark model's own: "
                "delete the line (the model's own is used)"
            )
        return self


def model_box_scale(entries: dict[str, Any], config: Config) -> float:
    """The box scale the configured landmark model was fit with: its manifest entry's
    `box_scale` when the bundle lists it, else DEFAULT_BOX_SCALE."""
    model = Path(config.landmarks.model) if config.landmarks.model else None
    for entry in entries.values():
        if model is not None and (config.models_dir / entry.file).resolve() == model.resolve():
            return float(entry.extra.get("box_scale", DEFAULT_BOX_SCALE))
    return DEFAULT_BOX_SCALE


def find_config(path: Path | str | None = None) -> Path:
    """The config file: `path` (--config), then $KIOSK_CONFIG, then /etc/kiosk/kiosk.toml, then
    the project's firmware_config/kiosk.toml (a checkout)."""
    if path:
        return Path(path)
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    for candidate in (SYSTEM_CONFIG, PROJECT_CONFIG):
        if candidate.is_file():
            return candidate
    raise ConfigError(
        f"no config file: pass --config FILE, set ${CONFIG_ENV}, or create {SYSTEM_CONFIG} "
        f"(looked for {SYSTEM_CONFIG} and {PROJECT_CONFIG})"
    )


def load_config(path: Path | str | None = None) -> Config:
    """Read and validate the config file (`find_config`); relative paths in it resolve against
    its folder."""
    path = find_config(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    log.info("config %s", path)
    return parse_config(raw, source=str(path), base=path.absolute().parent)


def parse_config(raw: dict[str, Any], source: str = "config", base: Path | None = None) -> Config:
    """Validate a parsed config; relative paths resolve against `base` (default: the project
    root). Raises ConfigError with one line per problem, each naming the key path."""
    # Missing sections are validated as empty tables so their path defaults resolve against base.
    filled = {name: {} for name in Config.__pydantic_fields__} | raw
    try:
        return _ADAPTER.validate_python(
            filled, context={"base": base or PROJECT_ROOT, "check_bundle": True}
        )
    except ValidationError as exc:
        lines = _describe(exc, Config, "").splitlines()
        raise ConfigError("\n".join(f"{source}: {line}" for line in lines)) from None


def _describe(exc: ValidationError, root: type, prefix: str) -> str:
    """One line per error: the key path, the value and the rule."""
    return "\n".join(_error_line(error, root, prefix) for error in exc.errors())


def _error_line(error: Any, root: type, prefix: str) -> str:
    loc = [str(part) for part in error["loc"]]
    key = ".".join([prefix, *loc] if prefix else loc)
    kind, value = error["type"], error.get("input")
    owner, field = _field_of(root, loc)
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        known = ", ".join(_known(owner)) if owner else ""
        if owner is Config:
            return f"unknown section [{key}]; known: {known}"
        return f"unknown key {key}; known: {known}"
    if kind == "dataclass_type":
        return f"[{key}] must be a table"
    if kind in ("greater_than_equal", "less_than_equal") and field is not None:
        low, high = _bounds(field)
        if float in (field.annotation, *typing.get_args(field.annotation)) and type(value) is int:
            value = float(value)
        return f"{key} = {value!r} is outside [{low}, {high}]"
    if kind in _TYPE_NAMES:
        return f"{key} = {value!r} must be {_TYPE_NAMES[kind]}"
    if kind == "missing":
        return f"{key} is required"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    return f"{key} = {value!r}: {error['msg']}"


def _known(cls: type) -> list[str]:
    return list(cls.__pydantic_fields__)  # type: ignore[attr-defined]


def _field_of(root: type, loc: list[str]) -> tuple[type | None, Any]:
    """(the section class owning the last key of `loc`, that key's FieldInfo or None)."""
    owner: Any = root
    field = None
    for part in loc:
        fields = getattr(owner, "__pydantic_fields__", None)
        if fields is None:
            if typing.get_origin(owner) is dict:  # a named entry, e.g. token.formats.NAME
                owner = typing.get_args(owner)[1]
                continue
            return None, None
        if part not in fields:
            return owner, None
        field = fields[part]
        nested = field.annotation
        if dataclasses.is_dataclass(nested) or typing.get_origin(nested) is dict:
            owner = nested
            field = None
    return owner, field


def _bounds(field: Any) -> tuple[Any, Any]:
    low = next((m.ge for m in field.metadata if hasattr(m, "ge")), None)
    high = next((m.le for m in field.metadata if hasattr(m, "le")), None)
    return low, high


_ADAPTER = TypeAdapter(Config)
