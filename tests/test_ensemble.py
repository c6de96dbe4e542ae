"""training.ensemble: several runs become one network whose logit is the mean of theirs."""

import json

import numpy as np
import pytest


def _saved_runs(root, task, architecture, size, seeds):
    """Differently initialised networks on disk as training runs of `task` (untrained: the
    arithmetic, not the accuracy, is under test)."""
    from training.nets import ARCHITECTURES
    from training.tf_setup import tf

    dirs = []
    for seed in seeds:
        tf.keras.utils.set_random_seed(seed)
        run = root / f"seed{seed}"
        run.mkdir()
        ARCHITECTURES[architecture]((size, size, 1)).save(run / "best.keras")
        info = {"task": task, "seed": seed, "epochs_run": 2, "seconds": 1.5, "parameters": 10}
        (run / "train_info.json").write_text(json.dumps(info))
        dirs.append(run)
    return dirs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two mouth-task runs."""
    return _saved_runs(tmp_path_factory.mktemp("runs"), "mouth", "SqueezeMiniVGG", 24, (3, 4))


def _logits(model, images):
    from training.nets import logit_model

    return logit_model(model).predict(images, verbose=0)[:, 0]


def test_the_average_logit_is_the_mean_of_the_runs_logits(runs, tmp_path):
    from training.ensemble import average_runs
    from training.tasks import TASKS
    from training.tf_setup import tf

    images = np.random.default_rng(0).integers(0, 256, (8, 24, 24, 1)).astype(np.float32)
    members = [tf.keras.models.load_model(r / "best.keras") for r in runs]
    best = average_runs(TASKS["mouth"], runs, tmp_path / "mouth")
    averaged = tf.keras.models.load_model(best)
    expected = np.mean([_logits(m, images) for m in members], axis=0)
    assert not np.allclose(_logits(members[0], images), _logits(members[1], images))
    np.testing.assert_allclose(_logits(averaged, images), expected, rtol=1e-5, atol=1e-5)
    scores = averaged.predict(images, verbose=0)[:, 0]
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-expected)), rtol=1e-5, atol=1e-6)
    info = json.loads((tmp_path / "mouth" / "train_info.json").read_text())
    assert info["seed"] == "3, 4" and [m["seed"] for m in info["members"]] == [3, 4]
    assert info["parameters"] == averaged.count_params() and info["seconds"] == 3.0


def test_the_averaged_network_exports_to_one_int8_file_the_kiosk_runs(runs, tmp_path):
    from kiosk.runtime.models.tflite_io import BinaryClassifier
    from training.ensemble import average_runs
    from training.export import export_variants
    from training.tasks import TASKS
    from training.tf_setup import tf

    images = np.random.default_rng(1).integers(0, 256, (40, 24, 24)).astype(np.uint8)
    model = tf.keras.models.load_model(average_runs(TASKS["mouth"], runs, tmp_path / "mouth"))
    keras_scores = model.predict(images[..., None].astype(np.float32), verbose=0)[:, 0]
    paths = export_variants(model, images, tmp_path / "mouth_open")
    for variant, tolerance in (("float32", 1e-4), ("int8", 0.06)):
        classifier = BinaryClassifier(paths[variant].read_bytes())
        lite = np.array([classifier.score(i) for i in images])
        assert np.abs(lite - keras_scores).max() < tolerance, variant


def test_runs_of_another_task_or_a_single_run_are_refused(runs, tmp_path):
    from training.ensemble import average_runs
    from training.tasks import TASKS

    with pytest.raises(SystemExit, match="task veil"):
        average_runs(TASKS["veil"], runs, tmp_path / "veil")
    with pytest.raises(ValueError, match="at least two"):
        average_runs(TASKS["mouth"], runs[:1], tmp_path / "mouth")


def test_super_resolution_takes_its_features_from_the_first_run_of_an_averaged_veil(tmp_path):
    """training/sr uses the veil network's blocks 2-3 as a perceptual loss; an averaged veil
    gives it its first run's trunk, the same features as that run alone."""
    from training.ensemble import average_runs
    from training.sr.nets import make_feature_net
    from training.tasks import TASKS

    runs = _saved_runs(tmp_path, "veil", "SqueezeVGG", 32, (5, 6))
    averaged = average_runs(TASKS["veil"], runs, tmp_path / "veil")
    y = np.random.default_rng(2).random((1, 32, 32, 1)).astype(np.float32)
    got = make_feature_net(str(averaged))(y)
    want = make_feature_net(str(runs[0] / "best.keras"))(y)
    assert len(got) == 2
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
