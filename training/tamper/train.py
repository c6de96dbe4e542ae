"""Train the ELA tamper CNN (Nimma et al.): ELA + wavelet residual (128x128x2) -> P(manipulated).

Network (`make_ela_net`): a light VGG-style trunk (a strided first conv, then 3x3 conv/BN/ReLU
blocks 32-64-64 with max-pooling) whose head pools the last feature map both on average and on
maximum before one dense logit: tampering is local, and a plain average (SqueezeNet's head)
dilutes a small pasted region. Data: the synthetic set of `training.tamper.generate`; seeded
group splits; flips as augmentation (ELA is orientation-free); checkpoint every epoch, best on
validation loss.

    python -m training.tamper.train --epochs 12
"""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np

from kiosk.contract.models import SPECS
from training.nets import BN_MOMENTUM
from training.paths import WORK
from training.tamper.features import load_features
from training.tf_setup import limit_threads, seed_everything, tf

RUN = WORK / "runs" / "tamper_ela"
DATA = WORK / "tamper"
INPUT_SHAPE = (128, 128, 2)


def make_ela_net(input_shape: tuple[int, int, int] = INPUT_SHAPE) -> tf.keras.Model:
    """uint8 ELA/residual maps in, P(manipulated) out; the layer "logit" is what is exported."""
    layers = tf.keras.layers
    inputs = tf.keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1.0 / 255.0, name="normalize")(inputs)
    x = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu", name="stem")(x)
    for index, filters in enumerate((32, 64, 64), start=1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{index}_conv")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{index}_bn")(x)
        x = layers.ReLU(name=f"block{index}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"block{index}_pool")(x)
    pooled = layers.Concatenate(name="pool")(
        [layers.GlobalAveragePooling2D()(x), layers.GlobalMaxPooling2D()(x)]
    )
    logit = layers.Dense(1, name="logit")(layers.Dropout(0.3, name="head_dropout")(pooled))
    outputs = layers.Activation("sigmoid", name="score")(logit)
    return tf.keras.Model(inputs, outputs, name="ElaNet")


def dataset(
    inputs: np.ndarray, labels: np.ndarray, batch: int, seed: int | None
) -> tf.data.Dataset:
    data = tf.data.Dataset.from_tensor_slices((inputs, labels.astype(np.float32)))
    if seed is not None:
        data = data.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
        data = data.map(
            lambda x, y: (tf.image.random_flip_up_down(tf.image.random_flip_left_right(x)), y)
        )
    return data.batch(batch).prefetch(2)


def train(epochs: int, batch: int, seed: int, quality: int) -> None:
    limit_threads(1)
    seed_everything(seed)
    data = load_features(DATA, quality)
    splits = {name: data["splits"] == name for name in ("train", "val")}
    RUN.mkdir(parents=True, exist_ok=True)
    model = make_ela_net()
    model.compile(
        tf.keras.optimizers.Adam(1e-3),
        loss="binary_crossentropy",
        metrics=[tf.keras.metrics.AUC(name="auc"), "accuracy"],
    )
    checkpoint = RUN / "last.keras"
    initial_epoch, best_val_loss = 0, None
    if checkpoint.exists():
        model = tf.keras.models.load_model(checkpoint)
        with open(RUN / "history.csv") as handle:
            history = list(csv.DictReader(handle))
        initial_epoch = len(history)
        # a resumed run must not replace best.keras with a worse epoch
        best_val_loss = min(float(row["val_loss"]) for row in history)
        print(f"resuming after epoch {initial_epoch}", flush=True)
    train_mask, val_mask = splits["train"], splits["val"]
    print(f"train {train_mask.sum()}, val {val_mask.sum()}", flush=True)
    model.fit(
        dataset(data["inputs"][train_mask], data["labels"][train_mask], batch, seed),
        validation_data=dataset(data["inputs"][val_mask], data["labels"][val_mask], batch, None),
        epochs=epochs,
        initial_epoch=initial_epoch,
        callbacks=[
            tf.keras.callbacks.ModelCheckpoint(
                RUN / "best.keras", save_best_only=True, initial_value_threshold=best_val_loss
            ),
            tf.keras.callbacks.ModelCheckpoint(checkpoint),
            tf.keras.callbacks.CSVLogger(RUN / "history.csv", append=True),
        ],
        verbose=2,
    )
    info = {"epochs": epochs, "batch": batch, "seed": seed, "ela_quality": quality}
    (RUN / "train_info.json").write_text(json.dumps(info, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--ela-quality", type=int, default=int(SPECS["tamper_ela"].parameter("ela_quality"))
    )
    args = parser.parse_args(argv)
    train(args.epochs, args.batch, args.seed, args.ela_quality)


if __name__ == "__main__":
    main()
