"""SR: colour conversion, metrics, tiling, and one real training run of two steps on tiny data."""

import csv
import json

import numpy as np
import pytest
from PIL import Image

from kiosk.runtime.forensics.colour import luma, rgb_to_ycbcr, ycbcr_to_rgb
from training import splits
from training.sr.data import hr_lr_pair
from training.sr.evaluate import psnr_ssim, tiled


def test_ycbcr_round_trip_and_grey_luma():
    rgb = np.random.default_rng(0).integers(0, 256, (6, 7, 3), dtype=np.uint8)
    assert np.array_equal(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb)
    grey = np.array([[0, 255]], np.uint8)
    np.testing.assert_allclose(luma(grey), [[16, 235]], atol=1e-4)
    np.testing.assert_allclose(luma(np.dstack([grey] * 3)), luma(grey), atol=1e-3)


def test_psnr_ssim_and_bicubic_pairs():
    y = np.random.default_rng(1).uniform(16, 235, (40, 42)).astype(np.float32)
    hr, lr = hr_lr_pair(y)
    assert hr.shape == (40, 40) and lr.shape == (10, 10)
    psnr, ssim = psnr_ssim(hr, hr)
    assert psnr > 100 and ssim == pytest.approx(1.0)
    assert psnr_ssim(hr + 10, hr)[0] == pytest.approx(10 * np.log10(255**2 / 100), abs=0.01)


def test_tiling_matches_a_whole_image_upscaler():
    lr = np.random.default_rng(2).uniform(0, 255, (150, 70)).astype(np.float32)

    def nearest(tile):
        assert tile.shape == (32, 32)
        return np.kron(tile, np.ones((4, 4), np.float32))

    whole = np.kron(lr, np.ones((4, 4), np.float32))
    np.testing.assert_array_equal(tiled(lr, nearest, side=32, margin=4), whole)


def test_discriminator_shape():
    from training.sr.nets import make_discriminator

    discriminator = make_discriminator(32)
    assert len([layer for layer in discriminator.layers if "conv" in layer.name]) == 8
    score = discriminator(np.zeros((2, 32, 32, 1), np.float32)).numpy()
    assert score.shape == (2, 1) and np.all((score >= 0) & (score <= 1))


def test_two_training_steps_on_tiny_data(tmp_path, monkeypatch):
    import training.sr.train as sr_train

    root = tmp_path / "data"
    (root / "uncompressed").mkdir(parents=True)
    (root / "faces68" / "afw").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (72, 80), dtype=np.uint8)).save(
            root / "uncompressed" / f"p{i}.png"
        )
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        root / "faces68" / "afw" / "f.jpg"
    )
    monkeypatch.setattr(sr_train, "WORK", tmp_path / "work")
    # the persisted splits of this tiny data: p2 is a test photo, which SR must never see
    monkeypatch.setattr(splits, "SPLITS_DIR", tmp_path / "splits")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "uncompressed.csv").write_text(
        "path,group,split\np0.png,a,train\np1.png,b,val\np2.png,c,test\n"
    )
    (tmp_path / "splits" / "faces68.csv").write_text("path,group,split\nafw/f.jpg,afw:f,train\n")
    arguments = [
        "mse",
        "--steps",
        "2",
        "--every",
        "1",
        "--batch",
        "2",
        "--lr-patch",
        "8",
        "--val-patch",
        "8",
        "--channels",
        "8",
        "--blocks",
        "2",
        "--pixel-loss",
        "l1",
        "--data-root",
    ]
    sr_train.main([*arguments, str(root)])
    out = tmp_path / "work" / "runs" / "sr_mse"
    with open(out / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2]
    assert all(np.isfinite(float(r["g_loss"])) for r in rows)
    assert (out / "generator.weights.h5").exists()
    info = json.loads((out / "train_info.json").read_text())
    assert info["training_photos"] == 2 and info["validation_photos"] == 1
    # the generator's size and loss are the run's: evaluation rebuilds it from them
    assert sr_train.load_architecture("mse") == {"channels": 8, "blocks": 2, "pixel_loss": "l1"}
    assert info["channels"] == 8 and info["pixel_loss"] == "l1"
    # resuming with another size would load weights into the wrong net: refused, saying why
    wider = [*arguments[:-1], "--steps", "3", "--channels", "16", "--data-root", str(root)]
    with pytest.raises(SystemExit, match="--channels 16 differs from 8"):
        sr_train.main(wider)
    # going on to more steps starts a new cosine schedule there: the state says so
    state = json.loads((out / "state.json").read_text())
    assert state["schedule_steps"] == 2 and state["restarts"] == []
    sr_train.main([*arguments[:2], "3", *arguments[3:], str(root)])
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 3 and state["schedule_steps"] == 3 and state["restarts"] == [2]
    # a fine-tune in its own run directory starts from that generator with its own schedule
    tuned = [*arguments[:11], "--run", "sr_tuned", "--init", "sr_mse", "--lr", "1e-4"]
    sr_train.main([*tuned, "--lr-min", "1e-6", "--data-root", str(root)])
    state = json.loads((tmp_path / "work" / "runs" / "sr_tuned" / "state.json").read_text())
    assert state["init"] == {"run": "sr_mse", "step": 3} and state["step"] == 2
    assert (state["channels"], state["blocks"], state["pixel_loss"]) == (8, 2, "l1")
    info = json.loads((tmp_path / "work" / "runs" / "sr_tuned" / "train_info.json").read_text())
    assert info["lr_min"] == 1e-6 and info["init"]["run"] == "sr_mse"
    assert json.loads((out / "state.json").read_text())["step"] == 3  # the start is untouched
    with pytest.raises(SystemExit, match="--init sr_none"):
        sr_train.main([*arguments[:11], "--run", "sr_x", "--init", "sr_none", "--data-root", "x"])


def test_self_ensemble_averages_the_transformed_outputs_mapped_back():
    from kiosk.runtime.forensics.sr import TRANSFORMS, self_ensemble

    tile = np.random.default_rng(4).random((6, 6)).astype(np.float32)

    def nearest(x):  # commutes with every transform: each output is the plain one
        return np.kron(x, np.ones((4, 4), np.float32))

    for n in (1, 2, 4, 8):
        np.testing.assert_allclose(self_ensemble(nearest, tile, n), nearest(tile), atol=1e-6)

    def skewed(x):  # adds a ramp along the columns: mirrored passes cancel it out
        return nearest(x) + np.arange(24, dtype=np.float32)[None, :]

    np.testing.assert_allclose(self_ensemble(skewed, tile, 1), skewed(tile))
    np.testing.assert_allclose(self_ensemble(skewed, tile, 2), nearest(tile) + 11.5, atol=1e-5)
    assert len(set(TRANSFORMS)) == 8
    with pytest.raises(ValueError, match="1, 2, 4 or 8"):
        self_ensemble(nearest, tile, 3)


def test_benchmark_copies_are_never_training_photos(tmp_path):
    from training.sr.data import BENCHMARK_COPIES, training_files

    for relative in ("uncompressed/waterloo/monarch.png", "uncompressed/kodak/kodim01.png"):
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / relative)
    assert "uncompressed/waterloo/monarch.png" in BENCHMARK_COPIES
    assert [p.name for p in training_files(tmp_path)] == ["kodim01.png"]
    assert len(training_files(tmp_path, with_copies=True)) == 2


def test_perceptual_variant_without_the_veil_checkpoint_says_what_to_run(tmp_path, monkeypatch):
    import training.sr.train as sr_train

    monkeypatch.setattr(sr_train, "VEIL_FEATURES", tmp_path / "runs" / "veil" / "best.keras")
    with pytest.raises(SystemExit, match="make veil-train"):
        sr_train.check_inputs("perceptual")


def test_report_shows_each_variants_steps_batch_and_start(tmp_path, monkeypatch):
    from training.sr import evaluate

    monkeypatch.setattr(evaluate, "OUT", tmp_path)
    cells = {name: {"psnr": 30.0, "ssim": 0.8} for name in evaluate.BENCHMARKS}
    export = {"bytes": 1024, "latency_ms_128_to_512": 50.0, "Set5": cells["Set5"]}
    results = {
        "bicubic": cells,
        "mse": {"steps": 30000, "batch": 16, "restarts": [15000], **cells},
        "perceptual": {"steps": 600, "batch": 16, **cells},
        "srgan_mse": {"steps": 500, "carried_over": True, **cells},
        "export": {"float16": {**export, "validation": cells["Set5"]}},
        "validation_photos": 2,
        "shipped": "float16",
    }
    evaluate.write_report(results)
    report = (tmp_path / "report.md").read_text()
    assert "| 30000 x 16 (cosine restarted at 15000) |" in report
    assert "| perceptual | 32x5 mse | 600 x 16 |" in report
    assert "| srgan_mse † | 32x5 mse | 500 |" in report
    assert "perceptual: fine-tuned from the `mse` generator" in report
