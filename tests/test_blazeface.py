"""BlazeFace on LiteRT (our anchor decoding and weighted NMS) and YuNet's BlazeFace fallback."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kiosk.config import DetectorConfig
from kiosk.contract.errors import ConfigError, ModelError
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.blazeface import (
    BLAZEFACE_FULL,
    BLAZEFACE_SHORT,
    BlazeFace,
    BlazeFaceSettings,
    anchors,
    mapped,
    weighted_nms,
)
from kiosk.runtime.vision.detectors import (
    YUNET_BOX_MAPS,
    Cascade,
    Mirrored,
    OnFirstUse,
    Yunet,
    make_detector,
)
from kiosk.runtime.vision.types import Face
from kiosk.runtime.vision.yunet import YunetSettings
from tests.conftest import REPO
from tests.test_detectors import iou

MODEL = REPO / "models" / "face_detection_short_range.tflite"


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry(REPO / "models")


@pytest.fixture(scope="module")
def blazeface() -> BlazeFace:
    return BlazeFace(MODEL.read_bytes(), BlazeFaceSettings(min_face_size=20))


def test_anchor_layouts_match_the_models_outputs() -> None:
    short, full = anchors(128), anchors(192)
    assert short.shape == (896, 2) and full.shape == (2304, 2)
    # 16x16 cells of 8 px, two anchors each, then 8x8 cells of 16 px, six anchors each.
    assert np.allclose(short[:3], [[1 / 32, 1 / 32], [1 / 32, 1 / 32], [3 / 32, 1 / 32]])
    assert np.allclose(short[512:519], [[1 / 16, 1 / 16]] * 6 + [[3 / 16, 1 / 16]])
    assert np.allclose(full[-1], [1 - 1 / 96, 1 - 1 / 96])
    with pytest.raises(ValueError, match="128, 192"):
        anchors(256)


def test_weighted_nms_merges_overlaps_by_score_and_keeps_the_rest() -> None:
    rows = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], np.float64)
    merged = weighted_nms(rows, np.array([0.6, 0.9, 0.7]), 0.3)
    assert len(merged) == 2
    assert np.allclose(
        merged[0], [(0.6 * 0 + 0.9 * 2) / 1.5, 0, (0.6 * 10 + 0.9 * 12) / 1.5, 10, 0.9]
    )
    assert np.allclose(merged[1], [50, 50, 60, 60, 0.7])


def test_box_map_moves_the_centre_then_sizes_the_box() -> None:
    assert mapped((10, 20, 30, 60), (0.0, 0.0, 1.0, 1.0)) == (10, 20, 30, 60)
    # 20 x 40 box centred (20, 40): centre down by 0.1 h = 4 px, 1.5 x as tall.
    assert np.allclose(mapped((10, 20, 30, 60), (0.0, 0.1, 1.0, 1.5)), (10, 14, 30, 74))


def test_blazeface_finds_the_face_yunet_finds(registry, blazeface, astronaut) -> None:
    faces = blazeface.detect(astronaut)
    yunet = Yunet(registry, YunetSettings(min_face_size=20)).detect(astronaut)
    assert len(faces) == 1 and faces[0].confidence > 0.8
    assert (
        0.6
        < iou(faces[0].box, yunet[0].box)
        < iou(mapped(faces[0].box, YUNET_BOX_MAPS[BLAZEFACE_SHORT]), yunet[0].box)
    )
    eye_left, eye_right, nose, mouth, mouth_again = faces[0].keypoints
    assert eye_left[0] < nose[0] < eye_right[0] and eye_left[1] < nose[1] < mouth[1]
    assert np.array_equal(mouth, mouth_again)
    assert np.abs(faces[0].keypoints[:3] - yunet[0].keypoints[:3]).max() < 10


def test_the_full_range_model_finds_the_face_yunet_finds(registry, astronaut) -> None:
    full = BlazeFace(registry.verified_bytes(BLAZEFACE_FULL), BlazeFaceSettings(min_face_size=20))
    (face,) = full.detect(astronaut)
    yunet = Yunet(registry, YunetSettings(min_face_size=20)).detect(astronaut)
    assert face.confidence > 0.8
    box_map = YUNET_BOX_MAPS[BLAZEFACE_FULL]
    assert 0.6 < iou(face.box, yunet[0].box) < iou(mapped(face.box, box_map), yunet[0].box)


def test_blazeface_counts_faces(blazeface, astronaut, no_face) -> None:
    # Short range wants faces that fill a good part of the frame: two heads side by side.
    head = astronaut[40:300, 120:330]
    assert len(blazeface.detect(np.ascontiguousarray(np.hstack([head, head])))) == 2
    assert blazeface.detect(no_face) == []


def test_blazeface_boxes_stay_in_the_frame_and_small_faces_drop(portrait, astronaut) -> None:
    mapped_faces = BlazeFace(
        MODEL.read_bytes(), BlazeFaceSettings(box_map=YUNET_BOX_MAPS[BLAZEFACE_SHORT])
    )
    (face,) = mapped_faces.detect(portrait)
    height, width = portrait.shape[:2]
    assert (
        0 <= face.box[0] < face.box[2] <= width - 1 and 0 <= face.box[1] < face.box[3] <= height - 1
    )
    tiny = BlazeFace(MODEL.read_bytes(), BlazeFaceSettings(min_face_size=150))
    assert tiny.detect(astronaut) == []
    with pytest.raises(ValueError, match="RGB"):
        tiny.detect(astronaut[..., 0])


class _Stub:
    def __init__(self, faces: list[Face]) -> None:
        self.faces, self.calls = faces, 0

    def detect(self, rgb: np.ndarray) -> list[Face]:
        self.calls += 1
        return self.faces


def test_the_fallback_runs_only_when_the_first_detector_finds_nothing(astronaut) -> None:
    one = [Face((0, 0, 50, 50), 0.9, np.zeros((5, 2), np.float32))]
    other = [Face((5, 5, 60, 60), 0.6, np.zeros((5, 2), np.float32))]
    first, second, third = _Stub(one), _Stub(other), _Stub(one)
    assert Cascade(first, second, third).detect(astronaut) == one and second.calls == 0
    first.faces = []
    assert Cascade(first, second, third).detect(astronaut) == other and second.calls == 1
    second.faces = []
    assert Cascade(first, second, third).detect(astronaut) == one and third.calls == 1
    third.faces = []
    assert Cascade(first, second, third).detect(astronaut) == [] and third.calls == 2


def test_config_builds_yunet_with_the_blazeface_fallback(registry, astronaut, no_face) -> None:
    detector = make_detector("yunet", registry, DetectorConfig(fallback="blazeface"))
    assert isinstance(detector, Cascade)
    yunet, short = detector.detectors
    assert isinstance(yunet, Yunet) and isinstance(short, OnFirstUse)
    assert len(detector.detect(astronaut)) == 1 and short.built is None  # YuNet's face
    assert detector.detect(no_face) == []  # none: the fallback is built and runs
    assert isinstance(short.built, BlazeFace)
    assert short.built.settings.box_map == YUNET_BOX_MAPS[BLAZEFACE_SHORT]
    built = short.built
    assert detector.detect(no_face) == [] and short.built is built  # built once
    assert isinstance(make_detector("yunet", registry, DetectorConfig()), Yunet)


def test_all_blazeface_passes_look_only_where_the_one_before_found_nothing(
    registry, astronaut, no_face
) -> None:
    """YuNet, then BlazeFace short range, full range, short range on the mirrored frame."""
    detector = make_detector("yunet", registry, DetectorConfig(fallback="blazeface_all"))
    _, short, full, mirrored = detector.detectors
    assert isinstance(mirrored, Mirrored)
    assert len(detector.detect(astronaut)) == 1 and short.built is None  # YuNet's face
    assert detector.detect(no_face) == []  # every pass built and run
    assert full.built.settings.box_map == YUNET_BOX_MAPS[BLAZEFACE_FULL]
    assert short.built.settings.box_map == YUNET_BOX_MAPS[BLAZEFACE_SHORT]
    assert mirrored.blazeface is short  # one interpreter for both short-range passes
    with pytest.raises(ConfigError, match='backend = "yunet"'):
        DetectorConfig(backend="mtcnn", fallback="blazeface_all")


def test_a_mirrored_detection_maps_back_to_the_frame(blazeface, astronaut) -> None:
    (face,) = blazeface.detect(astronaut)
    (back,) = Mirrored(blazeface).detect(astronaut)
    assert iou(face.box, back.box) > 0.8
    left_eye, right_eye, nose, mouth_left, mouth_right = back.keypoints
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] <= mouth_right[0]
    assert np.abs(back.keypoints[:3] - face.keypoints[:3]).max() < 10


def test_the_mirrored_pass_moves_its_boxes_the_way_the_map_says(astronaut) -> None:
    """The box map's horizontal shift is applied in the frame's own orientation: a box mapped
    in the mirror and flipped back would move the other way (2 dx of its width off)."""
    right = BlazeFaceSettings(min_face_size=20, box_map=(0.2, 0.0, 1.0, 1.0))
    blazeface = BlazeFace(MODEL.read_bytes(), right)
    (face,) = blazeface.detect(astronaut)
    (back,) = blazeface.detect(astronaut, mirrored=True)
    width = face.box[2] - face.box[0]
    assert abs((face.box[0] + face.box[2]) - (back.box[0] + back.box[2])) / 2 < 0.05 * width


def test_an_altered_fallback_model_fails_at_start(tmp_path) -> None:
    """The fallback's interpreter waits for its first frame, its model's hash check and input
    size check do not."""
    manifest = json.loads((REPO / "models" / "manifest.json").read_text())
    if BLAZEFACE_SHORT not in manifest["models"]:
        pytest.skip("the bundle does not list BlazeFace yet")
    names = ("yunet", BLAZEFACE_SHORT)
    entries = {name: manifest["models"][name] for name in names}
    (tmp_path / "manifest.json").write_text(json.dumps({"models": entries}))
    for name, entry in entries.items():
        data = bytearray((REPO / "models" / entry["file"]).read_bytes())
        if name == BLAZEFACE_SHORT:
            data[-1] ^= 1
        (tmp_path / entry["file"]).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match"):
        make_detector("yunet", ModelRegistry(tmp_path), DetectorConfig(fallback="blazeface"))
    (tmp_path / entries[BLAZEFACE_SHORT]["file"]).write_bytes(MODEL.read_bytes())
    entries[BLAZEFACE_SHORT]["input_shape"] = [1, 96, 96, 3]  # no anchor layout for 96 px
    (tmp_path / "manifest.json").write_text(json.dumps({"models": entries}))
    with pytest.raises(ModelError, match="not a square BlazeFace input"):
        make_detector("yunet", ModelRegistry(tmp_path), DetectorConfig(fallback="blazeface"))


def test_fallback_needs_yunet_and_its_model(registry, tmp_path) -> None:
    with pytest.raises(ConfigError, match='backend = "yunet"'):
        DetectorConfig(backend="mtcnn", fallback="blazeface")
    overridden = make_detector("mtcnn", registry, DetectorConfig(fallback="blazeface"))
    assert not isinstance(overridden, Cascade)  # MTCNN asked for explicitly: alone
    if BLAZEFACE_SHORT not in registry.entries:
        with pytest.raises(ModelError, match=BLAZEFACE_SHORT):
            make_detector("yunet", registry, DetectorConfig(fallback="blazeface"))
