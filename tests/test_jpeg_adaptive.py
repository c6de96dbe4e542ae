"""Adaptive attack on the shipped JPEG detector: the float replica follows the int8 file, the
generator's step fools it on a toy batch, and a stopped run resumes where it stopped."""

import argparse
import itertools
import json

import numpy as np
import pytest

from kiosk.runtime.models.tflite_io import BinaryClassifier
from training.jpeg import adaptive, adaptive_frames
from training.jpeg.adaptive import AdaptiveTrainer, TfliteReplica, round_pixels
from training.jpeg.adaptive_report import REPORT, render, replica_agreement
from training.jpeg.data import jpeg_roundtrip
from training.jpeg.gan import to_unit
from training.jpeg.nets import generator
from training.paths import MODELS
from training.tf_setup import tf

pytestmark = pytest.mark.slow

MODEL = MODELS / "jpeg_history.tflite"
THRESHOLD = 0.944197416305542


def textures(count: int, seed: int = 0) -> np.ndarray:
    """Smooth random textures (blurred noise, a gradient) as uint8 64-px patches."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        coarse = rng.uniform(0, 255, (9, 9))
        up = np.kron(coarse, np.ones((8, 8)))[:64, :64]
        noisy = up + rng.normal(0, rng.uniform(2, 20), (64, 64)) + np.linspace(0, 30, 64)
        out.append(np.clip(noisy, 0, 255).astype(np.uint8))
    return np.stack(out)


@pytest.fixture(scope="module")
def replica() -> TfliteReplica:
    return TfliteReplica(MODEL.read_bytes())


@pytest.fixture(scope="module")
def pairs() -> tuple[np.ndarray, np.ndarray]:
    originals = textures(12)
    return np.stack([jpeg_roundtrip(p, 30)[0] for p in originals]), originals


def test_replica_follows_the_int8_file(replica, pairs):
    patches = np.concatenate(pairs)
    agreement = replica_agreement(replica, BinaryClassifier(MODEL.read_bytes()), patches, THRESHOLD)
    assert agreement["n"] == 24
    assert agreement["logit_identical_share"] >= 0.9  # the rest one int8 step off at most
    assert agreement["logit_mean_abs_diff"] < 0.02
    assert agreement["flag_agreement"] >= 0.95
    classifier = BinaryClassifier(MODEL.read_bytes())
    ours = replica.logit(tf.constant(patches[..., None], tf.float32), True).numpy()
    theirs = np.array([classifier.logit(p) for p in patches])
    assert np.abs(ours - theirs).max() <= 0.12  # one step of the output's int8 scale (0.113)
    assert theirs.std() > 0.5  # the patches are not all scored alike (a test that can fail)


def test_replica_passes_gradients_to_the_pixels(replica, pairs):
    pixels = tf.Variable(pairs[0][:4, ..., None].astype(np.float32))
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(replica.logit(round_pixels(pixels)))
    grad = tape.gradient(total, pixels).numpy()
    assert np.isfinite(grad).all() and np.abs(grad).mean() > 1e-4


def test_round_pixels_rounds_forward_and_passes_gradient():
    x = tf.Variable([[-3.2, 0.4, 12.6, 300.0]])
    with tf.GradientTape() as tape:
        y = round_pixels(x)
        total = tf.reduce_sum(y)
    assert y.numpy().tolist() == [[0.0, 0.0, 13.0, 255.0]]
    assert tape.gradient(total, x).numpy().tolist() == [[1.0, 1.0, 1.0, 1.0]]


def test_generator_step_lowers_the_detector_logit(replica, pairs):
    jpeg, originals = pairs
    tf.random.set_seed(0)
    trainer = AdaptiveTrainer(replica, blocks=1, filters=8, lr=2e-3)
    trainer.gamma.assign(1.0)
    x, y = tf.constant(to_unit(jpeg[:6])), tf.constant(to_unit(originals[:6]))
    first = {k: float(v) for k, v in trainer.step(x, y).items()}
    for _ in range(10):
        last = {k: float(v) for k, v in trainer.step(x, y).items()}
    assert first["mean_logit"] > 0  # the detector flags these JPEG patches to begin with
    assert last["loss"] < first["loss"] and last["mean_logit"] < first["mean_logit"] - 1.0


def test_training_checkpoints_and_resumes(replica, pairs, tmp_path):
    jpeg, originals = pairs
    args = argparse.Namespace(
        blocks=1, filters=8, batch=4, gamma=1e-2, lr=1e-3, warmup_steps=1, steps=2,
        minutes=10.0, save_every=1, resume=True,
    )  # fmt: skip
    first = AdaptiveTrainer(replica, 1, 8, 1e-3)
    state = first.fit(jpeg, originals, tmp_path, args)
    assert state["steps_done"] == 2 and [r["gamma"] for r in state["log"]] == [0.0, 0.01]
    args.steps = 3
    second = AdaptiveTrainer(replica, 1, 8, 1e-3)
    state = second.fit(jpeg, originals, tmp_path, args)
    assert state["steps_done"] == 3 and len(state["log"]) == 3
    assert int(second.optimizer.iterations.numpy()) == 3  # Adam's state came back too


def test_wall_time_budget_stops_training(replica, pairs, tmp_path, monkeypatch):
    jpeg, originals = pairs
    clock = itertools.count(0.0, 10.0)  # every reading of the clock is 10 s later
    monkeypatch.setattr(adaptive.time, "perf_counter", lambda: next(clock))
    args = argparse.Namespace(
        blocks=1, filters=8, batch=4, gamma=1e-2, lr=1e-3, warmup_steps=0, steps=5,
        minutes=0.5, save_every=1, resume=False,
    )  # fmt: skip
    state = AdaptiveTrainer(replica, 1, 8, 1e-3).fit(jpeg, originals, tmp_path, args)
    assert state["steps_done"] == 1  # 30 s budget: spent after one step and its checkpoint


def test_replica_spec_lists_every_step_as_plain_data(replica):
    spec = adaptive.replica_spec(replica)
    json.dumps(spec)  # travels to the accelerator as JSON
    ops = [step["op"] for step in spec["steps"]]
    assert ops.count("CONV_2D") == 7 and ops.count("MAX_POOL_2D") == 3  # KV + 3 groups x 2
    assert all(step["pool"] == 4 for step in spec["steps"] if step["op"] == "MAX_POOL_2D")
    assert sum(step["relu"] for step in spec["steps"]) >= 6  # the groups' fused ReLUs
    assert spec["output_index"] == spec["steps"][-1]["output"]
    assert all(str(step["output"]) in spec["quant"] for step in spec["steps"])


def _accelerator_output(folder, model, blocks: int, filters: int) -> None:
    """What training/jpeg/adaptive_gpu.py writes: Keras-named weights, an NCHW probe and its
    output, and the state."""
    arrays = {f"{layer.name}/{v.path.split('/')[-1]}": v.numpy() for layer in model.layers
              for v in layer.weights}  # fmt: skip
    probe = to_unit(textures(2))  # (2, 64, 64, 1)
    out = model(probe, training=False).numpy()
    arrays["probe/in"] = probe.transpose(0, 3, 1, 2)
    arrays["probe/out"] = out.transpose(0, 3, 1, 2)
    np.savez(folder / "generator_keras.npz", **arrays)
    state = {"blocks": blocks, "filters": filters, "steps_done": 7, "log": []}
    (folder / "state.json").write_text(json.dumps(state))


def test_import_of_accelerator_weights_reproduces_its_outputs(tmp_path):
    tf.random.set_seed(1)
    model = generator(2, 8)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # every weight non-trivial, so a misplaced one shows
        layer.set_weights([rng.normal(0, 0.1, w.shape).astype(np.float32) + (w.ndim == 1)
                           * (w.min() > 0) for w in layer.get_weights()])  # fmt: skip
    run, out = tmp_path / "run", tmp_path / "adaptive"
    run.mkdir()
    _accelerator_output(run, model, 2, 8)
    adaptive.import_gpu(run, out)
    state = json.loads((out / "state.json").read_text())
    assert state["steps_done"] == 7 and state["keras_vs_torch_max_abs_diff"] < 1e-5
    loaded = adaptive.load_adaptive_generator(out)
    probe = to_unit(textures(2, seed=3))
    assert np.allclose(loaded(probe, training=False), model(probe, training=False), atol=1e-6)

    weights = dict(np.load(run / "generator_keras.npz"))
    kernel = weights["b0_conv0/kernel"]
    weights["b0_conv0/kernel"] = kernel.transpose(0, 1, 3, 2)  # in/out swapped: same shape
    np.savez(run / "generator_keras.npz", **weights)
    with pytest.raises(SystemExit, match="differs from the PyTorch one"):
        adaptive.import_gpu(run, out)


@pytest.mark.parametrize("name", ["adaptive", "adaptive_comb"])
def test_committed_reports_are_what_their_json_renders(name):
    """The markdown is generated: the committed .md is the render of the committed .json."""
    result = json.loads((REPORT / f"{name}.json").read_text())
    previous = json.loads((REPORT / "results.json").read_text())
    text = render(result, previous["table1"], previous["table2"]["kv:hardened"])
    assert text == (REPORT / f"{name}.md").read_text()


def test_report_names_a_cpu_run_as_such():
    result = json.loads((REPORT / "adaptive.json").read_text())
    result.pop("beside", None)
    result["training"] = {**result["training"], "device": "cpu"}
    previous = json.loads((REPORT / "results.json").read_text())
    text = render(result, previous["table1"], previous["table2"]["kv:hardened"])
    assert "**Scale: a CPU run, not the paper's.**" in text and "accelerator run" not in text
    assert "The comb was not attacked" in text


def test_tiled_laundering_equals_the_whole_picture_pass():
    tf.random.set_seed(2)
    model = generator(2, 8)
    tail = model.get_layer("tail2")
    tail.set_weights([np.random.default_rng(0).normal(0, 0.3, w.shape) for w in tail.get_weights()])
    picture = np.clip(np.random.default_rng(1).normal(128, 40, (300, 520)), 0, 255).astype(np.uint8)
    whole = model(to_unit(picture)[None], training=False).numpy()[0, ..., 0]
    expected = np.clip(np.round((whole + 1.0) * 127.5), 0, 255).astype(np.uint8)
    assert (expected != picture).mean() > 0.5  # the generator does change the picture
    assert np.array_equal(adaptive_frames.launder_tiled(model, picture), expected)


def test_frame_summary_counts_flags_and_leaves_errors_out():
    def record(cnn: bool, comb: bool) -> dict:
        return {
            "jpeg": {"flagged": cnn, "score": 0.9 if cnn else 0.1},
            "jpeg_comb": {"flagged": comb, "z": 50.0 if comb else 2.0},
            "ela": {"flagged": comb},
            "morph": {"applied": False},
            "error": None,
        }

    records = [record(True, False), record(False, True), record(False, False)]
    records.append({"jpeg": None, "jpeg_comb": None, "error": "cannot read"})
    row = adaptive_frames.summarise(records, {"a": 30.0, "b": 32.0})
    assert (row["pictures"], row["errors"]) == (3, 1)
    assert (row["jpeg_flagged"], row["jpeg_comb_flagged"], row["either_flagged"]) == (1, 1, 2)
    assert row["psnr_mean_db"] == 31.0
    assert row["other_checks_flagged"] == {"ela": 1, "splice": 0, "morph": 0}


def test_committed_frames_report_is_what_its_json_renders():
    result = json.loads((REPORT / "adaptive_frames.json").read_text())
    assert adaptive_frames.render(result) == (REPORT / "adaptive_frames.md").read_text()
