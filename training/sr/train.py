"""Train one x4 super-resolution variant on Y patches (keras-io shape: data -> model -> train).

Variants (Padmanabhan's four): `mse` (SRCNN-style generator, pixel loss only: MSE, or L1 with
`--pixel-loss l1`; the model the kiosk ships), `perceptual` (same generator, feature loss + pixel
loss), `srgan_mse` and `srgan_perceptual` (the generator against the SRGAN discriminator,
adversarial weight 1e-3, Adam 2e-4 / beta1 0.5). The non-MSE variants start from the `mse` weights, as SRGAN pre-trains its generator with MSE.
Checkpoints every `--every` steps; a rerun resumes from the last one. The generator's size
(`--channels`, `--blocks`) and pixel loss are kept in the run's state.json: a resumed run and
the variants started from `mse` reuse them, and the evaluation rebuilds the generator from them.
`--run NAME` trains in runs/NAME instead of runs/sr_<variant>, and `--init RUN` starts a new run
from another run's generator (a fine-tune with its own schedule; `--lr-min` is where the cosine
ends, default 2 % of `--lr`), recorded in state.json.

    python -m training.sr.train mse --steps 8000
    python -m training.sr.train mse --run sr_mse_decay --init sr_mse --lr 2e-4 --lr-min 1e-6 ...
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from training import splits
from training.paths import WORK, data_root
from training.sr.data import SCALE, PatchSampler, training_files
from training.sr.nets import make_discriminator, make_feature_net, make_generator
from training.tf_setup import limit_threads, seed_everything, tf

VARIANTS = ("mse", "perceptual", "srgan_mse", "srgan_perceptual")
ADVERSARIAL_WEIGHT = 1e-3
VEIL_FEATURES = WORK / "runs" / "veil" / "best.keras"
PIXEL_LOSSES = ("mse", "l1")
# Before state.json recorded them, every run used this generator and loss.
FIRST_ARCHITECTURE = {"channels": 32, "blocks": 5, "pixel_loss": "mse"}
# The shipped sr_x4: L1 beat MSE on validation at equal steps, and 48x6 lost to 32x5 at equal time.
DEFAULT_ARCHITECTURE = {"channels": 32, "blocks": 5, "pixel_loss": "l1"}
# Validation: the same patches whatever --lr-patch is, so runs of different settings compare.
VAL_PATCHES = 128


def run_dir(variant: str, name: str | None = None) -> Path:
    """runs/<name>, or the variant's own runs/sr_<variant>."""
    return WORK / "runs" / (name or f"sr_{variant}")


def load_architecture(variant: str, name: str | None = None) -> dict:
    """Generator size and pixel loss of a trained run (the first runs' values if not recorded)."""
    state = json.loads((run_dir(variant, name) / "state.json").read_text())
    return {key: state.get(key, value) for key, value in FIRST_ARCHITECTURE.items()}


def resolve_architecture(args: argparse.Namespace) -> dict:
    """The run's own state when resuming, else the --init run's, else the mse run's size (its
    generator is the start point; the other variants' pixel term stays MSE, as named), else the
    defaults; options given on the command line must agree with a saved state."""
    own = run_dir(args.variant, args.run)
    if (own / "state.json").exists():
        saved, source = load_architecture(args.variant, args.run), f"{own} (resumed)"
    elif args.init:
        saved = load_architecture(args.variant, args.init)
        source = f"{run_dir(args.variant, args.init)} (--init)"
    elif args.variant != "mse":
        saved = {**load_architecture("mse"), "pixel_loss": args.pixel_loss or "mse"}
        source = f"{run_dir('mse')} (the starting generator)"
    else:
        saved, source = None, ""
    chosen = {}
    for key, default in DEFAULT_ARCHITECTURE.items():
        given = getattr(args, key)
        if saved is None:
            chosen[key] = default if given is None else given
        elif given is not None and given != saved[key]:
            raise SystemExit(
                f"--{key.replace('_', '-')} {given} differs from {saved[key]} in {source}: "
                f"leave the option out, or delete {own} to train anew"
            )
        else:
            chosen[key] = saved[key]
    return chosen


def split_files(files: list[Path], root: Path) -> tuple[list[Path], list[Path]]:
    """(train, validation) photos by the persisted splits; validation only tracks PSNR. Test
    photos are left out: other models are tested on them, and tamper localisation runs this
    network on tampered versions of them."""
    chosen: dict[str, list[Path]] = {"train": [], "val": [], "test": []}
    for path in files:
        dataset, *rest = path.relative_to(root).parts
        chosen[splits.split_of(dataset, "/".join(rest))].append(path)
    if not chosen["train"] or not chosen["val"]:
        raise SystemExit(f"SR needs train and validation photos under {root}, got {chosen}")
    return chosen["train"], chosen["val"]


def content_loss(pixel_loss: str, features: tf.keras.Model | None):
    """Pixel MSE (or L1: EDSR's choice, for PSNR too), plus the relative feature-space MSE of two
    feature layers when a feature net is given."""

    def loss(sr: tf.Tensor, hr: tf.Tensor) -> tf.Tensor:
        error = sr - hr
        pixel = tf.reduce_mean(tf.abs(error) if pixel_loss == "l1" else tf.square(error))
        if features is None:
            return pixel
        terms = [
            tf.reduce_mean(tf.square(fs - fh)) / (tf.reduce_mean(tf.square(fh)) + 1e-6)
            for fs, fh in zip(features(sr), features(hr), strict=True)
        ]
        return pixel + tf.add_n(terms) / len(terms)

    return loss


def psnr_y(sr: np.ndarray, hr: np.ndarray) -> float:
    error = np.mean((np.clip(sr, 0, 1) - hr) ** 2)
    return float(10 * np.log10(1.0 / max(error, 1e-12)))


def check_inputs(variant: str, run: str | None = None, init: str | None = None) -> None:
    """Fail before any work when a checkpoint of another task this variant starts from is missing."""
    if init and not (run_dir(variant, run) / "state.json").exists():
        start = run_dir(variant, init)
        if not (start / "generator.weights.h5").exists() or not (start / "state.json").exists():
            raise SystemExit(f"--init {init}: no generator checkpoint and state.json in {start}")
    if "perceptual" in variant and not VEIL_FEATURES.exists():
        raise SystemExit(
            f"{variant} uses the veil classifier as its perceptual feature net, but "
            f"{VEIL_FEATURES} is missing: run `make veil-train` first"
        )
    mse_weights = run_dir("mse") / "generator.weights.h5"
    if (
        variant != "mse"
        and not init
        and not (run_dir(variant, run) / "state.json").exists()
        and not mse_weights.exists()
    ):
        raise SystemExit(
            f"{variant} starts from the mse generator, but {mse_weights} is missing: "
            "run `python -m training.sr.train mse` first"
        )


def train(args: argparse.Namespace) -> None:
    check_inputs(args.variant, args.run, args.init)
    limit_threads(args.threads)
    seed_everything(args.seed)
    architecture = resolve_architecture(args)
    out = run_dir(args.variant, args.run)
    out.mkdir(parents=True, exist_ok=True)
    root = data_root(args.data_root)
    train_files, val_files = split_files(training_files(root), root)
    gan = args.variant.startswith("srgan")
    lr_patch = args.lr_patch or (16 if gan else 24)
    sampler = PatchSampler.from_files(train_files, lr_patch, args.seed)
    val_sampler = PatchSampler.from_files(val_files, args.val_patch, args.seed + 1)
    val_lr, val_hr = next(val_sampler.batches(VAL_PATCHES))
    print(
        f"{len(sampler.pairs)} training photos, {len(val_sampler.pairs)} validation; "
        f"generator {architecture}",
        flush=True,
    )

    generator = make_generator(architecture["channels"], architecture["blocks"])
    features = make_feature_net(str(VEIL_FEATURES)) if "perceptual" in args.variant else None
    content = content_loss(architecture["pixel_loss"], features)
    discriminator = make_discriminator(lr_patch * SCALE) if gan else None
    g_opt = tf.keras.optimizers.Adam(
        tf.keras.optimizers.schedules.CosineDecay(
            args.lr, args.steps, alpha=0.02 if args.lr_min is None else args.lr_min / args.lr
        ),
        beta_1=0.5 if gan else 0.9,
    )
    d_opt = tf.keras.optimizers.Adam(args.lr, beta_1=0.5)
    bce = tf.keras.losses.BinaryCrossentropy()

    state_path, weights = out / "state.json", out / "generator.weights.h5"
    d_weights = out / "discriminator.weights.h5"
    step, restarts, init = 0, list[int](), None
    if args.init:
        start = run_dir(args.variant, args.init)
        init = {"run": args.init, "step": json.loads((start / "state.json").read_text())["step"]}
    if state_path.exists():
        state = json.loads(state_path.read_text())
        step, restarts = state["step"], state.get("restarts", [])
        init = state.get("init", init)
        # A longer --steps than the run's schedule starts a new cosine schedule from here (a warm
        # restart): recorded, so the report says how the steps were spent.
        if step < args.steps != state.get("schedule_steps", step):
            restarts.append(step)
        generator.load_weights(weights)
        if discriminator is not None and d_weights.exists():
            discriminator.load_weights(d_weights)
        sampler.seed = args.seed + step  # new patches, not the first steps' again
        print(f"resuming at step {step}", flush=True)
    elif init is not None:
        generator.load_weights(run_dir(args.variant, init["run"]) / "generator.weights.h5")
        print(f"generator initialised from {init['run']} (step {init['step']})", flush=True)
    elif args.variant != "mse":
        generator.load_weights(run_dir("mse") / "generator.weights.h5")
        print("generator initialised from the mse variant", flush=True)

    @tf.function
    def train_step(lr: tf.Tensor, hr: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        d_loss = tf.constant(0.0)
        if discriminator is not None:
            with tf.GradientTape() as tape:
                real = discriminator(hr, training=True)
                fake = discriminator(generator(lr, training=False), training=True)
                d_loss = bce(tf.ones_like(real), real) + bce(tf.zeros_like(fake), fake)
            grads = tape.gradient(d_loss, discriminator.trainable_variables)
            d_opt.apply_gradients(zip(grads, discriminator.trainable_variables, strict=True))
        with tf.GradientTape() as tape:
            sr = generator(lr, training=True)
            g_loss = content(sr, hr)
            if discriminator is not None:
                fooled = discriminator(sr, training=False)
                g_loss += ADVERSARIAL_WEIGHT * bce(tf.ones_like(fooled), fooled)
        grads = tape.gradient(g_loss, generator.trainable_variables)
        g_opt.apply_gradients(zip(grads, generator.trainable_variables, strict=True))
        return g_loss, d_loss

    g_opt.iterations.assign(step)
    history = out / "history.csv"
    new_history = not history.exists()
    batches = sampler.batches(args.batch)
    started, losses, val = time.perf_counter(), [], None
    with open(history, "a", newline="") as handle:
        writer = csv.writer(handle)
        if new_history:
            writer.writerow(["step", "g_loss", "d_loss", "val_psnr_y", "seconds"])
        while step < args.steps:
            lr, hr = next(batches)
            g_loss, d_loss = train_step(tf.constant(lr), tf.constant(hr))
            losses.append((float(g_loss), float(d_loss)))
            step += 1
            if step % args.every == 0 or step == args.steps:
                val = psnr_y(generator.predict(val_lr, verbose=0), val_hr)
                mean = np.mean(losses, axis=0)
                elapsed = time.perf_counter() - started
                writer.writerow(
                    [step, f"{mean[0]:.6f}", f"{mean[1]:.4f}", f"{val:.3f}", f"{elapsed:.0f}"]
                )
                handle.flush()
                generator.save_weights(weights)
                if discriminator is not None:
                    discriminator.save_weights(d_weights)
                state_path.write_text(
                    json.dumps(
                        {
                            "step": step,
                            "variant": args.variant,
                            **architecture,
                            "schedule_steps": args.steps,
                            "restarts": restarts,
                            **({"init": init} if init else {}),
                        }
                    )
                )
                print(
                    f"step {step}: loss {mean[0]:.5f} d {mean[1]:.3f} val {val:.2f} dB", flush=True
                )
                losses = []
    info = {
        "variant": args.variant,
        "steps": step,
        "batch": args.batch,
        "lr_patch": lr_patch,
        "lr": args.lr,
        "lr_min": args.lr * 0.02 if args.lr_min is None else args.lr_min,
        **architecture,
        **({"init": init} if init else {}),
        "training_photos": len(sampler.pairs),
        "validation_photos": len(val_sampler.pairs),
        "validation_patches": [VAL_PATCHES, args.val_patch],
        "final_val_psnr_y": val,
        "feature_net": str(VEIL_FEATURES) if features is not None else None,
    }
    (out / "train_info.json").write_text(json.dumps(info, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("variant", choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--lr-min", type=float, help="where the cosine ends (default 2 %% of --lr)")
    parser.add_argument("--run", help="run directory under runs/ (default sr_<variant>)")
    parser.add_argument("--init", help="start a new run from this run's generator (under runs/)")
    parser.add_argument("--lr-patch", type=int, default=None, help="LR patch side (HR = x4)")
    parser.add_argument("--channels", type=int, help="generator width (default: saved or 32)")
    parser.add_argument("--blocks", type=int, help="residual blocks (default: saved or 5)")
    parser.add_argument("--pixel-loss", choices=PIXEL_LOSSES, help="default: saved or l1")
    parser.add_argument(
        "--val-patch", type=int, default=32, help="LR side of the validation patches"
    )
    parser.add_argument("--every", type=int, default=250, help="checkpoint interval (steps)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data-root")
    args = parser.parse_args(argv)
    if args.lr is None:
        args.lr = 1e-3 if args.variant == "mse" else 2e-4
    train(args)


if __name__ == "__main__":
    main()
