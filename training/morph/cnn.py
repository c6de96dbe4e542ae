"""A small CNN for the morph check, beside the texture-feature trees (training/morph/train.py).

    python -m training.morph.cnn [--minutes 35] [--epochs 30]   # after training.morph.data

Why a CNN: blending ghosts, doubled contours and over-smoothed skin are spatial patterns that
hand-made cell statistics only summarise. The net sees the kiosk's 128 px face crop at full
resolution (as 2x2 pixel blocks) plus a fixed high-pass residual of it (a Laplacian per colour channel, amplified so
int8 quantisation keeps it), VGG blocks and SqueezeNet's head (1x1 conv, global average pool,
logit), as training/nets.py builds the compliance CNNs.

Augmentation creates no morph cue and removes none: horizontal flips, integer shifts of up to
4 px (reflected border, no resampling) and mild brightness/contrast changes; the data already
holds resampling, blur and JPEG saves for both classes. Early stopping and the kept epoch follow
validation AUC; a wall-clock budget ends training on a shared CPU. The int8 export (uint8 pixels
in, int8 logit out) goes to models/morph_cnn.tflite; train.py scores that file through LiteRT,
as the kiosk runs it, compares it with the trees and their fusion on validation, and lists it
in the manifest if it wins.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from kiosk.runtime.forensics.morph import CNN_MODEL_NAME, CROP, CnnScorer
from training.export import convert
from training.morph.data import OUT
from training.nets import logit_model, vgg_with_squeeze_head
from training.paths import MODELS, REPORTS, WORK
from training.tf_setup import limit_threads, seed_everything, tf

log = logging.getLogger(__name__)
keras = tf.keras
layers = keras.layers

RUN_DIR = WORK / "morph" / "cnn_run"
# (filters per conv layer) per block, each closed by a 2x2 max-pool: 64 -> 4 px after the
# space-to-depth step (2x2 pixel blocks as channels: every pixel kept, a quarter of the positions;
# 2 shared CPU cores train it in minutes per epoch)
BLOCKS = ((32,), (48,), (64, 64), (96,))
HIGH_PASS_GAIN = 4.0  # residuals are a few % of the pixel range: scaled to share int8 steps
SHIFT = 4  # px


def build(size: int = CROP) -> keras.Model:
    """RGB uint8-valued crop -> P(morph); the layer named "logit" is what is exported."""
    inputs = keras.Input(shape=(size, size, 3), name="pixels")
    x = layers.Rescaling(1.0 / 255.0, name="normalize")(inputs)
    laplacian = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32) * HIGH_PASS_GAIN
    high_pass = layers.DepthwiseConv2D(
        3, padding="same", use_bias=False, trainable=False, name="high_pass"
    )
    residual = high_pass(x)
    high_pass.set_weights([np.repeat(laplacian[:, :, None, None], 3, axis=2)])
    x = layers.Concatenate(name="with_residual")([x, residual])
    x = layers.Lambda(lambda t: tf.nn.space_to_depth(t, 2), name="space_to_depth")(x)
    return vgg_with_squeeze_head(x, BLOCKS, 0.3, "MorphCNN", inputs)


def _augment(image: tf.Tensor, label: tf.Tensor, weight: tf.Tensor):
    """Flip, integer shift, brightness/contrast: nothing that blurs, sharpens or resamples."""
    image = tf.image.random_flip_left_right(tf.cast(image, tf.float32))
    padded = tf.pad(image, [[SHIFT, SHIFT], [SHIFT, SHIFT], [0, 0]], mode="REFLECT")
    image = tf.image.random_crop(padded, tf.shape(image))
    contrast = tf.random.uniform([], 0.85, 1.15)
    mean = tf.reduce_mean(image)
    image = (image - mean) * contrast + mean + tf.random.uniform([], -12.0, 12.0)
    return tf.clip_by_value(image, 0.0, 255.0), label, weight


def datasets(data: dict, batch: int, seed: int) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    train, val = data["split"] == "train", data["split"] == "val"
    y = data["y"].astype(np.float32)
    # equal total weight per class (morphs are 3 of every 5 images)
    weights = np.where(y[train] == 1, 0.5 / y[train].mean(), 0.5 / (1 - y[train].mean()))
    train_ds = (
        tf.data.Dataset.from_tensor_slices(
            (data["crop"][train], y[train, None], weights.astype(np.float32))
        )
        .shuffle(int(train.sum()), seed=seed, reshuffle_each_iteration=True)
        .map(_augment, num_parallel_calls=2)
        .batch(batch)
        .prefetch(2)
    )
    val_ds = (
        tf.data.Dataset.from_tensor_slices((data["crop"][val], y[val, None]))
        .map(lambda i, t: (tf.cast(i, tf.float32), t))
        .batch(128)
    )
    return train_ds, val_ds


class TimeBudget(keras.callbacks.Callback):
    """Stop after the epoch that crosses `minutes` of training (the CPU is shared)."""

    def __init__(self, minutes: float) -> None:
        super().__init__()
        self.deadline = time.time() + minutes * 60

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if time.time() > self.deadline:
            log.info("time budget spent after epoch %d", epoch + 1)
            self.model.stop_training = True


def train(data: dict, run_dir: Path, epochs: int, minutes: float, batch: int, seed: int):
    seed_everything(seed)
    model = build()
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="binary_crossentropy",
        metrics=[keras.metrics.AUC(name="auc", num_thresholds=1000)],
    )
    train_ds, val_ds = datasets(data, batch, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    best = run_dir / "best.weights.h5"
    callbacks = [
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),  # resume after a kill
        keras.callbacks.ModelCheckpoint(
            str(best), monitor="val_auc", mode="max", save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max", patience=5, restore_best_weights=True
        ),
        keras.callbacks.ReduceLROnPlateau(
            monitor="val_auc", mode="max", factor=0.5, patience=2, min_lr=5e-5
        ),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        TimeBudget(minutes),
    ]
    model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks, verbose=2)
    if best.exists():
        model.load_weights(best)
    return model


def export(model: keras.Model, data: dict, path: Path) -> None:
    """int8 TFLite at the logit, calibrated on 300 training crops of both classes."""
    rng = np.random.default_rng(0)
    train = np.flatnonzero(data["split"] == "train")
    pick = rng.choice(train, min(300, len(train)), replace=False)

    def representative():
        for crop in data["crop"][pick]:
            yield [crop.astype(np.float32)[None]]

    content = convert(
        logit_model(model),
        "int8",
        CNN_MODEL_NAME,
        representative,
        preprocessing="RGB face crop 128x128 from kiosk.runtime.forensics.morph.face_crop",
    )
    path.write_bytes(content)


def logits(path: Path, crops: np.ndarray) -> np.ndarray:
    """The exported file's logit of every crop through LiteRT, by the kiosk's own scorer."""
    scorer = CnnScorer(path.read_bytes())
    return np.array([scorer.logit(crop) for crop in crops], np.float64)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crops", type=Path, default=OUT)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--minutes", type=float, default=35.0, help="training wall-clock budget")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--limit", type=int, default=None, help="crops (for a quick try)")
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR)
    parser.add_argument("--out", type=Path, default=MODELS / f"{CNN_MODEL_NAME}.tflite")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    limit_threads(args.threads)
    with np.load(args.crops) as stored:
        data = {key: stored[key] for key in ("crop", "y", "split")}
    if args.limit:
        pick = np.sort(np.random.default_rng(args.seed).choice(len(data["y"]), args.limit, False))
        data = {key: value[pick] for key, value in data.items()}
    started = time.time()
    model = train(data, args.run_dir, args.epochs, args.minutes, args.batch, args.seed)
    log.info("trained in %.0f s", time.time() - started)
    export(model, data, args.out)
    val = data["split"] == "val"
    auc = roc_auc_score(data["y"][val], logits(args.out, data["crop"][val]))
    log.info("int8 %s: validation AUC %.4f", args.out.name, auc)
    (REPORTS / "morph").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.run_dir / "history.csv", REPORTS / "morph" / "cnn_history.csv")


if __name__ == "__main__":
    main()
