"""Detector backends: the registry, YuNet on the test faces, and the background-face rule."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from kiosk.contract.errors import ConfigError, ModelError
from kiosk.contract.reasons import SEVERAL_FACES
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.analysis import FaceAnalyzer
from kiosk.runtime.vision.detectors import DETECTORS, Cascade, make_detector
from kiosk.runtime.vision.types import Face, Landmarks
from kiosk.runtime.vision.yunet import Yunet, YunetSettings
from tests.conftest import REPO


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry(REPO / "models")


@pytest.fixture(scope="module")
def yunet(registry) -> Yunet:
    return Yunet(registry, YunetSettings(min_face_size=20))


def test_registry_names_every_backend_and_refuses_unknown_ones(registry) -> None:
    assert list(DETECTORS) == ["mtcnn", "yunet"]
    with pytest.raises(ConfigError, match="mtcnn, yunet"):
        make_detector("blazeface", registry)


def test_yunet_finds_the_face_mtcnn_finds(registry, yunet, astronaut) -> None:
    faces = yunet.detect(astronaut)
    mtcnn = make_detector("mtcnn", registry).detect(astronaut)
    assert len(faces) == 1 and faces[0].confidence > 0.8
    assert iou(faces[0].box, mtcnn[0].box) > 0.7
    # MTCNN's keypoint order: eyes in image order, nose, mouth corners in image order.
    eye_left, eye_right, nose, mouth_left, mouth_right = faces[0].keypoints
    assert eye_left[0] < nose[0] < eye_right[0] and mouth_left[0] < mouth_right[0]
    assert eye_left[1] < nose[1] < mouth_left[1]
    assert np.abs(faces[0].keypoints - mtcnn[0].keypoints).max() < 8


def test_yunet_counts_faces(yunet, two_faces, no_face) -> None:
    assert len(yunet.detect(two_faces)) == 2
    assert yunet.detect(no_face) == []


def test_detecting_on_a_smaller_copy_keeps_the_box(registry, portrait) -> None:
    full = Yunet(registry, YunetSettings(detect_width=0)).detect(portrait)
    small = Yunet(registry, YunetSettings(detect_width=320)).detect(portrait)
    assert len(full) == len(small) == 1
    assert iou(full[0].box, small[0].box) > 0.85
    height, width = portrait.shape[:2]
    assert 0 <= small[0].box[0] < small[0].box[2] <= width - 1
    assert 0 <= small[0].box[1] < small[0].box[3] <= height - 1


def test_faces_under_the_minimum_size_are_dropped(registry, astronaut) -> None:
    assert Yunet(registry, YunetSettings(min_face_size=150)).detect(astronaut) == []


def test_yunet_refuses_non_rgb(yunet, astronaut) -> None:
    with pytest.raises(ValueError, match="RGB"):
        yunet.detect(astronaut[..., 0])


def test_an_altered_model_file_never_loads(tmp_path: Path) -> None:
    manifest = json.loads((REPO / "models" / "manifest.json").read_text())
    entry = manifest["models"]["yunet"]
    (tmp_path / "manifest.json").write_text(json.dumps({"models": {"yunet": entry}}))
    data = bytearray((REPO / "models" / entry["file"]).read_bytes())
    data[-1] ^= 1
    (tmp_path / entry["file"]).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match"):
        make_detector("yunet", ModelRegistry(tmp_path))


class _Detector:
    def __init__(self, faces: list[Face]) -> None:
        self.faces = faces

    def detect(self, rgb: np.ndarray) -> list[Face]:
        return self.faces


class _Landmarks:
    """68 points spread over the box: enough for the region crops."""

    def predict(self, image: np.ndarray, box) -> Landmarks:
        x0, y0, x1, y1 = box
        grid = np.random.default_rng(0).uniform(0.2, 0.8, (68, 2))
        return Landmarks((grid * [x1 - x0, y1 - y0] + [x0, y0]).astype(np.float32))


def _face(x: float, y: float, side: float, confidence: float = 0.99) -> Face:
    return Face((x, y, x + side, y + side), confidence, np.zeros((5, 2), np.float32))


@pytest.mark.parametrize(
    ("sides", "ratio", "reason", "counted"),
    [
        ((200, 60), 0.5, None, 1),  # a passer-by far behind: ignored
        ((60, 200), 0.5, None, 1),  # even when the detector is surer of the small one
        ((200, 180), 0.5, SEVERAL_FACES, 2),  # two applicants
        ((200, 110), 0.5, SEVERAL_FACES, 2),  # just over half the size still counts
        ((200, 60), 0.0, SEVERAL_FACES, 2),  # ratio 0: every face counts
    ],
)
def test_background_faces_much_smaller_than_the_main_one_are_ignored(
    portrait, sides, ratio, reason, counted
) -> None:
    faces = [_face(40 + 260 * i, 100, side, 0.99 - 0.01 * i) for i, side in enumerate(sides)]
    analyzer = FaceAnalyzer(_Detector(faces), _Landmarks(), 100, background_face_ratio=ratio)
    analysis = analyzer.analyze(portrait)
    assert analysis.reason == reason
    assert len(analysis.faces) == counted
    if reason is None:
        assert analysis.face is not None and analysis.face.width == max(sides)
        assert analysis.regions is not None


def test_a_real_background_face_is_ignored_and_a_second_applicant_is_not(
    yunet, portrait, astronaut
) -> None:
    """The astronaut's face at 1/3 of the applicant's size pasted behind her shoulder."""
    scene = portrait.copy()
    small = cv2.resize(astronaut[40:200, 150:300], None, fx=0.4, fy=0.4)
    scene[20 : 20 + small.shape[0], 560 : 560 + small.shape[1]] = small
    assert len(yunet.detect(scene)) == 2
    analysis = FaceAnalyzer(yunet, _Landmarks(), 100).analyze(scene)
    assert analysis.reason is None and len(analysis.faces) == 1
    side_by_side = np.hstack([portrait[:, 80:400], portrait[:, 80:400][:, ::-1]])
    assert FaceAnalyzer(yunet, _Landmarks(), 100).analyze(side_by_side).reason == SEVERAL_FACES


def test_the_pipeline_builds_the_configured_backend(registry) -> None:
    from kiosk.config import load_config
    from kiosk.runtime.pipeline import CompliancePipeline

    config = load_config()
    pipeline = CompliancePipeline(config, registry)
    detector = pipeline.analyzer.detector  # the shipped config: YuNet, BlazeFace when it sees none
    assert isinstance(detector, Cascade) and isinstance(detector.detectors[0], Yunet)
    assert pipeline.analyzer.landmarks.model_path.name == "shape_predictor_yunet.npz"
    mtcnn = dataclasses.replace(
        config, detector=dataclasses.replace(config.detector, backend="mtcnn", fallback="none")
    )
    pipeline = CompliancePipeline(mtcnn, registry)
    assert type(pipeline.analyzer.detector).__name__ == "MtcnnLite"
    assert pipeline.analyzer.landmarks.model_path.name == "shape_predictor_mtcnn.npz"
