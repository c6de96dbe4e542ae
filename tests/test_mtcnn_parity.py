"""The LiteRT cascade finds the same faces as the `mtcnn` package (same count, IoU >= 0.9)."""

import cv2
import numpy as np
import pytest

from kiosk.runtime.vision.mtcnn_lite import MtcnnLite, MtcnnSettings, _nms_indices
from tests.conftest import DATA_ROOT, REPO


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _test_images(astronaut, two_faces, no_face):
    images = {
        "astronaut": astronaut,
        "two_faces": two_faces,
        "vga": cv2.resize(astronaut, (640, 480)),
        "no_face": no_face,
    }
    if DATA_ROOT.is_dir():
        from kiosk.runtime.imageio import load_rgb

        for path in sorted((DATA_ROOT / "faces68" / "afw").glob("*.jpg"))[:4]:
            images[path.name] = load_rgb(path)
    return images


@pytest.fixture(scope="module")
def reference():
    from training.mtcnn_reference import MtcnnReference

    return MtcnnReference(min_face_size=20)


def test_same_faces_as_mtcnn_package(reference, astronaut, two_faces, no_face):
    lite = MtcnnLite.from_models_dir(REPO / "models", settings=MtcnnSettings(min_face_size=20))
    for name, image in _test_images(astronaut, two_faces, no_face).items():
        ours, theirs = lite.detect(image), reference.detect(image)
        assert len(ours) == len(theirs), name
        for face in theirs:
            assert max(iou(face.box, mine.box) for mine in ours) >= 0.9, name
    assert len(lite.detect(two_faces)) == 2
    assert lite.detect(no_face) == []


def test_keypoints_close_to_reference(reference, astronaut):
    lite = MtcnnLite.from_models_dir(REPO / "models", settings=MtcnnSettings(min_face_size=20))
    ours, theirs = lite.detect(astronaut)[0], reference.detect(astronaut)[0]
    assert np.abs(ours.keypoints - theirs.keypoints).max() < 2.0


def test_nms_keeps_best_and_drops_overlaps():
    boxes = np.array([[0, 0, 10, 10, 0.9], [1, 1, 11, 11, 0.8], [50, 50, 60, 60, 0.7]], float)
    assert _nms_indices(boxes, 0.5).tolist() == [0, 2]
    assert _nms_indices(boxes, 0.9).tolist() == [0, 1, 2]
    assert _nms_indices(boxes[:0], 0.5).tolist() == []


def test_rejects_non_rgb(astronaut):
    lite = MtcnnLite.from_models_dir(REPO / "models")
    with pytest.raises(ValueError, match="RGB"):
        lite.detect(astronaut[..., 0])
