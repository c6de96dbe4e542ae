"""The `make models` code path on tiny data: collect -> train one epoch -> export -> evaluate."""

import json

import numpy as np
import pytest

from tests.conftest import data_root_or_skip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    from training import collect

    root = data_root_or_skip()
    out = tmp_path_factory.mktemp("crops")
    collect.main(["--data-root", str(root), "--out", str(out), "--limit", "40"])
    return out


def test_collect_writes_crops_and_drop_log(crops):
    eyes = np.load(crops / "eyes.npz")
    assert eyes["images"].shape[1:] == (56, 56) and set(eyes["labels"]) == {0, 1}
    assert set(eyes["splits"]) <= {"train", "val", "test"}
    veil = np.load(crops / "veil.npz")
    assert veil["images"].shape[1:] == (128, 128)
    assert any(s.endswith("synthetic_mask") for s in veil["sources"])
    assert (crops / "drops.csv").read_text().startswith("dataset,path,reason")


def _collect_trial(tmp_path, *args: str):
    """Crops collected with a trial's switches, in their own folder."""
    from training import collect

    out = tmp_path / "trial"
    collect.main(["--data-root", str(data_root_or_skip()), "--out", str(out), *args])
    return out


def test_cew_mouths_only_on_request(crops, tmp_path):
    """CEW is the mouth verdict's unseen hand-reviewed source: `make` leaves its mouths out of
    the mouth crops; `--cew-mouths` (a trial) adds them."""

    assert not any("eyes_closed_faces" in s for s in np.load(crops / "mouth.npz")["sources"])
    out = _collect_trial(tmp_path, "--limit", "40", "--tasks", "mouth", "--cew-mouths")
    assert any(
        s == "eyes_closed_faces/pipeline_mouth" for s in np.load(out / "mouth.npz")["sources"]
    )


def test_youtube_mouths_only_on_request(crops, tmp_path):
    """YouTube's reviewed mouths are the mouth verdict's unseen video frames: `make` leaves them
    out; `--ytf-mouths` (a trial) adds them, only the faces reviewed open or closed."""
    from training import collect, review

    assert not any("faces68_ytf" in s for s in np.load(crops / "mouth.npz")["sources"])
    out = _collect_trial(tmp_path, "--limit", "40", "--tasks", "mouth", "--ytf-mouths")
    mouth = np.load(out / "mouth.npz")
    ytf = mouth["sources"] == "faces68_ytf/pipeline_mouth"
    reviewed = [v for v in review.reviewed(review.REVIEWS["mouth_ytf"]).values() if v is not None]
    assert 0 < ytf.sum() <= len(reviewed) and set(mouth["labels"][ytf]) == {0, 1}
    with pytest.raises(ValueError, match="unknown trials"):
        collect.Collector(data_root_or_skip(), 1, 7, trials=frozenset({"no_such_trial"}))


def test_kaggle_crowd_faces_join_the_veil_crops_only_on_request(crops, tmp_path):
    """Kaggle's crowd crops are the veil verdict's unseen source: `make` leaves them out;
    `--kaggle-veil` (a trial) adds the masked ones as covered, never a mask worn below the
    nose (no label)."""

    assert not any("kaggle" in s for s in np.load(crops / "veil.npz")["sources"])
    out = _collect_trial(tmp_path, "--limit", "60", "--tasks", "veil", "--kaggle-veil")
    veil = np.load(out / "veil.npz")
    # The first 60 Kaggle files (sorted) are the 36 masks worn below the nose and 24 masked
    # faces: only the masked ones may come in, as covered.
    kaggle = np.char.startswith(veil["sources"].astype(str), "mask_kaggle_faces/")
    assert 0 < kaggle.sum() <= 24
    assert set(veil["sources"][kaggle]) == {"mask_kaggle_faces/real_mask"}
    assert set(veil["labels"][kaggle]) == {1}


def test_eye_crops_come_from_closed_and_open_whole_faces(crops, tmp_path):
    """CEW faces give closed pipeline crops, mask/without_mask crops labelled by their review
    (below), YTF none (held out);
    `--tasks eyes` collects them without the mouth and veil analyses."""
    from training import collect

    eyes = np.load(crops / "eyes.npz")
    cew = eyes["sources"] == "eyes_closed_faces/pipeline_eye"
    assert cew.any() and set(eyes["labels"][cew]) == {1}
    only = tmp_path / "eyes_only"
    collect.main(
        [
            "--data-root",
            str(data_root_or_skip()),
            "--out",
            str(only),
            "--limit",
            "6",
            "--tasks",
            "eyes",
        ]
    )
    alone = np.load(only / "eyes.npz")
    mask = alone["sources"] == "mask/pipeline_eye"
    assert mask.any() and set(alone["labels"][mask]) <= {0, 1}
    assert not any("ytf" in str(s) for s in alone["sources"])
    assert not (only / "veil.npz").exists() and (only / "drops_eyes.csv").exists()


def test_crops_carry_the_persisted_split_of_their_photo(crops):
    from training import splits

    mouth = np.load(crops / "mouth.npz")
    persisted = {group: split for group, split in splits.load("mouth").values()}
    for dataset in ("faces68", "eyes_closed_faces"):  # CEW: its mouths reviewed by eye
        persisted |= {group: split for group, split in splits.load(dataset).values()}
    assert len(mouth["groups"]) > 0
    for group, split in zip(mouth["groups"], mouth["splits"], strict=True):
        assert persisted[str(group)] == split


def test_train_export_evaluate_one_epoch(crops, tmp_path):
    from kiosk.runtime.models.registry import ModelRegistry
    from kiosk.runtime.models.tflite_io import BinaryClassifier
    from training import evaluate, train
    from training.tasks import TASKS

    task = TASKS["mouth"]
    run = tmp_path / "runs" / task.name
    train.train(task, crops, run, epochs=1, strategy_name="default", seed=1)
    assert (run / "best.keras").exists() and (run / "history.csv").exists()
    models = tmp_path / "models"
    report = evaluate.evaluate(task, run, crops, tmp_path / "reports", models, latency_runs=5)
    entry = ModelRegistry(models).entry("mouth_open")
    assert entry.threshold == report["threshold"] and entry.quantization.startswith("int8")
    classifier = BinaryClassifier(ModelRegistry(models).verified_bytes("mouth_open"))
    assert 0.0 <= classifier.score(np.zeros((72, 72), np.uint8)) <= 1.0
    saved = json.loads((tmp_path / "reports" / "mouth_open" / "metrics.json").read_text())
    assert {"int8", "float32"} <= set(saved["test"])
    assert (tmp_path / "reports" / "mouth_open" / "det_pr.png").stat().st_size > 1000


def test_the_eye_task_trains_with_a_moving_average_of_its_weights(crops, tmp_path):
    """The eye recipe trains with an exponential moving average of its weights (Keras swaps the
    average in before validation and checkpointing) and records it."""
    import keras

    from training import train
    from training.tasks import TASKS

    task = TASKS["eyes"]
    assert task.ema_momentum  # reports/verdicts/ema_trial.md
    run = tmp_path / "runs" / task.name
    best = train.train(task, crops, run, epochs=2, strategy_name="default", seed=1, limit=64)
    info = json.loads((run / "train_info.json").read_text())
    assert info["ema_momentum"] == task.ema_momentum
    optimizer = keras.models.load_model(best).optimizer
    assert optimizer.use_ema and optimizer.ema_momentum == task.ema_momentum


def test_the_veil_recipe_trains_each_seed_and_ships_their_average(crops, tmp_path):
    """`training.train veil` trains one run per seed of the task (reports/verdicts/
    ensemble_trial.md) and averages them; a finished run is not trained again."""
    from training import train
    from training.tasks import TASKS

    seeds = TASKS["veil"].seeds
    assert len(seeds) == 3
    argv = [
        "veil",
        "--crops",
        str(crops),
        "--runs",
        str(tmp_path),
        "--epochs",
        "1",
        "--limit",
        "32",
    ]
    train.main(argv)
    info = json.loads((tmp_path / "veil" / "train_info.json").read_text())
    assert [m["seed"] for m in info["members"]] == list(seeds)
    assert all((tmp_path / "veil" / f"seed{s}" / "best.keras").exists() for s in seeds)
    first = tmp_path / "veil" / f"seed{seeds[0]}" / "best.keras"
    finished = first.stat().st_mtime_ns
    train.main(argv)
    assert first.stat().st_mtime_ns == finished


def test_a_trial_trains_another_network_and_records_it(crops, tmp_path):
    """`--architecture` (a trial: reports/verdicts/mouth_vgg_trial.md) trains that network in
    place of the spec's and says so in train_info.json, which the export's manifest entry reads."""
    import keras

    from training import train
    from training.tasks import TASKS

    assert TASKS["eyes"].architecture == "SqueezeMiniVGG"
    argv = ["eyes", "--crops", str(crops), "--runs", str(tmp_path), "--epochs", "1"]
    train.main([*argv, "--limit", "32", "--architecture", "SqueezeVGG"])
    info = json.loads((tmp_path / "eyes" / "train_info.json").read_text())
    assert info["architecture"] == "SqueezeVGG"
    assert keras.models.load_model(tmp_path / "eyes" / "best.keras").name == "SqueezeVGG"


def test_the_mouth_recipe_continues_its_first_stage_at_a_lower_rate(crops, tmp_path):
    """`training.train mouth` is the shipped recipe: 20 epochs, then 15 more at 5e-4 from the
    first stage's best checkpoint (shortened here); a finished first stage is kept."""
    import dataclasses

    from training import train
    from training.tasks import TASKS

    assert TASKS["mouth"].continued == (15, 5e-4)
    task = dataclasses.replace(TASKS["mouth"], continued=(1, 5e-4))
    run = tmp_path / "mouth"
    train.train_recipe(task, crops, run, seed=1, epochs=1, limit=32)
    info = json.loads((run / "train_info.json").read_text())
    assert info["init"] == str(run / "stage1" / "best.keras") and info["learning_rate"] == 5e-4
    first = (run / "stage1" / "best.keras").stat().st_mtime_ns
    train.train_recipe(task, crops, run, seed=1, epochs=1, limit=32)
    assert (run / "stage1" / "best.keras").stat().st_mtime_ns == first


def test_int8_matches_float_on_real_crops(crops, tmp_path):
    """Parity of the exported int8 model with Keras on the same crops (one-epoch model)."""
    from kiosk.runtime.models.tflite_io import BinaryClassifier
    from training.export import export_variants, read_metadata
    from training.nets import squeeze_mini_vgg
    from training.train import load_split

    images = load_split(crops / "eyes.npz", "train")["images"][:40]
    model = squeeze_mini_vgg((56, 56, 1))
    paths = export_variants(model, images, tmp_path / "eyes")
    keras_scores = model.predict(images[..., None].astype(np.float32), verbose=0)[:, 0]
    for variant, tolerance in (("float32", 1e-4), ("int8", 0.06)):
        classifier = BinaryClassifier(paths[variant].read_bytes())
        lite = np.array([classifier.score(i) for i in images])
        assert np.abs(lite - keras_scores).max() < tolerance, variant
        embedded = read_metadata(paths[variant].read_bytes())
        assert embedded["name"] == "eyes" and embedded["variant"] == variant
        assert embedded["input_shape"] == [-1, 56, 56, 1] and embedded["git_revision"]


def test_balanced_weights_equalise_cells():
    from training.train import balanced_weights

    labels = np.array([0, 0, 0, 1, 1, 0])
    sources = np.array(["a", "a", "a", "a", "b", "b"])
    weights = balanced_weights(labels, sources)
    totals = {}
    for s, y, w in zip(sources, labels, weights, strict=True):
        totals[(s, y)] = totals.get((s, y), 0) + w
    assert np.allclose(list(totals.values()), 1.5)


def test_crops_take_their_labels_from_the_reviews_and_measures(tmp_path):
    """faces68's mouths by their OFIQ label, the web faces' eyes by their review (both by
    default) and, with `--helen-review` (a trial), mouth/'s mouths by theirs: each crop's label
    is its photo's, and an unclear or ambiguous photo gives no crop."""
    import csv

    from training import collect, review

    root = data_root_or_skip()
    out, limit = tmp_path / "labels", 30
    args = ["--data-root", str(root), "--out", str(out), "--limit", str(limit)]
    collect.main([*args, "--tasks", "eyes", "mouth", "--helen-review"])
    with open(out / "drops_eyes_mouth.csv", newline="") as handle:
        dropped = {row["path"] for row in csv.DictReader(handle)}

    def expected(pattern: str, labels: dict[str, int | None], key) -> list[int]:
        files = sorted(root.glob(pattern))[:limit]
        kept = [f for f in files if str(f.relative_to(root)) not in dropped]
        return sorted(v for f in kept if (v := labels[key(f)]) is not None)

    with open(root / "faces68_measures" / "measures.csv", newline="") as handle:
        ofiq = {
            r["image"]: {"open": 1, "closed": 0}.get(r["mouth_label"])
            for r in csv.DictReader(handle)
        }
    helen = review.reviewed(review.REVIEWS["mouth_helen"])
    helen |= review.reviewed(review.REVIEWS["mouth_helen_train"])
    web = review.reviewed(review.REVIEWS["eyes_web"])
    web |= review.reviewed(review.REVIEWS["eyes_web_train"])
    mouth, eyes = np.load(out / "mouth.npz"), np.load(out / "eyes.npz")

    def labels(crops, source: str) -> list[int]:
        return sorted(int(v) for v in crops["labels"][crops["sources"] == source])

    assert labels(mouth, "faces68/pipeline_mouth") == expected(
        "faces68/*/*.jpg", ofiq, lambda f: f.relative_to(root).as_posix()
    )
    assert labels(mouth, "mouth/pipeline_mouth") == expected(
        "mouth/images/*.jpg", helen, lambda f: f"images/{f.name}"
    )
    web_eyes = expected(
        "mask/*/without_mask/*", web, lambda f: f.relative_to(root / "mask").as_posix()
    )
    assert labels(eyes, "mask/pipeline_eye") == sorted(web_eyes * 2)  # two eyes per face
