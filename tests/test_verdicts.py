"""Per-face verdicts: landmark measures, score fusion in the checks, and the evaluation's choices
(threshold that holds across sources, fusion fit, face misses counted end to end)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from kiosk.contract.errors import ModelError
from kiosk.runtime.checks.eyes_closed import EyesClosed, eye_aspect_ratio
from kiosk.runtime.checks.mouth_open import MouthOpen, mouth_opening
from kiosk.runtime.models.fusion import CNN_LOGIT, Fusion, logit, sigmoid, sigmoids
from kiosk.runtime.models.registry import ModelRegistry
from kiosk.runtime.vision.types import Landmarks
from tests.conftest import DATA_ROOT
from training import verdicts
from training.paths import MODELS


def _eye(height: float) -> np.ndarray:
    """Six EAR points of an eye 30 px wide whose lids are `height` apart."""
    h = height / 2
    return np.array([[0, 0], [10, -h], [20, -h], [30, 0], [20, h], [10, h]], np.float32)


def test_eye_aspect_ratio_falls_when_the_eye_closes() -> None:
    assert eye_aspect_ratio(_eye(9)) == pytest.approx(0.3)
    assert eye_aspect_ratio(_eye(1.5)) == pytest.approx(0.05)


def test_mouth_opening_is_the_widest_inner_lip_gap_over_eye_to_chin() -> None:
    points = np.zeros((68, 2), np.float32)
    points[36:48] = [50, 0]  # eye midpoint (50, 0)
    points[8] = [50, 100]  # chin: eye-to-chin 100 px
    for top, bottom, gap in ((61, 67, 2), (62, 66, 8), (63, 65, 4)):
        points[top], points[bottom] = [50, 60], [50, 60 + gap]
    assert mouth_opening(Landmarks(points)) == pytest.approx(0.08)


def test_fusion_reads_its_entry_and_refuses_what_this_kiosk_cannot_compute() -> None:
    assert Fusion.from_entry({}, "eyes_closed", {"eye_aspect_ratio"}) is None
    raw = {"features": [CNN_LOGIT, "eye_aspect_ratio"], "weights": [1.0, -20.0], "bias": 2.0}
    fusion = Fusion.from_entry({"fusion": raw}, "eyes_closed", {"eye_aspect_ratio"})
    z = 2.0 + 1.0 * logit(0.9) - 20.0 * 0.1
    assert fusion.score({CNN_LOGIT: logit(0.9), "eye_aspect_ratio": 0.1}) == pytest.approx(
        1 / (1 + math.exp(-z))
    )
    with pytest.raises(ModelError, match="this kiosk computes"):
        Fusion.from_entry({"fusion": {**raw, "features": [CNN_LOGIT, "pupil"]}}, "x", set())
    with pytest.raises(ModelError, match="features, weights and bias"):
        Fusion.from_entry({"fusion": {"weights": [1.0]}}, "x", set())


@pytest.fixture(scope="module")
def analysis(pipeline, portrait: np.ndarray):
    result = pipeline.analyzer.analyze(portrait)
    assert result.reason is None
    return result


@pytest.mark.parametrize("check_type", [EyesClosed, MouthOpen])
def test_the_record_keeps_score_threshold_failed_and_adds_the_parts(check_type, analysis) -> None:
    check = check_type(ModelRegistry(MODELS))
    features = check.features(analysis)
    record = check(analysis).as_dict()
    assert {"score", "threshold", "failed"} <= record.keys()
    assert record["details"] == pytest.approx(features, abs=1e-6)
    assert set(features) == {"cnn_score", check.geometry, *check.extra_features}
    # A fusion that only listens to the measure makes the score follow it.
    check.fusion = Fusion((check.geometry,), (10.0,), -1.0)
    expected = 1 / (1 + math.exp(-(-1.0 + 10.0 * features[check.geometry])))
    assert check(analysis).score == pytest.approx(expected)
    check.fusion = None
    assert check(analysis).score == pytest.approx(features["cnn_score"])


def _faces(
    rows: list[tuple[str, str, int, float, float, str]], paths: tuple[str, ...] = ()
) -> verdicts.Faces:
    """Rows (source, split, eyes label, eyes CNN score, smaller EAR, outcome); `paths`: the
    photos' paths, when a test needs them."""
    table = []
    for index, (source, split, label, cnn, ear, outcome) in enumerate(rows):
        ok = outcome == "ok"
        table.append(
            {
                "path": paths[index] if paths else "",
                "group": f"g{index}",
                "dataset": source.split("/")[0],
                "split": split,
                "source": source,
                "outcome": outcome,
                "eyes": str(label),
                "mouth": "",
                "veil": "0",
                "eyes_cnn": str(cnn) if ok else "",
                "ear_min": str(ear) if ok else "",
                "mouth_cnn": "",
                "mouth_opening": "",
                "veil_cnn": "",
            }
        )
    return verdicts.Faces(table)


def test_threshold_holds_for_the_worst_source_not_the_pooled_faces(monkeypatch) -> None:
    """A big easy source and a small hard one: the pooled EER point would sacrifice the small
    one; the worst-source choice balances them."""
    monkeypatch.setattr(verdicts, "MIN_UNIT", 2)
    rows = [("closed", "val", 1, s, 0.1, "ok") for s in (0.55, 0.6, 0.65, 0.9, 0.95)]
    rows += [("easy", "val", 0, 0.05, 0.3, "ok")] * 50
    rows += [("hard", "val", 0, s, 0.3, "ok") for s in (0.5, 0.58, 0.7, 0.72, 0.1)]
    faces = _faces(rows)
    eyes = verdicts.VERDICTS["eyes_closed"]
    score = verdicts.scores(faces, eyes, "cnn")
    threshold = verdicts.choose_threshold(faces, eyes, score, faces.split == "val")
    assert threshold == pytest.approx(0.6)  # 1 of 5 closed missed, 2 of 5 hard flagged
    labels = faces.eyes.astype(int)
    _, pooled = verdicts.eer_point(labels, score)
    assert pooled.threshold < 0.6  # the pooled EER point lets the hard source down


def test_an_eer_interval_resamples_whole_groups() -> None:
    """Faces of one person move together: resampling people, not faces, widens the interval
    when a person's faces are alike; the interval holds the EER and reads the same every run."""
    rng = np.random.default_rng(3)
    labels = np.repeat([1, 0], 200)
    person = np.repeat(rng.normal(0, 1.5, 20), 20)  # 20 people of 20 faces, 10 of each class
    values = np.where(labels == 1, 1.0, -1.0) + person + rng.normal(0, 0.5, 400)
    by_person = np.repeat(np.arange(20), 20).astype(str)
    by_face = np.arange(400).astype(str)
    value, _ = verdicts.eer_point(labels, values)
    low, high = verdicts.eer_interval(labels, values, by_person)
    assert low < value < high
    assert verdicts.eer_interval(labels, values, by_person) == [low, high]
    face_low, face_high = verdicts.eer_interval(labels, values, by_face)
    assert high - low > 1.5 * (face_high - face_low)
    separated = np.where(labels == 1, 1.0, 0.0)
    assert verdicts.eer_interval(labels, separated, by_face) == [0.0, 0.0]


def test_a_face_the_detector_misses_is_an_end_to_end_error() -> None:
    rows = [("closed", "test", 1, 0.9, 0.1, "ok"), ("closed", "test", 1, 0, 0, "no_face")]
    faces = _faces(rows)
    eyes = verdicts.VERDICTS["eyes_closed"]
    score = verdicts.scores(faces, eyes, "cnn")
    (row,) = verdicts.source_rows(faces, eyes, score, faces.split == "test", {"t": 0.5})
    assert row["face_missed"] == 1
    assert row["t"] == {"error": 0.0, "end_to_end": 0.5}


def test_several_faces_is_a_miss_unless_the_photo_shows_several_people(monkeypatch) -> None:
    """A photo reviewed as several people is refused rightly: counted apart, not as an error."""
    monkeypatch.setattr(verdicts, "several_people", lambda: {"closed/two_people.jpg"})
    rows = [("closed", "test", 1, 0.9, 0.1, "ok")]
    rows += [("closed", "test", 1, 0, 0, "several_faces")] * 2
    faces = _faces(rows, ("closed/a.jpg", "closed/two_people.jpg", "closed/one.jpg"))
    eyes = verdicts.VERDICTS["eyes_closed"]
    score = verdicts.scores(faces, eyes, "cnn")
    (row,) = verdicts.source_rows(faces, eyes, score, faces.split == "test", {"t": 0.5})
    assert (row["face_missed"], row["several_people"]) == (1, 1)
    assert row["t"] == {"error": 0.0, "end_to_end": 0.5}  # 1 miss of the 2 applicants


def test_fusion_fit_weighs_the_measure_that_separates() -> None:
    rng = np.random.default_rng(0)
    rows = [
        ("closed", "val", 1, rng.uniform(0.3, 0.7), rng.uniform(0.0, 0.12), "ok") for _ in range(40)
    ] + [("open", "val", 0, rng.uniform(0.3, 0.7), rng.uniform(0.2, 0.35), "ok") for _ in range(40)]
    faces = _faces(rows)
    fusion = verdicts.fit_fusion(faces, verdicts.VERDICTS["eyes_closed"], faces.split == "val")
    weights = dict(zip(fusion.features, fusion.weights, strict=True))
    assert weights["eye_aspect_ratio"] < 0  # a small EAR means closed
    assert abs(weights[CNN_LOGIT]) < abs(weights["eye_aspect_ratio"]) * 0.35


def test_fusion_takes_the_lower_eye_where_the_rows_have_it() -> None:
    """Closed faces have two high eye scores, open ones a high score from one poor crop at most:
    the lower eye separates them and gets the weight; rows written before the column existed
    fit the fusion without it."""
    rng = np.random.default_rng(1)
    table = []
    for label in (1, 0) * 40:
        higher = rng.uniform(0.4, 0.9)
        lower = rng.uniform(0.3, higher) if label else rng.uniform(0.01, 0.1)
        table.append((label, higher, lower, rng.uniform(0.1, 0.3)))
    rows = [("src", "val", y, high, ear, "ok") for y, high, _, ear in table]
    faces = _faces(rows)
    eyes = verdicts.VERDICTS["eyes_closed"]
    assert verdicts.fit_fusion(faces, eyes, faces.split == "val").features == (
        CNN_LOGIT,
        "eye_aspect_ratio",
    )
    faces.eyes_cnn_lower = np.array([low for _, _, low, _ in table])
    fusion = verdicts.fit_fusion(faces, eyes, faces.split == "val")
    weights = dict(zip(fusion.features, fusion.weights, strict=True))
    assert weights["lower_eye_cnn_logit"] > abs(weights[CNN_LOGIT])
    fused = verdicts.scores(faces, eyes, "fused", fusion)
    assert verdicts.eer_point(faces.eyes.astype(int), fused)[0] == 0.0


def test_the_eye_check_fuses_the_lower_eye_as_its_logit(analysis) -> None:
    check = EyesClosed(ModelRegistry(MODELS))
    features = check.features(analysis)
    assert features["lower_eye_cnn_score"] <= features["cnn_score"]
    check.fusion = Fusion(("lower_eye_cnn_logit",), (1.0,), 0.0)
    assert check(analysis).score == pytest.approx(features["lower_eye_cnn_score"], abs=1e-6)
    entry = {"fusion": check.fusion.as_dict()}
    assert Fusion.from_entry(entry, "eyes_closed", {"lower_eye_cnn_logit"}) == check.fusion


@pytest.mark.skipif(not (DATA_ROOT / "faces68_measures").is_dir(), reason="no shared datasets")
def test_evaluation_photos_keep_trained_splits_out_and_label_every_source() -> None:
    from training.evaluate_faces import photos

    seen: dict[str, set] = {}
    for photo, _, split in photos(DATA_ROOT):
        if photo.dataset in verdicts.VERDICTS["veil"].trained_on:
            assert split in ("val", "test")  # their train split trained the models
        seen.setdefault(photo.source, set()).add((photo.eyes, photo.mouth, photo.veil))
    assert seen["eyes_closed_faces"] == {(1, m, 0) for m in (0, 1, None)}  # mouths reviewed
    assert {labels[0] for labels in seen["faces68_ytf"]} == {0, 1, None}  # eyes reviewed
    assert seen["mask_web_types"] == {(None, None, 1)}
    assert {labels[1] for labels in seen["faces68"]} == {0, 1, None}
    assert seen["mask_kaggle_faces/mask_weared_incorrect"] == {(None, None, None)}
    # reviewed by eye: a hand or a camera over the face, or no face, is not a clean face
    assert seen["mask_kaggle_faces/without_mask"] == {(None, None, 0), (None, None, None)}


def test_the_rows_fingerprint_follows_the_code_that_cuts_crops(monkeypatch, tmp_path) -> None:
    """An edit of the crop code (a refitted box map, another landmark fit) moves crops as a new
    model file would: rows made before it are stale, so `--reuse` must not keep them."""
    import shutil

    from training import evaluate_faces

    vision, contract = evaluate_faces.CROP_CODE
    copy = tmp_path / "vision"
    shutil.copytree(vision, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(evaluate_faces, "CROP_CODE", (copy, contract))
    before = evaluate_faces.Runner("yunet", MODELS, []).fingerprint["face_models"]
    assert evaluate_faces.Runner("yunet", MODELS, []).fingerprint["face_models"] == before
    detectors = copy / "detectors.py"
    detectors.write_text(detectors.read_text().replace("YUNET_BOX_MAPS", "BOX_MAPS"))
    assert evaluate_faces.Runner("yunet", MODELS, []).fingerprint["face_models"] != before


def test_the_rows_fingerprint_follows_the_code_that_scores_crops(monkeypatch, tmp_path) -> None:
    """A classifier-side edit (a test-time view added to a check, another fusion) changes the
    scores with the same model files: rows made before it must not be kept by `--reuse`."""
    import shutil

    from training import evaluate_faces

    *checks, models = evaluate_faces.SCORE_CODE
    copy = tmp_path / "models"
    shutil.copytree(models, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(evaluate_faces, "SCORE_CODE", (*checks, copy))
    before = evaluate_faces.Runner("yunet", MODELS, []).fingerprint
    wrapper = copy / "tflite_io.py"
    wrapper.write_text(wrapper.read_text() + "\n# a change\n")
    after = evaluate_faces.Runner("yunet", MODELS, []).fingerprint
    assert after["face_models"] != before["face_models"]
    assert after["eyes_model"] == before["eyes_model"]  # still the model file's sha256 prefix


def test_reused_rows_lose_the_retrained_models_old_scores() -> None:
    """A row `--reuse` copies was scored by the old eye model: its eye scores go, the other
    models' scores and the landmark measures stay."""
    from training.evaluate_faces import without_stale

    row = {"eyes_cnn": "0.9", "eyes_cnn_lower": "0.2", "eyes_model": "old", "ear_min": "0.2"}
    row |= {"mouth_cnn": "0.4", "mouth_model": "m1", "veil_cnn": "0.1"}
    kept = without_stale(row, ("eyes",))
    assert kept["eyes_cnn"] == kept["eyes_cnn_lower"] == kept["eyes_model"] == ""
    assert (kept["ear_min"], kept["mouth_cnn"], kept["veil_cnn"]) == ("0.2", "0.4", "0.1")
    assert without_stale(row, ("eyes", "mouth"))["mouth_model"] == ""


def test_reused_rows_take_todays_labels(monkeypatch, tmp_path) -> None:
    """A review that relabels a source must reach the rows `--reuse` copies: a photo whose mouth
    turned unclear keeps its scores (no model it labels changed) but not its old mouth label."""
    from training import evaluate_faces

    photo = evaluate_faces.Photo("faces68_ytf", tmp_path / "faces68_ytf/a.jpg", "faces68_ytf", 0)
    monkeypatch.setattr(evaluate_faces, "photos", lambda root: iter([(photo, "p1", "test")]))
    monkeypatch.setattr(evaluate_faces, "Runner", lambda *args: None)
    monkeypatch.setattr(evaluate_faces.masks, "load_overlays", lambda folder: [])
    old = {c: "" for c in evaluate_faces.COLUMNS}
    old |= {"dataset": "faces68_ytf", "path": "faces68_ytf/a.jpg", "variant": "real"}
    old |= {"eyes": "0", "mouth": "1", "mouth_cnn": "0.7", "mouth_model": "m1", "eyes_cnn": "0.2"}
    reuse = tmp_path / "old.csv"
    with open(reuse, "w", newline="") as handle:
        writer = csv.DictWriter(handle, evaluate_faces.COLUMNS)
        writer.writeheader()
        writer.writerow(old)
    out = evaluate_faces.collect(tmp_path, "yunet", tmp_path / "new.csv", None, reuse=reuse,
                                 rerun=("mouth",))  # fmt: skip
    with open(out, newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["eyes"], row["mouth"]) == ("0", "")  # today's labels
    assert (row["mouth_cnn"], row["eyes_cnn"]) == ("", "0.2")  # the rerun model's score goes


def test_a_face_under_the_kiosk_detector_floor_is_too_small_not_missed(astronaut, no_face):
    """The kiosk's detector looks for faces from 40 px; a smaller face is 'move closer'."""
    import cv2

    from training.evaluate_faces import Runner

    runner = Runner("yunet", MODELS, [])
    small = cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)  # face ~30 px
    canvas = np.full((240, 320, 3), 127, np.uint8)
    canvas[56:184, 96:224] = small
    assert runner.row(canvas)["outcome"] == "face_too_small"
    assert runner.row(no_face)["outcome"] == "no_face"
    assert runner.row(astronaut)["outcome"] == "ok"


def _write_rows(path, mouth_models: list[str], mouth_labels: list[str] | None = None) -> None:
    scores = ("eyes", "mouth", "veil", "eyes_cnn", "ear_min", "mouth_cnn", "mouth_opening")
    columns = ("dataset", "split", "source", "outcome", "group", *scores, "veil_cnn")
    lines = [",".join((*columns, *verdicts.FINGERPRINT.values(), "face_models"))]
    for model, label in zip(mouth_models, mouth_labels or ["1"] * len(mouth_models), strict=True):
        lines.append(f"mouth,test,mouth,ok,g,,{label},,,,0.9,0.1,,e1,{model},v1,f1")
    path.write_text("\n".join(lines) + "\n")


def test_rows_scored_by_different_models_are_refused(tmp_path) -> None:
    """The bug this guards against: rows kept by `--reuse` from an older bundle carried the
    previous mouth model's scores under the shipped model's threshold."""
    same, mixed, unlabelled = (tmp_path / f"{n}.csv" for n in ("same", "mixed", "unlabelled"))
    _write_rows(same, ["m1", "m1"])
    _write_rows(mixed, ["m1", "m0"])
    _write_rows(unlabelled, ["m1", "m0"], mouth_labels=["1", ""])
    assert verdicts.Faces.read(same).models["mouth_model"] == "m1"
    with pytest.raises(SystemExit, match="mouth_model differs between rows"):
        verdicts.Faces.read(mixed)
    # a row without a mouth label (copied by --reuse --rerun mouth) is not the mouth's concern
    assert verdicts.Faces.read(unlabelled).models["mouth_model"] == "m1"


def test_a_threshold_is_shipped_only_to_the_model_that_made_the_scores(tmp_path) -> None:
    import shutil

    from kiosk.contract.manifest import load_manifest

    bundle = tmp_path / "models"
    bundle.mkdir()
    entry = load_manifest(MODELS).models["mouth_open"]
    shutil.copy(MODELS / "manifest.json", bundle)
    shutil.copy(MODELS / entry.file, bundle)
    with pytest.raises(SystemExit, match="the rows were scored by model 000000000000"):
        verdicts.ship(bundle, "mouth_open", {}, scored_by="000000000000")


def test_a_ship_adopts_the_candidate_bytes_the_rows_were_scored_with(tmp_path) -> None:
    """An export embeds its own time: shipping must take the candidate's very file and entry."""
    import json
    import shutil

    from kiosk.contract.manifest import load_manifest, write_entry

    entry = json.loads((MODELS / "manifest.json").read_text())["models"]["mouth_open"]
    bundles = {}
    for name, extra in (("candidate", b"\0"), ("models", b"")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "manifest.json").write_text(json.dumps({"models": {"mouth_open": entry}}))
        (folder / entry["file"]).write_bytes((MODELS / entry["file"]).read_bytes() + extra)
        reserved = ("file", "sha256", "bytes", "exported", "git_revision")
        fields = {k: v for k, v in entry.items() if k not in reserved}
        write_entry(folder, "mouth_open", folder / entry["file"], **fields)
        bundles[name] = folder
    shutil.copy(bundles["candidate"] / entry["file"], tmp_path / "scored.tflite")
    verdicts.adopt(bundles["candidate"], bundles["models"], "mouth_open")
    adopted = load_manifest(bundles["models"]).models["mouth_open"]
    assert adopted.sha256 == load_manifest(bundles["candidate"]).models["mouth_open"].sha256
    assert (bundles["models"] / entry["file"]).read_bytes() == (
        tmp_path / "scored.tflite"
    ).read_bytes()


def test_sigmoids_is_sigmoid_per_element_and_saturates_without_overflow():
    z = np.array([-1e4, -60.0, -2.5, 0.0, 1.25, 60.0, 1e4])
    with np.errstate(over="raise"):
        got = sigmoids(z)
    np.testing.assert_array_equal(got, [sigmoid(float(v)) for v in z])


def test_weak_sources_and_sets_without_a_target_do_not_decide_whether_a_retrained_model_ships():
    """The veil's synthetic overlays are reported apart from real masks (weak: they never decide),
    and only held-out sets with a target enter the mean EER."""
    veil = verdicts.VERDICTS["veil"]

    def result(eers: dict[str, float], worst: float, synthetic: float) -> dict:
        sources = [
            {"weak": False, "n": 100, "chosen": {"error": worst}},
            {"weak": True, "n": 100, "chosen": {"error": synthetic}},
        ]
        eer = {s.name: {"eer": eers.get(s.name, math.nan)} for s in veil.sets}
        return {"model": "veil", "methods": {"cnn": {"eer": eer, "sources": sources}}}

    targets = verdicts.deciding_sets(veil)
    others = [s.name for s in veil.sets if s.name not in targets]
    assert others and all(s.held_out for s in veil.sets if s.name in targets)
    new = result({**dict.fromkeys(targets, 0.05), **dict.fromkeys(others, 0.40)}, 0.07, 0.50)
    old = result({**dict.fromkeys(targets, 0.06), **dict.fromkeys(others, 0.10)}, 0.08, 0.01)
    assert verdicts.retrained_wins(new, old)
    assert not verdicts.retrained_wins(old, new)
