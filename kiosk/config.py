"""Kiosk configuration: one schema for `firmware_config/kiosk.toml` (frozen dataclasses).

Every section refuses unknown keys (a typo must not silently fall back to a default), bounds and
a description live on each field, and every rule between fields is checked with them, so
`kiosk --validate-config` applies exactly what `kiosk run` does. The sections are frozen
dataclasses that check themselves when built: from the file, in code or by
`dataclasses.replace`, bad values raise ConfigError naming the key path, the value and the rule
(one line per problem).

The checks are the standard library's, not a schema library's: TOML gives only a few types, and
pydantic's import and schema build were ~0.25 s of every `kiosk check` start (issue 16,
docs/performance.md). Types are strict ("5" is not an int, true is not a number, NaN is refused;
an int is a float).

The file is found by `--config`, then `$KIOSK_CONFIG`, then /etc/kiosk/kiosk.toml, then the
project's firmware_config/kiosk.toml; relative paths in it resolve against its own folder
(a config given as a dict, or a section built in code, resolves against the project root).
Parameters a model was trained with (ELA quality, landmark box scale) come from the bundle's
manifest: the config may only repeat them (docs/configuration.md).
"""

# No `from __future__ import annotations`: the checks read the fields' types, which are then
# objects already (evaluating them from strings cost ~7 ms a start).
import dataclasses
import ipaddress
import logging
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal, NamedTuple, TypeVar

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

_TYPE_NAMES = {int: "an int", float: "a float", bool: "a bool", str: "a str"}


class _Problem(NamedTuple):
    """One line of a ConfigError: `head` + the key path + `tail` (an empty path: a rule's own
    message, which names its keys itself)."""

    loc: tuple[str, ...]
    head: str
    tail: str = ""

    def line(self) -> str:
        return f"{self.head}{'.'.join(self.loc)}{self.tail}"


class _Invalid(ConfigError):
    """A ConfigError that keeps its problems, so the table around a bad one reports them all."""

    def __init__(self, problems: list[_Problem]) -> None:
        super().__init__("\n".join(problem.line() for problem in problems))
        self.problems = problems


def _bad(loc: tuple[str, ...], tail: str) -> _Invalid:
    return _Invalid([_Problem(loc, "", tail)])


def setting(
    default: Any = dataclasses.MISSING,
    *,
    ge: float | None = None,
    le: float | None = None,
    max_length: int | None = None,
    description: str = "",
    default_factory: Any = dataclasses.MISSING,
) -> Any:
    """A field of a section: its default (none: required), inclusive bounds and what it is for."""
    metadata = {"ge": ge, "le": le, "max_length": max_length, "description": description}
    return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


class _Rule(NamedTuple):
    """A rule of some fields, made by `rule` in a section's body."""

    fields: tuple[str, ...]
    check: Callable[[Any, Path], Any]


def rule(*fields: str) -> Callable[[Callable[[Any, Path], Any]], _Rule]:
    """Make `check(value, base folder) -> value` the rule of these fields: it runs after their
    type and bounds are checked, may normalise the value, and raises ValueError to refuse it."""
    return lambda check: _Rule(fields, check)


class _Setting(NamedTuple):
    """A section field as checked: its type, bounds, default and rule."""

    name: str
    hint: Any
    ge: float | None
    le: float | None
    max_length: int | None
    default: Callable[[], Any] | None  # None: required
    rule: Callable[[Any, Path], Any] | None

    def check(self, value: Any, loc: tuple[str, ...], base: Path) -> Any:
        value = _typed(value, self.hint, loc, base)
        if value is not None:
            too_low = self.ge is not None and value < self.ge
            if too_low or (self.le is not None and value > self.le):
                raise _bad(loc, f" = {value!r} is outside [{self.ge}, {self.le}]")
            if self.max_length is not None and len(value) > self.max_length:
                raise _bad(loc, f" = {value!r} must be at most {self.max_length} characters")
        return self.rule(value, base) if self.rule else value


class Section:
    """A table of the file. Building one, from the file, in code or by `dataclasses.replace`,
    checks every field (type, bounds, its rule; a required one missing, an unknown one) and
    then `_check`, the rules between fields, and raises ConfigError listing every problem.

    The subclasses are dataclasses (`section`) without generated methods: these generic ones
    stand in for them (keyword-only, frozen, compared and hashed by value). The standard
    library compiles a dataclass's methods anew at every start, ~1 ms a section."""

    section_name: ClassVar[str] = ""
    _settings: ClassVar[tuple[_Setting, ...]] = ()

    def __init__(self, **values: Any) -> None:
        self._fill(values, tuple(self.section_name.split(".")) if self.section_name else (), None)

    def _fill(self, table: dict[str, Any], loc: tuple[str, ...], base: Path | None) -> None:
        """Check `table` field by field in declaration order and set the fields; relative paths
        resolve against `base` (the config file's folder; None: the project root)."""
        values, problems = {}, []
        for item in self._settings:
            key = (*loc, item.name)
            if item.name not in table and item.default is None:
                problems.append(_Problem(key, "", " is required"))
                continue
            value = table[item.name] if item.name in table else item.default()
            try:
                values[item.name] = item.check(value, key, base or PROJECT_ROOT)
            except _Invalid as exc:
                problems.extend(exc.problems)
            except ValueError as exc:  # the field's rule
                problems.append(_Problem((), str(exc)))
        names = [item.name for item in self._settings]
        known = f"; known: {', '.join(names)}"
        for name in table:
            if name not in names:
                unknown = ("unknown section [", "]" + known) if not loc else ("unknown key ", known)
                problems.append(_Problem((*loc, name), *unknown))
        if problems:
            raise _Invalid(problems)
        for name, value in values.items():
            object.__setattr__(self, name, value)
        try:
            self._check()
        except ValueError as exc:
            raise _Invalid([_Problem((), str(exc))]) from None

    def _check(self) -> None:
        """The rules between this section's fields: raise ValueError saying what to change."""

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, item.name) for item in self._settings)

    def __repr__(self) -> str:
        fields = ", ".join(f"{item.name}={getattr(self, item.name)!r}" for item in self._settings)
        return f"{type(self).__qualname__}({fields})"

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._values())

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")


S = TypeVar("S", bound=Section)


@typing.dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(setting,))
def section(name: str) -> Callable[[type[S]], type[S]]:
    """The [name] table: a dataclass (so `dataclasses.fields` and `replace` work) whose methods
    are Section's, each field's type, bounds, default and rule collected for them."""

    def wrap(cls: type[S]) -> type[S]:
        cls = dataclasses.dataclass(init=False, repr=False, eq=False)(cls)
        rules = {
            field: attribute.check
            for klass in reversed(cls.__mro__)
            for attribute in vars(klass).values()
            if isinstance(attribute, _Rule)
            for field in attribute.fields
        }
        settings = []
        for field in dataclasses.fields(cls):  # type: ignore[arg-type]
            default: Callable[[], Any] | None = None
            if field.default is not dataclasses.MISSING:
                default = lambda value=field.default: value  # noqa: E731
            elif field.default_factory is not dataclasses.MISSING:
                default = field.default_factory
            meta = field.metadata
            settings.append(
                _Setting(
                    field.name,
                    field.type,
                    meta.get("ge"),
                    meta.get("le"),
                    meta.get("max_length"),
                    default,
                    rules.get(field.name),
                )
            )
        cls.section_name = name
        cls._settings = tuple(settings)
        return cls

    return wrap


def _build(cls: type[S], table: Any, loc: tuple[str, ...], base: Path) -> S:
    """A section from its table in the file (key path `loc`): missing keys take their
    defaults, relative paths resolve against `base`."""
    if not isinstance(table, dict):
        raise _Invalid([_Problem(loc, "[", "] must be a table")])
    built = cls.__new__(cls)
    built._fill(table, loc, base)
    return built


def _typed(value: Any, hint: Any, loc: tuple[str, ...], base: Path) -> Any:
    """`value` as the type `hint` (a TOML scalar, Literal, list, table or section)."""
    if isinstance(hint, types.UnionType):  # `X | None`
        if value is None:
            return None
        (hint,) = (arg for arg in typing.get_args(hint) if arg is not type(None))
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        if isinstance(value, str) and value in args:
            return value
        raise _bad(loc, f" = {value!r} must be {' or '.join(map(repr, args))}")
    if origin is list or origin is dict:
        if not isinstance(value, (list, tuple) if origin is list else dict):
            raise _bad(loc, f" = {value!r} must be {'a list' if origin is list else 'a table'}")
        items = enumerate(value) if origin is list else value.items()
        result, problems = {}, []
        for key, item in items:
            try:
                if origin is dict:
                    _typed(key, args[0], (*loc, str(key)), base)
                result[key] = _typed(item, args[-1], (*loc, str(key)), base)
            except _Invalid as exc:
                problems.extend(exc.problems)
        if problems:
            raise _Invalid(problems)
        return list(result.values()) if origin is list else result
    if isinstance(hint, type) and issubclass(hint, Section):
        return value if isinstance(value, hint) else _build(hint, value, loc, base)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, hint) or (hint is not bool and isinstance(value, bool)):
        raise _bad(loc, f" = {value!r} must be {_TYPE_NAMES[hint]}")
    if hint is float and not math.isfinite(value):
        raise _bad(loc, f" = {value!r} must be a finite number")
    return value


def resolve(path: str, base: Path | None = None) -> Path:
    """`path` with ~ expanded, made absolute against `base` (the config file's folder). `..` is
    removed lexically: symlinks are kept (models/current must follow a deploy's switch)."""
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        candidate = (base or PROJECT_ROOT) / candidate
    return Path(os.path.normpath(candidate))


def _absolute(value: str, base: Path) -> str:
    """A path setting as an absolute path: relative ones against the config file's folder."""
    return str(resolve(value, base)) if value else value


def is_camera_spec(spec: str) -> bool:
    """True for `picamera`, `camera` and `camera:...` (the rest names a file or folder)."""
    return spec in ("picamera", "camera") or spec.startswith("camera:")


@section("models")
class ModelsConfig(Section):
    """The model bundle the kiosk loads, and the key that must have signed it."""

    dir: str = setting(
        "models",
        description="folder holding manifest.json and the model files it lists (the bundle)",
    )
    num_threads: int = setting(1, ge=1, le=64, description="threads per TFLite interpreter")
    public_key: str = setting(
        "",
        description="Ed25519 public key (PEM) that must have signed the bundle's manifest.sig; "
        "empty: bundles load unchecked with a warning (a developer checkout)",
    )

    _paths = rule("dir", "public_key")(_absolute)

    @property
    def public_key_path(self) -> Path | None:
        return Path(self.public_key) if self.public_key else None


@section("detector")
class MtcnnSettings(Section):
    """MTCNN cascade parameters; the defaults are the `mtcnn` package's. They live with the
    configuration because the kiosk's [detector] section is these settings."""

    min_face_size: int = setting(
        20, ge=12, le=2000, description="smallest face (px) the pyramid looks for"
    )
    scale_factor: float = setting(0.709, ge=0.3, le=0.95, description="pyramid step")
    threshold_pnet: float = setting(0.6, ge=0.0, le=1.0, description="P-Net confidence")
    threshold_rnet: float = setting(0.7, ge=0.0, le=1.0, description="R-Net confidence")
    threshold_onet: float = setting(0.8, ge=0.0, le=1.0, description="O-Net confidence")
    nms_pnet_scale: float = setting(0.5, ge=0.0, le=1.0, description="NMS IoU within a scale")
    nms_pnet_all: float = setting(0.7, ge=0.0, le=1.0, description="NMS IoU across scales")
    nms_rnet: float = setting(0.7, ge=0.0, le=1.0, description="NMS IoU after R-Net")
    nms_onet: float = setting(0.7, ge=0.0, le=1.0, description="NMS IoU after O-Net")


@section("detector")
class DetectorConfig(MtcnnSettings):
    """The MTCNN cascade's settings, with the kiosk's own default minimum face size."""

    min_face_size: int = setting(
        40,
        ge=12,
        le=2000,
        description="smallest face (px) the pyramid looks for; 40 halves "
        "the pyramid's work against the package's 20",
    )
    backend: Literal["mtcnn", "yunet"] = setting(
        "yunet",
        description="face detector: OpenCV's YuNet (fewest misses, masked faces included, "
        "~6 ms; reports/detectors) or MTCNN on LiteRT (the paper's); each uses the landmark "
        "model trained on its boxes",
    )
    yunet_score_threshold: float = setting(
        0.4, ge=0.0, le=1.0, description="YuNet face score (OpenCV's 0.6 misses more masked faces)"
    )
    yunet_nms_threshold: float = setting(0.3, ge=0.0, le=1.0, description="YuNet NMS IoU limit")
    detect_width: int = setting(
        320,
        ge=0,
        le=4096,
        description="YuNet detects on a copy this wide (0: the whole frame); boxes are scaled back",
    )
    fallback: Literal["none", "blazeface", "blazeface_all"] = setting(
        "none",
        description="a second detector run only on frames where YuNet finds no face: "
        '"blazeface" (MediaPipe short range, boxes mapped to YuNet\'s) finds about half of the '
        'masked faces YuNet misses; "blazeface_all" then also runs MediaPipe\'s full-range model '
        "and the short one on the mirrored frame where the short one finds none (more masked "
        "faces; ~9 ms more on a frame without a face; reports/detectors); yunet backend only",
    )

    def _check(self) -> None:
        if self.fallback != "none" and self.backend != "yunet":
            raise ValueError(
                f"detector.fallback = {self.fallback!r} maps its boxes to YuNet's: use it with "
                'backend = "yunet", or set fallback = "none"'
            )


@section("landmarks")
class LandmarksConfig(Section):
    """The 68-point landmark model (docs/architecture.md: detector and landmark model pair)."""

    model: str = setting(
        "",
        description="68-point model file (dlib .dat, or its trees exported as .npz); empty: the "
        "bundle's, then face-recognition-models, then /usr/share/dlib",
    )
    box_scale: float | None = setting(
        None,
        ge=0.5,
        le=2.0,
        description="the model's own (manifest entry `box_scale`, 1.0 when absent or for the "
        "stock model); may only be repeated here, a different value is refused",
    )

    _paths = rule("model")(_absolute)


@section("gates")
class GatesConfig(Section):
    """Which faces in a frame are checked at all."""

    min_face_px: int = setting(
        100, ge=1, le=10000, description="minimum face box side, px (ICAO capture guidance)"
    )
    background_face_ratio: float = setting(
        0.5,
        ge=0.0,
        le=1.0,
        description="faces whose side is under this share of the largest face's are people in "
        "the background and ignored; 0 counts every face",
    )


@section("tracking")
class TrackingConfig(Section):
    """Video and camera sources: the face is tracked between detections and a check's result is
    reused while its input is unchanged (kiosk/runtime/vision/tracker.py, docs/performance.md).
    Photos are always checked from scratch."""

    redetect_every: int = setting(
        10, ge=1, le=300, description="run the detector at least every N frames (1: every frame)"
    )
    min_correlation: float = setting(
        0.9,
        ge=0.0,
        le=1.0,
        description="re-detect when the face patch matches its keyframe worse than this (NCC)",
    )
    max_scene_change: float = setting(
        12.0,
        ge=0.0,
        le=255.0,
        description="re-detect when a 32x24 thumbnail of the frame moved by more than this mean "
        "grey level since the keyframe",
    )
    rescore_every: int = setting(
        10, ge=1, le=300, description="rerun every check at least every N frames (1: every frame)"
    )
    max_crop_change: float = setting(
        4.0,
        ge=0.0,
        le=255.0,
        description="rerun a check when its input crop changed by more than this mean grey level",
    )
    max_landmark_motion_px: float = setting(
        3.0,
        ge=0.0,
        le=100.0,
        description="rerun the image measures (exposure, background...) when a landmark moved "
        "more than this since they last ran",
    )


@section("input")
class InputConfig(Section):
    """What one input may cost; `kiosk check`/`forensics` stay under 300 MB (docs/input.md)."""

    max_megapixels: float = setting(
        50.0, ge=0.1, le=1000.0, description="any format; JPEGs are decoded at reduced scale"
    )
    max_full_decode_megapixels: float = setting(
        16.0, ge=0.1, le=1000.0, description="PNG, BMP, TIFF, WebP: decoded whole"
    )
    max_file_mb: int = setting(
        200, ge=1, le=100_000, description="file size, checked before anything is read"
    )
    work_megapixels: float = setting(
        1.3, ge=0.1, le=100.0, description="checks run on a copy at most this large"
    )


@section("forensics")
class ForensicsConfig(Section):
    """The forensic checks of a capture: JPEG history, ELA tampering, super-resolution."""

    sr_token_px: int = setting(
        256, ge=16, le=4096, description="faces smaller than this (box side, px) are super-resolved"
    )
    workers: int = setting(
        2,
        ge=1,
        le=8,
        description="forensic checks run at once on a capture in `kiosk run` (each may hold the "
        "still's full-resolution luma: ~12 MB at 12 MP); `kiosk forensics` runs one at a time",
    )
    ela_quality: int | None = setting(
        None,
        ge=50,
        le=100,
        description="the tamper_ela model's own (manifest entry `ela_quality`); may only be "
        "repeated here, a different value is refused",
    )
    jpeg_calibration: str = setting(
        "data/jpeg_calibration.json",
        description="this camera's JPEG-history threshold, written by `kiosk calibrate`; used "
        "instead of the manifest's while it names the same model file",
    )

    _paths = rule("jpeg_calibration")(_absolute)


@section("store")
class StoreConfig(Section):
    """Where the encrypted captures and their key live."""

    dir: str = setting(
        "data/captures",
        description="capture store folder; on a Pi /var/lib/kiosk/captures (StateDirectory)",
    )
    key_file: str = setting(
        "data/captures.key",
        description="AES-256 key, created with mode 0600 on first run",
    )
    min_free_mb: int = setting(
        200, ge=0, le=1_000_000, description="captures are refused below this free space"
    )

    _paths = rule("dir", "key_file")(_absolute)

    @property
    def path(self) -> Path:
        return Path(self.dir)

    @property
    def key_path(self) -> Path:
        return Path(self.key_file)


@section("service")
class ServiceConfig(Section):
    """`kiosk run`: the camera, the prompts' smoothing and the capture."""

    source: str = setting(
        "camera:0",
        description="camera, camera:N (USB through OpenCV), picamera, or an existing folder, "
        "image or video to replay",
    )
    replay_fps: float = setting(10.0, ge=0.1, le=1000.0, description="replay frame rate")
    replay_loop: bool = setting(True, description="replay: start again at the end")
    preview_width: int = setting(
        640, ge=160, le=4096, description="width (px) of the stream the checks run on"
    )
    smoothing_frames: int = setting(
        5, ge=1, le=100, description="N: prompts are smoothed over the last N frame verdicts"
    )
    ready_frames: int = setting(
        3, ge=1, le=100, description="K: consecutive passing frames before the still is taken"
    )
    retry_min_s: float = setting(
        0.5, ge=0.01, le=60.0, description="camera reconnect backoff, doubling up to retry_max_s"
    )
    retry_max_s: float = setting(10.0, ge=0.01, le=3600.0, description="longest reconnect wait")
    stall_s: float = setting(
        10.0, ge=1.0, le=3600.0, description="/health is 503 when the loop stalls this long"
    )
    capture_quality: int = setting(95, ge=50, le=100, description="JPEG quality of stored captures")
    countdown_s: float = setting(
        3.0, ge=0.0, le=10.0, description="countdown shown before the photo is taken (0: none)"
    )
    retake_waits_for_operator: bool = setting(
        True, description="after Retake, arm the next photo only when the operator resumes"
    )
    retake_pause_s: float = setting(
        0.0,
        ge=0.0,
        le=600.0,
        description="after Retake, arm again after this pause (when not waiting for the operator)",
    )
    kiosk_id: str = setting(
        "", max_length=64, description="this kiosk's name in every record (empty: the host name)"
    )

    @rule("source")
    @staticmethod
    def _camera_spec(value: str, base: Path) -> str:
        if value.startswith("camera:") and not value.partition(":")[2].isdigit():
            raise ValueError(
                f"service.source = {value!r}: the camera index must be a number, e.g. camera:0"
            )
        if is_camera_spec(value):
            return value
        path = resolve(value, base)
        if not path.exists():
            raise ValueError(
                f"service.source = {value!r}: {path} does not exist; use camera, camera:N, "
                "picamera, or an existing folder, image or video"
            )
        return str(path)

    def _check(self) -> None:
        if self.retry_min_s > self.retry_max_s:
            raise ValueError(
                f"service.retry_min_s = {self.retry_min_s} exceeds service.retry_max_s = "
                f"{self.retry_max_s}: the backoff starts at the first and doubles up to the second"
            )


@section("console")
class ConsoleConfig(Section):
    """The operator console: where it listens and who may use it (docs/service.md)."""

    host: str = setting(
        "127.0.0.1", description="listen address; beyond loopback a strong token is required"
    )
    port: int = setting(8080, ge=0, le=65535, description="listen port")
    token: str = setting(
        "",
        description=f"shared secret, at least {MIN_TOKEN_CHARS} characters and ~80 bits "
        f"({GENERATE}); empty: allowed only on loopback",
    )
    preview_fps: float = setting(10.0, ge=0.5, le=60.0, description="MJPEG preview frame rate cap")
    max_body_bytes: int = setting(
        4096, ge=64, le=1_048_576, description="larger request bodies get 413"
    )
    allowed_hosts: list[str] = setting(
        default_factory=list,
        description="Host names the console answers to besides loopback and `host` (required "
        "when host is 0.0.0.0 or ::)",
    )
    idle_timeout_s: float = setting(
        5.0, ge=0.5, le=300.0, description="a connection without a complete request is closed"
    )
    max_connections: int = setting(
        32, ge=4, le=4096, description="beyond this the oldest idle connection is closed"
    )
    max_header_bytes: int = setting(8192, ge=1024, le=65536, description="larger headers get 400")
    max_preview_viewers: int = setting(4, ge=1, le=64, description="concurrent MJPEG viewers")
    session_s: float = setting(
        43200.0, ge=60.0, le=7 * 86400.0, description="operator sign-in (/login) lifetime"
    )
    max_token_failures: int = setting(
        5, ge=1, le=1000, description="wrong tokens per client per minute before 429"
    )
    language: Literal["en", "de"] = setting(
        "en", description="applicant prompts' language (kiosk/contract/reasons.py MESSAGES)"
    )
    mirror_preview: bool = setting(
        True, description="show the live preview mirrored, as applicants expect a mirror"
    )
    countdown_sound: bool = setting(False, description="beep each second of the countdown")
    trust_loopback: bool = setting(
        False,
        description="requests from this machine (the kiosk's own screen) need no token; others do",
    )
    ssl_certfile: str = setting(
        "", description="PEM certificate: serve HTTPS (and a Secure session cookie)"
    )
    ssl_keyfile: str = setting("", description="PEM private key of ssl_certfile")

    @rule("allowed_hosts")
    @staticmethod
    def _host_names(value: list[str], base: Path) -> list[str]:
        for name in value:
            if not _valid_host_name(name):
                raise ValueError(
                    f"console.allowed_hosts: {name!r} is not a host name or IP address "
                    '(no port, scheme or wildcard; e.g. "kiosk-3.local" or "192.168.1.20")'
                )
        return value

    def _check(self) -> None:
        if problem := console_problem(self):
            raise ValueError(problem)


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
class IcaoConfig(Section):
    """Pose and resolution limits of the ICAO checks (ISO/IEC 19794-5, ICAO Doc 9303 part 3)."""

    max_yaw_deg: float = setting(
        5.0, ge=0.0, le=45.0, description="frontal pose: yaw within ±5° (ISO/IEC 19794-5)"
    )
    max_pitch_deg: float = setting(
        5.0, ge=0.0, le=45.0, description="frontal pose: pitch within ±5° (ISO/IEC 19794-5)"
    )
    max_roll_deg: float = setting(
        8.0, ge=0.0, le=45.0, description="frontal pose: roll within ±8° (ISO/IEC 19794-5)"
    )
    min_eye_distance_px: int = setting(
        90,
        ge=0,
        le=10000,
        description="pupil-to-pupil distance in the full-resolution still (ICAO 9303 part 3: "
        "at least 90 px)",
    )
    # Image-measure limits (kiosk/runtime/checks/, docs/compliance.md: each with its source and
    # the share of ordinary portraits it flags, measured by bench/bench_icao.py).
    max_dark_fraction: float = setting(
        0.30,
        ge=0.0,
        le=1.0,
        description="share of face pixels at luma 0-25 (OFIQ under-exposure range) above which "
        "the face is too dark",
    )
    max_bright_fraction: float = setting(
        0.10,
        ge=0.0,
        le=1.0,
        description="share of face pixels at luma 247-255 (OFIQ over-exposure range) above which "
        "the face is over-exposed",
    )
    min_dynamic_range_bits: float = setting(
        5.0,
        ge=0.0,
        le=8.0,
        description="entropy of the face's luma histogram, bits (OFIQ dynamic range)",
    )
    min_illumination_uniformity: float = setting(
        0.30,
        ge=0.0,
        le=1.0,
        description="histogram intersection of the left and right face halves (OFIQ "
        "illumination uniformity; ICAO 9303-3: no shadows across the face)",
    )
    min_sharpness: float = setting(
        0.05,
        ge=0.0,
        le=10.0,
        description="Laplacian energy over intensity variance of the face at a fixed eye "
        "distance (ICAO 9303-3: in focus; limit measured)",
    )
    max_motion_blur: float = setting(
        0.72,
        ge=0.0,
        le=1.0,
        description="coherence of the face's gradient directions, 0 isotropic, 1 all one way "
        "(motion blur; limit measured)",
    )
    max_background_edges: float = setting(
        0.06,
        ge=0.0,
        le=1.0,
        description="share of edge pixels in the ring around the head (ICAO 9303-3: plain "
        "background without pattern; limit measured)",
    )
    max_background_colour_std: float = setting(
        28.0,
        ge=0.0,
        le=255.0,
        description="colour standard deviation around the head, 0-255 (ISO/IEC 19794-5: "
        "uniform background; limit measured)",
    )
    max_forehead_non_skin: float = setting(
        0.80,
        ge=0.0,
        le=1.0,
        description="share of the band above the brows not coloured like the cheeks (head "
        "covering; ICAO 9303-3: no hat; limit measured)",
    )


@section("token.formats")
class TokenFormat(Section):
    """A printed photo's geometry; ratios are fractions of the photo's height."""

    width_mm: float = setting(ge=10.0, le=300.0, description="photo width, mm")
    height_mm: float = setting(ge=10.0, le=300.0, description="photo height, mm")
    dpi: int = setting(600, ge=150, le=2400, description="print resolution")
    head_min_ratio: float = setting(ge=0.1, le=1.0, description="chin-to-crown / height, least")
    head_max_ratio: float = setting(ge=0.1, le=1.0, description="chin-to-crown / height, most")
    eye_line_from_bottom_min: float = setting(
        ge=0.0, le=1.0, description="eye line above the bottom edge / height, least"
    )
    eye_line_from_bottom_max: float = setting(
        ge=0.0, le=1.0, description="eye line above the bottom edge / height, most"
    )
    background: str = setting(description="what the background must be (checked and printed)")

    def _check(self) -> None:
        for low, high in (
            ("head_min_ratio", "head_max_ratio"),
            ("eye_line_from_bottom_min", "eye_line_from_bottom_max"),
        ):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(
                    f"token format: {low} = {getattr(self, low)} exceeds {high} = "
                    f"{getattr(self, high)}"
                )


@section("token.print_sheet")
class PrintSheet(Section):
    """The sheet token photos are printed on."""

    width_mm: float = setting(100.0, ge=50.0, le=1000.0, description="sheet width, mm")
    height_mm: float = setting(150.0, ge=50.0, le=1000.0, description="sheet height, mm")
    dpi: int = setting(300, ge=150, le=2400, description="print resolution")


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
class TokenConfig(Section):
    """Token photos (ISO Token Frontal) and the formats they are printed in."""

    default_format: str = setting("icao_35x45", description="the format printed by default")
    formats: dict[str, TokenFormat] = setting(
        default_factory=lambda: dict(TOKEN_FORMATS),
        description="named photo formats; the built-in ones are kept unless a same-named one "
        "replaces them",
    )
    print_sheet: PrintSheet = setting(
        default_factory=PrintSheet, description="the sheet photos are printed on (10x15 cm)"
    )

    @rule("formats")
    @staticmethod
    def _keep_builtin(value: dict[str, TokenFormat], base: Path) -> dict[str, TokenFormat]:
        return {**TOKEN_FORMATS, **value}

    def _check(self) -> None:
        if self.default_format not in self.formats:
            raise ValueError(
                f"token.default_format = {self.default_format!r} is not one of token.formats: "
                f"{', '.join(sorted(self.formats))}"
            )


@section("")
class Config(Section):
    """The whole file: one field per [section]."""

    models: ModelsConfig = setting(default_factory=ModelsConfig)
    detector: DetectorConfig = setting(default_factory=DetectorConfig)
    landmarks: LandmarksConfig = setting(default_factory=LandmarksConfig)
    gates: GatesConfig = setting(default_factory=GatesConfig)
    tracking: TrackingConfig = setting(default_factory=TrackingConfig)
    input: InputConfig = setting(default_factory=InputConfig)
    forensics: ForensicsConfig = setting(default_factory=ForensicsConfig)
    store: StoreConfig = setting(default_factory=StoreConfig)
    service: ServiceConfig = setting(default_factory=ServiceConfig)
    console: ConsoleConfig = setting(default_factory=ConsoleConfig)
    icao: IcaoConfig = setting(default_factory=IcaoConfig)
    token: TokenConfig = setting(default_factory=TokenConfig)

    @property
    def models_dir(self) -> Path:
        return Path(self.models.dir)


def _check_model_parameters(config: Config) -> None:
    """A loaded file may repeat a model's own parameters, not change them. Checked against the
    bundle it names (an unreadable bundle is the runtime's to report); the runtime checks again
    at every bundle (re)load."""
    try:
        entries = load_manifest(config.models_dir).models
    except ModelError:
        return
    quality = config.forensics.ela_quality
    if ELA_MODEL in entries and quality is not None:
        trained = entries[ELA_MODEL].extra.get("ela_quality")
        if quality != trained:
            raise ValueError(
                f"forensics.ela_quality = {quality} differs from {trained}, the quality the "
                f"{ELA_MODEL} model in {config.models_dir} was trained with: delete the line "
                "(the model's own is used)"
            )
    scale = config.landmarks.box_scale
    if scale is not None and scale != (own := model_box_scale(entries, config)):
        raise ValueError(
            f"landmarks.box_scale = {scale} differs from {own}, the landmark model's own: "
            "delete the line (the model's own is used)"
        )


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


def load_config(path: Path | str | None = None, models_dir: Path | str | None = None) -> Config:
    """Read and validate the config file (`find_config`); relative paths in it resolve against
    its folder. `models_dir` replaces its `[models] dir` before validation (a bundle tried with
    the office's settings before it is deployed: `kiosk check --models DIR`)."""
    path = find_config(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    if models_dir is not None:
        raw["models"] = {**raw.get("models", {}), "dir": str(Path(models_dir).absolute())}
    log.info("config %s", path)
    return parse_config(raw, source=str(path), base=path.absolute().parent)


def parse_config(raw: dict[str, Any], source: str = "config", base: Path | None = None) -> Config:
    """Validate a parsed config; relative paths resolve against `base` (default: the project
    root). Raises ConfigError with one line per problem, each naming the key path."""
    # Missing sections are validated as empty tables so their path defaults resolve against base.
    filled = {item.name: {} for item in Config._settings} | raw
    try:
        config = _build(Config, filled, (), base or PROJECT_ROOT)
        _check_model_parameters(config)
    except _Invalid as exc:
        lines = [problem.line() for problem in exc.problems]
        raise ConfigError("\n".join(f"{source}: {line}" for line in lines)) from None
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return config
