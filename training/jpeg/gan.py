"""Anti-forensic GAN (Luo et al.): the generator learns to launder JPEG patches past a detector.

Schedule as in the paper, scaled to a CPU: `--l1-epochs` of pure L1 (alpha=1, beta=gamma=0), then
`--gan-epochs` of alpha*L1 + beta*perceptual + gamma*adversarial (1, 1e-6, 1e-2) with Adam
(beta1 0.9, beta2 0.999, eps 1e-8), lr 5e-4 for G and 5e-6 for D, one D step per G step, both
rates divided by 10 for the last `--decay-fraction` of the adversarial epochs (paper: 20 of 50).
Generator batches of 16 JPEG patches; D batches of 16 generated + their 16 originals.

Offline substitutes, both stated in the report:
- Perceptual features: VGG16 ImageNet weights cannot be downloaded here, so phi is the second
  conv group (after ReLU, layer g1_relu1) of the trained plain KV JPEG detector, frozen.
- D starts from that same trained detector (the paper's D *is* a JPEG detector). Because it
  starts confident, the adversarial term uses the non-saturating form -log D(G(x')) (softplus of
  the detector's JPEG logit) instead of log(1 - D(G(x'))), whose gradient vanishes there.

`--export-data` writes F1, F2 and GAN versions of the training/validation JPEG patches for the
hardened detector (data/jpeg/antiforensic_<size>.npz; synthetic, generated here).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from training.jpeg.data import patches_path
from training.jpeg.dither import dither_f1, dither_f2
from training.jpeg.nets import generator, kv_discriminator
from training.jpeg.train import antiforensic_path, run_dir
from training.paths import WORK
from training.tf_setup import seed_everything, tf

FEATURE_LAYER = "g1_relu1"


def gan_dir(size: int) -> Path:
    return WORK / "jpeg" / "runs" / f"gan_{size}"


def to_unit(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32)[..., None] / 127.5 - 1.0


def to_pixels(unit: tf.Tensor) -> tf.Tensor:
    return (unit + 1.0) * 127.5


def load_generator(size: int) -> tf.keras.Model:
    """The trained generator with the sizes recorded in its state.json."""
    state = json.loads((gan_dir(size) / "state.json").read_text())
    model = generator(state["blocks"], state["filters"])
    model.load_weights(gan_dir(size) / "generator.weights.h5")
    return model


def launder(model: tf.keras.Model, images: np.ndarray, batch: int = 32) -> np.ndarray:
    """uint8 JPEG images (N, H, W) -> generator outputs, rounded to uint8 like a saved image."""
    outputs = [
        model(to_unit(images[i : i + batch]), training=False).numpy()[..., 0]
        for i in range(0, len(images), batch)
    ]
    pixels = (np.concatenate(outputs) + 1.0) * 127.5
    return np.clip(np.round(pixels), 0, 255).astype(np.uint8)


class GanTrainer:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.generator = generator(args.blocks, args.filters)
        detector_weights = run_dir("kv", "plain", args.size) / "best.weights.h5"
        self.discriminator = kv_discriminator(args.size)
        self.discriminator.load_weights(detector_weights)
        frozen = kv_discriminator(args.size)
        frozen.load_weights(detector_weights)
        frozen.trainable = False
        self.features = tf.keras.Model(frozen.input, frozen.get_layer(FEATURE_LAYER).output)
        adam = {"beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8}
        self.g_opt = tf.keras.optimizers.Adam(args.g_lr, **adam)
        self.d_opt = tf.keras.optimizers.Adam(args.d_lr, **adam)
        # Slots created up front: tf.function may not create variables on a later trace.
        self.g_opt.build(self.generator.trainable_variables)
        self.d_opt.build(self.discriminator.trainable_variables)
        self.weights = tf.Variable([1.0, 0.0, 0.0], trainable=False)  # alpha, beta, gamma

    @tf.function
    def step(self, jpeg: tf.Tensor, original: tf.Tensor, adversarial: bool) -> dict:
        """One D step (adversarial phase only), then one G step; `adversarial` is a Python bool."""
        if adversarial:
            with tf.GradientTape() as tape:
                fake = self.generator(jpeg, training=True)
                # The detector's score is P(JPEG): generated -> 1, uncompressed -> 0 (paper eq. 7).
                p_fake = self.discriminator(to_pixels(fake), training=True)
                p_real = self.discriminator(to_pixels(original), training=True)
                d_loss = tf.reduce_mean(
                    tf.keras.losses.binary_crossentropy(tf.ones_like(p_fake), p_fake)
                    + tf.keras.losses.binary_crossentropy(tf.zeros_like(p_real), p_real)
                )
            grads = tape.gradient(d_loss, self.discriminator.trainable_variables)
            self.d_opt.apply_gradients(
                zip(grads, self.discriminator.trainable_variables, strict=True)
            )
        else:
            d_loss = tf.constant(0.0)
        with tf.GradientTape() as tape:
            fake = self.generator(jpeg, training=True)
            l1 = tf.reduce_mean(tf.abs(fake - original))
            perceptual = tf.reduce_mean(
                tf.square(self.features(to_pixels(fake)) - self.features(to_pixels(original)))
            )
            p_jpeg = self.discriminator(to_pixels(fake), training=False)
            logit = tf.math.log(p_jpeg + 1e-7) - tf.math.log(1.0 - p_jpeg + 1e-7)
            adv = tf.reduce_mean(tf.nn.softplus(logit))  # -log D_paper(G(x'))
            g_loss = self.weights[0] * l1 + self.weights[1] * perceptual + self.weights[2] * adv
        grads = tape.gradient(g_loss, self.generator.trainable_variables)
        self.g_opt.apply_gradients(zip(grads, self.generator.trainable_variables, strict=True))
        return {"g": g_loss, "l1": l1, "perceptual": perceptual, "adv": adv, "d": d_loss}

    def fit(self, jpeg: np.ndarray, original: np.ndarray, out: Path) -> dict:
        args = self.args
        state_path = out / "state.json"
        state = {"blocks": args.blocks, "filters": args.filters, "epochs_done": 0, "log": []}
        if args.resume and state_path.exists():
            state = json.loads(state_path.read_text())
            self.generator.load_weights(out / "generator.weights.h5")
            self.discriminator.load_weights(out / "discriminator.weights.h5")
        total = args.l1_epochs + args.gan_epochs
        decay_from = args.l1_epochs + round(args.gan_epochs * (1 - args.decay_fraction))
        rng = np.random.default_rng(state["epochs_done"])
        for epoch in range(state["epochs_done"], total):
            adversarial = epoch >= args.l1_epochs
            self.weights.assign([1.0, args.beta, args.gamma] if adversarial else [1.0, 0.0, 0.0])
            scale = 0.1 if epoch >= decay_from else 1.0
            self.g_opt.learning_rate = args.g_lr * scale
            self.d_opt.learning_rate = args.d_lr * scale
            order = rng.permutation(len(jpeg))[: args.patches_per_epoch]
            start, sums, steps = time.perf_counter(), {}, 0
            for i in range(0, len(order) - args.batch + 1, args.batch):
                pick = order[i : i + args.batch]
                flip = rng.integers(0, 4)
                x = np.rot90(to_unit(jpeg[pick]), flip, axes=(1, 2))
                y = np.rot90(to_unit(original[pick]), flip, axes=(1, 2))
                losses = self.step(
                    tf.constant(np.ascontiguousarray(x)),
                    tf.constant(np.ascontiguousarray(y)),
                    adversarial,
                )
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + float(value)
                steps += 1
            record = {
                "epoch": epoch + 1,
                "phase": "adversarial" if adversarial else "l1",
                "lr_scale": scale,
                "steps": steps,
                "seconds": round(time.perf_counter() - start, 1),
                **{key: round(value / steps, 6) for key, value in sums.items()},
            }
            print(json.dumps(record), flush=True)
            self.generator.save_weights(out / "generator.weights.h5")
            self.discriminator.save_weights(out / "discriminator.weights.h5")
            state["epochs_done"] = epoch + 1
            state["log"].append(record)
            state.update(
                {
                    key: getattr(args, key)
                    for key in ("l1_epochs", "gan_epochs", "patches_per_epoch", "batch")
                }
            )
            state_path.write_text(json.dumps(state, indent=2))
        return state


def export_data(size: int) -> Path:
    """F1, F2 and GAN versions of the train/val JPEG patches for the hardened detector."""
    arrays = np.load(patches_path(WORK, size))
    model = load_generator(size)
    out: dict[str, np.ndarray] = {}
    for split in ("train", "val"):
        jpeg, tables = arrays[f"{split}_jpeg"], arrays[f"{split}_tables"]
        out[f"{split}_f1"] = np.stack(
            [dither_f1(p, t, i) for i, (p, t) in enumerate(zip(jpeg, tables, strict=True))]
        )
        out[f"{split}_f2"] = np.stack(
            [dither_f2(p, t, i) for i, (p, t) in enumerate(zip(jpeg, tables, strict=True))]
        )
        out[f"{split}_gan"] = launder(model, jpeg)
    path = antiforensic_path(size)
    np.savez_compressed(path, **out)
    return path


def main() -> None:
    """`python -m training.jpeg.gan [--resume] [--export-data]`."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--size", type=int, default=64, help="training patch side")
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--filters", type=int, default=64)
    parser.add_argument("--l1-epochs", type=int, default=2)
    parser.add_argument("--gan-epochs", type=int, default=50)
    parser.add_argument("--decay-fraction", type=float, default=0.4)
    parser.add_argument("--patches-per-epoch", type=int, default=80000)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--g-lr", type=float, default=5e-4)
    parser.add_argument("--d-lr", type=float, default=5e-6)
    parser.add_argument("--beta", type=float, default=1e-6)
    parser.add_argument("--gamma", type=float, default=1e-2)
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow CPU threads")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--export-data", action="store_true", help="only write F1/F2/GAN patches")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    if args.export_data:
        print(f"wrote {export_data(args.size)}")
        return
    seed_everything(9)
    arrays = np.load(patches_path(WORK, args.size))
    out = gan_dir(args.size)
    out.mkdir(parents=True, exist_ok=True)
    GanTrainer(args).fit(arrays["train_jpeg"], arrays["train_originals"], out)
    print(f"trained -> {out}")


if __name__ == "__main__":
    main()
