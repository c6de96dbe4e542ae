"""Labels reviewed by eye: notes become labels for the right photos, and the shipped label files
are the ones training and evaluation read."""

import csv
from pathlib import Path

from training import review

EYES, MOUTH = review.REVIEWS["eyes"], review.REVIEWS["mouth"]


def _root(tmp_path: Path, dataset: str, n: int = 60) -> Path:
    folder = tmp_path / dataset
    folder.mkdir()
    with open(folder / "index.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path"])
        writer.writerows([f"x/face_{i:02d}.jpg"] for i in range(n))
    return tmp_path


def test_notes_become_labels_in_the_seeded_order(tmp_path):
    root = _root(tmp_path, EYES.dataset)
    order = review.order(root, EYES)
    assert sorted(order) == sorted(f"x/face_{i:02d}.jpg" for i in range(60))
    assert order != sorted(order)  # shuffled, the same way every time
    assert order == review.order(root, EYES)
    notes = tmp_path / "notes.txt"
    notes.write_text("s00 O:0,5 C:3\ns01 O: C:1\n")
    out = tmp_path / "labels.csv"
    review.record(root, EYES, notes, out)
    labels = review.reviewed(EYES, out)
    assert len(labels) == 60  # sheet 0 (48) + the 12 photos of sheet 1
    assert labels[order[0]] == 0 and labels[order[5]] == 0  # open eyes pass
    assert labels[order[3]] == 1 and labels[order[48 + 1]] == 1  # closed eyes fail
    assert labels[order[1]] is None and labels[order[50]] is None


def test_an_open_mouth_is_the_failure(tmp_path):
    root = _root(tmp_path, MOUTH.dataset)
    order = review.order(root, MOUTH)
    notes = tmp_path / "notes.txt"
    notes.write_text("s00 O:2 C:7\n")
    out = tmp_path / "labels.csv"
    review.record(root, MOUTH, notes, out)
    labels = review.reviewed(MOUTH, out)
    assert labels[order[2]] == 1 and labels[order[7]] == 0 and labels[order[0]] is None


def test_shipped_reviews():
    eyes = list(review.reviewed(EYES).values())
    assert (len(eyes), eyes.count(0), eyes.count(1)) == (1154, 253, 88)
    mouths = list(review.reviewed(MOUTH).values())
    assert (len(mouths), mouths.count(1), mouths.count(0)) == (1192, 395, 453)


def test_a_review_of_some_splits_sees_only_their_photos():
    """mouth/'s review covers the photos the evaluation reads (val, test), named as its index
    names them, under its images/ folder."""
    from tests.conftest import data_root_or_skip
    from training.splits import split_of

    helen = review.REVIEWS["mouth_helen"]
    order = review.order(data_root_or_skip(), helen)
    assert len(order) == 260 and all(p.startswith("images/") for p in order)
    assert {split_of("mouth", p) for p in order} == {"val", "test"}
    mouths = list(review.reviewed(helen).values())
    assert (len(mouths), mouths.count(1), mouths.count(0)) == (260, 71, 153)


def test_mouth_reviews_cover_every_helen_photo_once():
    """Training reads mouth/'s labels from its reviews alone (training.collect): the val/test
    and train reviews are disjoint and together name every photo of its index."""
    import csv

    from tests.conftest import data_root_or_skip

    root = data_root_or_skip()
    helen, train = review.REVIEWS["mouth_helen"], review.REVIEWS["mouth_helen_train"]
    evaluated, trained = review.reviewed(helen), review.reviewed(train)
    with open(root / "mouth" / "annotations.csv", newline="") as handle:
        index = {f"images/{row['filename']}" for row in csv.DictReader(handle)}
    assert not evaluated.keys() & trained.keys()
    assert evaluated.keys() | trained.keys() == index
    assert set(review.order(root, train)) == trained.keys()
    states = list(trained.values())
    assert (len(states), states.count(1), states.count(0)) == (570, 204, 299)


def test_whole_photo_reviews_name_photos_of_the_datasets():
    """The several-people and Kaggle reviews: known states, and paths the evaluation names."""
    from tests.conftest import data_root_or_skip

    several = review.states("several_people")
    assert len(several) == 169 and set(several.values()) == {"several", "one", "unclear"}
    assert review.several_people() == {p for p, s in several.items() if s == "several"}
    kaggle = review.states("mask_kaggle_faces_without_mask")
    states = list(kaggle.values())
    assert (len(states), states.count("clean"), states.count("covered")) == (106, 97, 3)
    root = data_root_or_skip()
    assert all((root / path).is_file() for path in several)
    with open(root / "mask_kaggle_faces" / "index.csv", newline="") as handle:
        index = {r["path"] for r in csv.DictReader(handle) if r["label"] == "without_mask"}
    assert set(kaggle) == index


def test_web_eye_reviews_cover_every_face_without_a_mask_once():
    """mask/without_mask's eye reviews (val/test for the verdicts, train for a trial's training)
    are disjoint, name every photo of that class by its path under mask/, and keep their counts."""
    from tests.conftest import data_root_or_skip
    from training.splits import split_of

    root = data_root_or_skip()
    evaluated = review.reviewed(review.REVIEWS["eyes_web"])
    trained = review.reviewed(review.REVIEWS["eyes_web_train"])
    photos = {p.relative_to(root / "mask").as_posix() for p in root.glob("mask/*/without_mask/*")}
    assert not evaluated.keys() & trained.keys()
    assert evaluated.keys() | trained.keys() == photos
    assert {split_of("mask", p) for p in evaluated} == {"val", "test"}
    for states, counts in ((evaluated, (567, 25, 310)), (trained, (1310, 43, 738))):
        values = list(states.values())
        assert (len(values), values.count(1), values.count(0)) == counts


def test_faces68_eye_review_sees_only_in_between_train_and_val_faces():
    """The faces68 eye review covers the train/val faces with an eye between the landmark
    cut-offs (EAR 0.10-0.22 on the manual points), by their path under faces68/."""
    import csv

    from tests.conftest import data_root_or_skip
    from training.splits import split_of

    root = data_root_or_skip()
    faces = review.reviewed(review.REVIEWS["eyes_faces68"])
    with open(root / "faces68_measures" / "measures.csv", newline="") as handle:
        rows = {r["image"].removeprefix("faces68/"): r for r in csv.DictReader(handle)}
    assert faces.keys() <= rows.keys()
    assert {split_of("faces68", p) for p in faces} == {"train", "val"}
    for path in faces:
        assert any(0.10 < float(rows[path][k]) < 0.22 for k in ("ear_left", "ear_right"))
    states = list(faces.values())
    assert (len(states), states.count(1), states.count(0)) == (185, 41, 55)


def test_reviewed_mouths_of_youtube_and_faces68():
    """YouTube's mouths (the evaluation's labels, every photo once) and faces68's evaluated mouths
    (a check of OFIQ's landmark rule, which labels them: it agrees with the eye on all but 4 of
    the 275 mouths both call open or closed)."""
    from tests.conftest import data_root_or_skip

    root = data_root_or_skip()
    ytf = review.reviewed(review.REVIEWS["mouth_ytf"])
    with open(root / "faces68_ytf" / "index.csv", newline="") as handle:
        assert ytf.keys() == {row["path"] for row in csv.DictReader(handle)}
    states = list(ytf.values())
    assert (states.count(1), states.count(0), states.count(None)) == (344, 360, 450)
    by_eye = review.reviewed(review.REVIEWS["mouth_faces68"])
    assert set(review.order(root, review.REVIEWS["mouth_faces68"])) == by_eye.keys()
    with open(root / "faces68_measures" / "measures.csv", newline="") as handle:
        ofiq = {
            row["image"].removeprefix("faces68/"): {"open": 1, "closed": 0}.get(row["mouth_label"])
            for row in csv.DictReader(handle)
        }
    both = [(ofiq[p], s) for p, s in by_eye.items() if ofiq[p] is not None and s is not None]
    assert (len(both), sum(a != b for a, b in both)) == (275, 4)


def test_faces68_in_between_train_mouths_are_the_ones_ofiq_leaves_out():
    """The trial's review (mouth_faces68_train) covers exactly faces68's train mouths between
    OFIQ's cut-offs, once each."""
    from tests.conftest import data_root_or_skip
    from training.splits import split_of

    root = data_root_or_skip()
    between = review.reviewed(review.REVIEWS["mouth_faces68_train"])
    with open(root / "faces68_measures" / "measures.csv", newline="") as handle:
        ambiguous = {
            row["image"].removeprefix("faces68/")
            for row in csv.DictReader(handle)
            if row["mouth_label"] == "ambiguous"
        }
    assert between.keys() == {p for p in ambiguous if split_of("faces68", p) == "train"}
    states = list(between.values())
    assert (states.count(1), states.count(0), states.count(None)) == (82, 27, 32)
