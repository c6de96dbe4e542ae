"""Train a JPEG detector on patches: uncompressed (0) vs JPEG (1), optionally hardened.

`--variant plain` sees only JPEG positives (the detector of the paper's Table II).
`--variant hardened` also gets F1, F2 and GAN outputs (data/jpeg/antiforensic_<size>.npz, made by
`training.jpeg.gan --export-data`) among the positives (see `labelled`), optionally starting from
the plain detector's weights (`--init-from-plain`). Flips and 90-degree rotations keep the 8x8 grid of a 64-px patch in place, so
they are safe augmentations. The best epoch by validation loss is kept (weights only).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from training.jpeg.data import patches_path
from training.jpeg.nets import DETECTORS
from training.paths import WORK
from training.tf_setup import seed_everything, tf

ANTIFORENSIC_KINDS = ("f1", "f2", "gan")


def run_dir(arch: str, variant: str, size: int) -> Path:
    return WORK / "jpeg" / "runs" / f"{arch}_{variant}_{size}"


def antiforensic_path(size: int) -> Path:
    return WORK / "jpeg" / f"antiforensic_{size}.npz"


def labelled(arrays: dict[str, np.ndarray], split: str, hardened: bool, seed: int = 0):
    """(images (N, S, S) uint8, labels (N,)) for one split.

    Hardened training split: each uncompressed patch is paired with ONE positive drawn at random
    among its JPEG, F1, F2 and GAN versions, so an epoch costs what a plain one does. Hardened
    validation split: all four versions, with the negatives repeated to balance them.
    """
    negatives = arrays[f"{split}_originals"]
    positives = [arrays[f"{split}_jpeg"]]
    if not hardened:
        return _balanced(negatives, positives)
    extra = np.load(antiforensic_path(negatives.shape[1]))
    positives += [extra[f"{split}_{kind}"] for kind in ANTIFORENSIC_KINDS]
    if split != "train":
        return _balanced(negatives, positives)
    kinds = np.random.default_rng(seed).integers(0, len(positives), len(negatives))
    mixed = np.stack(positives)[kinds, np.arange(len(negatives))]
    return _balanced(negatives, [mixed])


def _balanced(negatives: np.ndarray, positives: list[np.ndarray]):
    repeats = len(positives)
    images = np.concatenate([*([negatives] * repeats), *positives])
    labels = np.concatenate([np.zeros(len(negatives) * repeats), np.ones(len(negatives) * repeats)])
    return images, labels.astype(np.float32)


def augment(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    images = tf.image.random_flip_left_right(images)
    images = tf.image.random_flip_up_down(images)
    images = tf.image.rot90(images, tf.random.uniform((), 0, 4, tf.int32))
    return images, labels


def dataset(images: np.ndarray, labels: np.ndarray, batch: int, train: bool) -> tf.data.Dataset:
    data = tf.data.Dataset.from_tensor_slices((images[..., None].astype(np.float32), labels))
    if train:
        data = data.shuffle(len(labels), reshuffle_each_iteration=True).map(augment)
    return data.batch(batch).prefetch(2)


def train(
    arch: str,
    variant: str,
    size: int,
    epochs: int,
    batch: int,
    lr: float,
    init_from_plain: bool = False,
    seed: int = 5,
) -> Path:
    seed_everything(seed)
    arrays = dict(np.load(patches_path(WORK, size)))
    hardened = variant == "hardened"
    train_x, train_y = labelled(arrays, "train", hardened)
    val_x, val_y = labelled(arrays, "val", hardened)
    model = DETECTORS[arch](size)
    if init_from_plain:
        model.load_weights(run_dir(arch, "plain", size) / "best.weights.h5")
    model.compile(
        optimizer=tf.keras.optimizers.Adam(lr),
        loss="binary_crossentropy",
        metrics=["accuracy", tf.keras.metrics.AUC(name="auc")],
    )
    out = run_dir(arch, variant, size)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    history = model.fit(
        dataset(train_x, train_y, batch, train=True),
        validation_data=dataset(val_x, val_y, 256, train=False),
        epochs=epochs,
        verbose=2,
        callbacks=[
            tf.keras.callbacks.ModelCheckpoint(
                out / "best.weights.h5", save_best_only=True, save_weights_only=True
            ),
            tf.keras.callbacks.ReduceLROnPlateau(factor=0.3, patience=2),
            tf.keras.callbacks.CSVLogger(out / "history.csv"),
        ],
    )
    info = {
        "arch": arch,
        "variant": variant,
        "size": size,
        "epochs": epochs,
        "batch": batch,
        "lr": lr,
        "init_from_plain": init_from_plain,
        "train_patches": len(train_y),
        "val_patches": len(val_y),
        "params": model.count_params(),
        "seconds": round(time.perf_counter() - start, 1),
        "history": {k: [round(float(v), 5) for v in vs] for k, vs in history.history.items()},
    }
    (out / "train.json").write_text(json.dumps(info, indent=2))
    return out


def main() -> None:
    """`python -m training.jpeg.train ARCH [--variant plain|hardened]`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("arch", choices=sorted(DETECTORS))
    parser.add_argument("--variant", choices=("plain", "hardened"), default="plain")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument(
        "--init-from-plain", action="store_true", help="start from the plain detector's weights"
    )
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow CPU threads")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    out = train(
        args.arch,
        args.variant,
        args.size,
        args.epochs,
        args.batch,
        args.lr,
        args.init_from_plain,
    )
    print(f"trained -> {out}")


if __name__ == "__main__":
    main()
