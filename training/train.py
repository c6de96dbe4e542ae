"""Train one compliance classifier (eyes, mouth or veil) on the crops from `training.collect`.

Setup -> data (tf.data, seeded shuffles, augmentation) -> model (built under a tf.distribute
strategy) -> fit (checkpoint every epoch, resumable, early stopping on validation loss).

Scaling out: `--strategy mirrored` uses every local GPU (MirroredStrategy); `--strategy
multiworker` trains on several machines (MultiWorkerMirroredStrategy) when each runs this same
command with its own TF_CONFIG (cluster spec + task index). The global batch is the per-replica
batch times the number of replicas. Here it runs on the CPU with the default strategy.

A task with a second stage (the mouth: 15 more epochs at 5e-4) trains its first stage in
`<runs>/<task>/stage1/` and continues from its best checkpoint; `--init` trains one stage from
the given checkpoint instead. A task with several seeds (the veil) trains one run per seed in
`<runs>/<task>/seed<N>/` (a finished run is kept, so a killed command resumes) and averages them
into `<runs>/<task>/best.keras` (training/ensemble.py); `--seed N` trains that one run alone.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from training.ensemble import average_runs
from training.nets import ARCHITECTURES
from training.paths import WORK
from training.tasks import TASKS, Task
from training.tf_setup import seed_everything, tf

keras = tf.keras


def load_split(crops: Path, split: str) -> dict[str, np.ndarray]:
    data = np.load(crops)
    keep = data["splits"] == split
    return {key: data[key][keep] for key in data.files}


def balanced_weights(labels: np.ndarray, sources: np.ndarray) -> np.ndarray:
    """Equal total weight per (source, label) cell, so no source/label shortcut pays off.

    Without it the eye model could learn "pipeline crop => open" because nearly all eye crops cut
    from whole faces are open while half of the close-ups are closed.
    """
    cells = np.array([f"{s}|{y}" for s, y in zip(sources, labels, strict=True)])
    names, inverse, counts = np.unique(cells, return_inverse=True, return_counts=True)
    weights = (len(labels) / (len(names) * counts))[inverse]
    return np.clip(weights, 0.2, 5.0).astype(np.float32)


def _gaussian_blur(images: tf.Tensor, seed: int) -> tf.Tensor:
    """Blur a random ~30 % of the batch with sigma in [0.5, 1.5] (focus, motion, low light)."""
    sigma = tf.random.uniform([], 0.5, 1.5, seed=seed)
    x = tf.range(-3, 4, dtype=tf.float32)
    kernel_1d = tf.exp(-(x**2) / (2 * sigma**2))
    kernel_1d /= tf.reduce_sum(kernel_1d)
    kernel = tf.reshape(kernel_1d[:, None] * kernel_1d[None, :], [7, 7, 1, 1])
    blurred = tf.nn.depthwise_conv2d(images, kernel, [1, 1, 1, 1], "SAME")
    choose = tf.random.uniform([tf.shape(images)[0], 1, 1, 1], seed=seed + 1) < 0.3
    return tf.where(choose, blurred, images)


def make_augmenter(size: int, seed: int) -> keras.Sequential:
    return keras.Sequential(
        [
            keras.layers.RandomFlip("horizontal", seed=seed),
            keras.layers.RandomRotation(0.04, fill_mode="reflect", seed=seed + 1),  # +-15 degrees
            keras.layers.RandomTranslation(0.08, 0.08, fill_mode="reflect", seed=seed + 2),
            keras.layers.RandomZoom((-0.12, 0.12), fill_mode="reflect", seed=seed + 3),
            keras.layers.RandomBrightness(0.25, value_range=(0, 255), seed=seed + 4),
            keras.layers.RandomContrast(0.35, seed=seed + 5),
        ],
        name=f"augment_{size}",
    )


def _degrade(image: tf.Tensor, label: tf.Tensor, weight: tf.Tensor, size: int, lowres: float = 0.3):
    """Per image: sometimes JPEG re-compression, sometimes (`lowres`) a low-resolution round
    trip down to a quarter of the side."""
    image = tf.cond(
        tf.random.uniform([]) < 0.3,
        lambda: tf.image.random_jpeg_quality(image, 30, 95),
        lambda: image,
    )
    small = tf.cast(tf.random.uniform([], 0.25, 0.8) * size, tf.int32)
    image = tf.cond(
        tf.random.uniform([]) < lowres,
        lambda: tf.cast(
            tf.image.resize(tf.image.resize(image, [small, small]), [size, size]), tf.uint8
        ),
        lambda: image,
    )
    return image, label, weight


def make_dataset(
    split: dict[str, np.ndarray],
    task: Task,
    batch: int,
    seed: int,
    training: bool,
    weights: np.ndarray | None = None,
) -> tf.data.Dataset:
    images = split["images"][..., None]
    labels = split["labels"].astype(np.float32)[:, None]
    weights = np.ones(len(labels), np.float32) if weights is None else weights
    dataset = tf.data.Dataset.from_tensor_slices((images, labels, weights))
    if training:
        augmenter = make_augmenter(task.size, seed)
        dataset = (
            dataset.shuffle(len(labels), seed=seed, reshuffle_each_iteration=True)
            .map(
                lambda i, y, w: _degrade(i, y, w, task.size, task.lowres_probability),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
            .batch(batch)
            .map(
                lambda i, y, w: (_augment_batch(augmenter, i, seed), y, w),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
        )
    else:
        dataset = dataset.map(lambda i, y, w: (tf.cast(i, tf.float32), y, w)).batch(batch)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _augment_batch(augmenter: keras.Sequential, images: tf.Tensor, seed: int) -> tf.Tensor:
    images = augmenter(tf.cast(images, tf.float32), training=True)
    images = _gaussian_blur(images, seed)
    noise = tf.random.normal(tf.shape(images)) * tf.random.uniform([], 0, 8)
    return tf.clip_by_value(images + noise, 0, 255)


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


def train(
    task: Task,
    crops_dir: Path,
    run_dir: Path,
    epochs: int | None,
    strategy_name: str,
    seed: int,
    limit: int | None = None,
    init: Path | None = None,
    learning_rate: float | None = None,
) -> Path:
    """Train and return the path of the best checkpoint (lowest validation loss). `init`: start
    from these weights (a .keras checkpoint of the same task), e.g. to continue a run on crops
    cut by another detector instead of starting from scratch; `learning_rate` overrides the
    task's (a continued run starts lower, where its first run ended). With the task's
    `ema_momentum` the weights validated, checkpointed and kept are an exponential moving average
    over the training steps (Keras' `use_ema`, swapped in at every epoch's end)."""
    seed_everything(seed)
    crops = crops_dir / f"{task.name}.npz"
    train_split, val_split = load_split(crops, "train"), load_split(crops, "val")
    if limit:
        train_split = {k: v[:limit] for k, v in train_split.items()}
        val_split = {k: v[:limit] for k, v in val_split.items()}
    if not len(train_split["labels"]) or not len(val_split["labels"]):
        raise SystemExit(f"{crops}: empty train or validation split; run training.collect first")
    strategy = make_strategy(strategy_name)
    batch = task.batch_size * strategy.num_replicas_in_sync
    weights = balanced_weights(train_split["labels"], train_split["sources"])
    train_ds = make_dataset(train_split, task, batch, seed, training=True, weights=weights)
    val_ds = make_dataset(val_split, task, batch, seed, training=False)
    with strategy.scope():
        model = ARCHITECTURES[task.architecture]((task.size, task.size, 1))
        ema = {"use_ema": True, "ema_momentum": task.ema_momentum} if task.ema_momentum else {}
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate or task.learning_rate, **ema),
            loss=keras.losses.BinaryCrossentropy(),
            weighted_metrics=[
                keras.metrics.AUC(name="auc"),
                keras.metrics.BinaryAccuracy(name="acc"),
            ],
        )
        if init is not None:
            model.load_weights(init)
    run_dir.mkdir(parents=True, exist_ok=True)
    best = run_dir / "best.keras"
    # First, so that every later callback (checkpoint, early stopping) sees the averaged weights.
    swap = [keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if task.ema_momentum else []
    callbacks = [
        *swap,
        keras.callbacks.BackupAndRestore(str(run_dir / "backup")),  # resume after a kill
        keras.callbacks.ModelCheckpoint(str(best), monitor="val_loss", save_best_only=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=5, restore_best_weights=True),
        keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-5),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
    ]
    print(
        f"{task.model_name}: {model.count_params():,} parameters, "
        f"train {len(train_split['labels'])} / val {len(val_split['labels'])} crops, "
        f"{strategy.num_replicas_in_sync} replica(s), global batch {batch}",
        flush=True,
    )
    start = time.perf_counter()
    model.fit(
        train_ds,
        validation_data=val_ds,
        epochs=epochs or task.epochs,
        callbacks=callbacks,
        verbose=2,
    )
    (run_dir / "train_info.json").write_text(
        json.dumps(
            {
                "task": task.name,
                "seed": seed,
                # history.csv is appended across resumed runs, so it counts every epoch.
                "epochs_run": len((run_dir / "history.csv").read_text().splitlines()) - 1,
                "seconds": round(time.perf_counter() - start, 1),
                "train_crops": len(train_split["labels"]),
                "val_crops": len(val_split["labels"]),
                "parameters": int(model.count_params()),
                "architecture": task.architecture,
                "strategy": strategy_name,
                "init": None if init is None else str(init),
                "learning_rate": learning_rate or task.learning_rate,
                "lowres_probability": task.lowres_probability,
                "ema_momentum": task.ema_momentum,
            },
            indent=2,
        )
    )
    if not best.exists():
        model.save(best)
    return best


def train_recipe(
    task: Task,
    crops_dir: Path,
    run_dir: Path,
    seed: int,
    epochs: int | None = None,
    strategy_name: str = "default",
    limit: int | None = None,
    init: Path | None = None,
    learning_rate: float | None = None,
) -> Path:
    """One seed of the task's recipe: a run, and with `task.continued` (and no `init` given) a
    second stage in `run_dir` from the best checkpoint of the first, kept in `run_dir`/stage1
    (a finished first stage is not trained again)."""
    if task.continued is None or init is not None:
        return train(
            task, crops_dir, run_dir, epochs, strategy_name, seed, limit, init, learning_rate
        )
    stage1 = run_dir / "stage1"
    first = stage1 / "best.keras"
    if not (stage1 / "train_info.json").exists():
        first = train(
            task, crops_dir, stage1, epochs, strategy_name, seed, limit, None, learning_rate
        )
    more_epochs, rate = task.continued
    return train(task, crops_dir, run_dir, more_epochs, strategy_name, seed, limit, first, rate)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--crops", type=Path, default=WORK / "crops")
    parser.add_argument("--runs", type=Path, default=WORK / "runs")
    parser.add_argument(
        "--epochs", type=int, default=None, help="epochs of the (first) stage (default: the task's)"
    )
    parser.add_argument(
        "--strategy", choices=["default", "mirrored", "multiworker"], default="default"
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="one run with this seed (default: the task's seeds, several averaged into one network)",
    )
    parser.add_argument("--limit", type=int, default=None, help="crops per split (for tests)")
    parser.add_argument("--init", type=Path, default=None, help="start from this .keras checkpoint")
    parser.add_argument(
        "--lr", type=float, default=None, help="initial learning rate (default: the task's)"
    )
    parser.add_argument(
        "--lowres",
        type=float,
        default=None,
        help="share of training crops sent through a low-resolution round trip (default: the "
        "task's)",
    )
    parser.add_argument(
        "--ema",
        type=float,
        default=None,
        help="keep an exponential moving average of the weights with this momentum per step "
        "(0: off; default: the task's)",
    )
    parser.add_argument(
        "--architecture",
        choices=sorted(ARCHITECTURES),
        default=None,
        help="train this network instead of the task's (a trial: the export records it)",
    )
    args = parser.parse_args(argv)
    task = TASKS[args.task]
    if args.architecture is not None:
        spec = dataclasses.replace(task.spec, architecture=args.architecture)
        task = dataclasses.replace(task, spec=spec)
    if args.lowres is not None:
        task = dataclasses.replace(task, lowres_probability=args.lowres)
    if args.ema is not None:
        task = dataclasses.replace(task, ema_momentum=args.ema or None)
    seeds = task.seeds if args.seed is None else (args.seed,)
    run_dir = args.runs / task.name
    members = []
    for seed in seeds:
        member = run_dir if len(seeds) == 1 else run_dir / f"seed{seed}"
        if len(seeds) > 1 and (member / "train_info.json").exists():
            print(f"{member}: trained before (delete it to train again)")
        else:
            train_recipe(
                task,
                args.crops,
                member,
                seed,
                args.epochs,
                args.strategy,
                args.limit,
                args.init,
                args.lr,
            )
        members.append(member)
    best = average_runs(task, members, run_dir) if len(members) > 1 else run_dir / "best.keras"
    print(f"best checkpoint: {best}")


if __name__ == "__main__":
    main()
