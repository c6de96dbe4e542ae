import cv2
import numpy as np

from kiosk.runtime.vision.landmarks import LandmarkPredictor, find_model
from kiosk.runtime.vision.mtcnn_lite import MtcnnLite
from kiosk.runtime.vision.regions import extract_regions, eye_line_angle
from tests.conftest import REPO


def _analyse(rgb):
    face = MtcnnLite.from_models_dir(REPO / "models").detect(rgb)[0]
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    landmarks = LandmarkPredictor.default().predict(gray, face.box)
    return face, gray, landmarks


def test_crop_sizes_and_landmark_groups(astronaut):
    face, gray, landmarks = _analyse(astronaut)
    regions = extract_regions(gray, landmarks, face.box)
    assert regions.right_eye.shape == regions.left_eye.shape == (56, 56)
    assert regions.mouth.shape == (72, 72)
    assert regions.face.shape == (128, 128)
    assert all(r.dtype == np.uint8 for r in (regions.right_eye, regions.mouth, regions.face))
    # The subject's right eye is on the image's left; every point lies inside the face box.
    assert landmarks.group("right_eye")[:, 0].mean() < landmarks.group("left_eye")[:, 0].mean()
    x0, y0, x1, _ = face.box
    inside = (landmarks.points[:, 0] > x0 - 5) & (landmarks.points[:, 0] < x1 + 5)
    assert inside.mean() > 0.95 and (landmarks.points[:, 1] > y0 - 5).all()


def test_crops_are_aligned_on_the_eye_line(astronaut):
    _, _, upright = _analyse(astronaut)
    center = (256, 200)
    rotated = cv2.warpAffine(
        astronaut,
        cv2.getRotationMatrix2D(center, 15, 1.0),
        (512, 512),
        borderMode=cv2.BORDER_REFLECT,
    )
    face, gray, tilted = _analyse(rotated)
    assert abs((eye_line_angle(upright) - eye_line_angle(tilted)) - 15) < 4
    straight = extract_regions(
        cv2.cvtColor(astronaut, cv2.COLOR_RGB2GRAY), upright, _analyse(astronaut)[0].box
    )
    aligned = extract_regions(gray, tilted, face.box)
    # After alignment the mouth crops of upright and tilted faces look alike.
    diff = np.abs(straight.mouth.astype(int) - aligned.mouth.astype(int)).mean()
    assert diff < 25


def test_stock_landmark_model_is_found():
    assert find_model().name == "shape_predictor_68_face_landmarks.dat"
