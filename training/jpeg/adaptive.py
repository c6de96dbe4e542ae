"""Adaptive attack (issue 15 item 4): a generator trained against the detector the kiosk RUNS.

The shipped detector is an int8 TFLite file (models/jpeg_history.tflite); its Keras weights are
gone and, more to the point, an attacker who copies the kiosk's file attacks *that* model, with
its folded batch norm and its int8 rounding. So the target here is a float TensorFlow replica
read from the TFLite graph itself: every constant is dequantized (per-channel conv/FC scales,
int32 biases), and every int8 activation is fake-quantized at the file's own scale and zero point,
with straight-through gradients, so the replica's scores follow the int8 model's and the generator
still gets gradients through the rounding. The replica is frozen (a deployed detector does not
adapt), so there is no discriminator step: the generator minimises
L1(G(jpeg), original) + gamma * softplus(replica logit of round(G(jpeg))), the non-saturating
adversarial loss of training/jpeg/gan.py. Output pixels are rounded to uint8 (straight-through)
before the replica sees them, as a saved image would be.

These outputs are an attack on the shipped model: they must never enter a detector's training
data (they live in data/jpeg/adaptive/ only; nothing in training/jpeg/train.py reads them).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from kiosk.contract.manifest import load_manifest
from kiosk.runtime.forensics.jpeg_grid import comb_statistic
from kiosk.runtime.models.fusion import logit
from training.jpeg.data import images_by_split, jpeg_roundtrip, patches_path, read_gray
from training.jpeg.gan import to_pixels, to_unit
from training.jpeg.nets import generator
from training.paths import MODELS, WORK, data_root
from training.tf_setup import limit_threads, seed_everything, tf

log = logging.getLogger(__name__)

TFLITE = MODELS / "jpeg_history.tflite"
SUPPORTED_OPS = frozenset(
    (
        "QUANTIZE",
        "MUL",
        "ADD",
        "CONV_2D",
        "CONCATENATION",
        "MAX_POOL_2D",
        "RESHAPE",
        "FULLY_CONNECTED",
    )
)
SKIPPED_OPS = frozenset(("SHAPE", "STRIDED_SLICE", "PACK"))  # the flatten's shape arithmetic
VALIDATION_PATCHES = 1024  # at most, of patches_64's val split, for the accelerator run's curve


def adaptive_dir() -> Path:
    return WORK / "jpeg" / "adaptive"


def _fake_quant(x: tf.Tensor, scale: float, zero_point: int) -> tf.Tensor:
    """int8 rounding of an activation in the forward pass, identity in the backward pass."""
    q = (tf.clip_by_value(tf.round(x / scale) + zero_point, -128.0, 127.0) - zero_point) * scale
    return x + tf.stop_gradient(q - x)


def round_pixels(pixels: tf.Tensor) -> tf.Tensor:
    """uint8 rounding and clipping of a 0..255 image, straight-through (a saved image is uint8)."""
    q = tf.clip_by_value(tf.round(pixels), 0.0, 255.0)
    return pixels + tf.stop_gradient(q - pixels)


class TfliteReplica:
    """Differentiable float replica of an int8 TFLite detector graph (the kv detector's ops:
    QUANTIZE, MUL, ADD, CONV_2D, CONCATENATION, MAX_POOL_2D, RESHAPE, FULLY_CONNECTED).

    Built by walking the interpreter's op list (no delegate, so every op and constant is
    visible). Convolutions must be stride 1 / SAME (checked on the tensor shapes); pools are
    square with stride = size (read from the shapes). A ReLU is applied where the exporter fused
    one (its name is in the output tensor's name)."""

    def __init__(self, content: bytes) -> None:
        interpreter = Interpreter(
            model_content=content,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            experimental_preserve_all_tensors=True,
        )
        interpreter.allocate_tensors()
        self.tensors = {t["index"]: t for t in interpreter.get_tensor_details()}
        self.input_index = interpreter.get_input_details()[0]["index"]
        self.output_index = interpreter.get_output_details()[0]["index"]
        self.size = int(self.tensors[self.input_index]["shape"][1])
        self.steps: list[tuple[str, list[int], int]] = []
        self.constants: dict[int, tf.Tensor] = {}
        ops = interpreter._get_ops_details()
        produced = {int(i) for op in ops for i in op["outputs"]} | {self.input_index}
        for op in ops:
            name = op["op_name"]
            if name in SKIPPED_OPS:
                continue
            if name not in SUPPORTED_OPS:
                raise ValueError(f"op {name} is not supported by the replica")
            inputs = [int(i) for i in op["inputs"] if i >= 0]
            output = int(op["outputs"][0])
            shapes = [list(self.tensors[i]["shape"][1:3]) for i in (inputs[0], output)]
            if name == "CONV_2D" and shapes[0] != shapes[1]:
                raise ValueError(f"CONV_2D {shapes[0]} -> {shapes[1]} is not stride 1 / SAME")
            for index in inputs:
                if index not in produced:  # weights, biases, constants: stored in the file
                    self.constants[index] = self._dequantized(interpreter, index, name)
            self.steps.append((name, inputs, output))

    def _dequantized(self, interpreter: object, index: int, op_name: str) -> tf.Tensor:
        """A constant as float: per-channel scales on axis 0 (TFLite's output channel axis);
        conv kernels moved to TF's (kh, kw, in, out) and FC weights to (in, out)."""
        detail = self.tensors[index]
        raw = interpreter.get_tensor(index).astype(np.float64)
        params = detail["quantization_parameters"]
        scales, zeros = params["scales"], params["zero_points"]
        if len(scales):
            shape = (-1,) + (1,) * (raw.ndim - 1)
            raw = (raw - zeros.reshape(shape)) * scales.reshape(shape)
        if op_name == "CONV_2D" and raw.ndim == 4:
            raw = raw.transpose(1, 2, 3, 0)
        elif op_name == "FULLY_CONNECTED" and raw.ndim == 2:
            raw = raw.T
        return tf.constant(raw.astype(np.float32))

    def _quant(self, index: int) -> tuple[float, int]:
        scale, zero_point = self.tensors[index]["quantization"]
        return float(scale), int(zero_point)

    def logit(self, pixels: tf.Tensor, quantize_output: bool = False) -> tf.Tensor:
        """(N, S, S, 1) float pixels 0..255 -> (N,) logits; `quantize_output` rounds the logit
        to the output tensor's int8 grid (what the kiosk reads)."""
        values: dict[int, tf.Tensor] = {self.input_index: pixels}
        for name, inputs, output in self.steps:
            args = [self.constants.get(i, values.get(i)) for i in inputs]
            if name == "QUANTIZE":
                y = args[0]
            elif name == "MUL":
                y = args[0] * args[1]
            elif name == "ADD":
                y = args[0] + args[1]
            elif name == "CONCATENATION":
                y = tf.concat(args, axis=-1)
            elif name == "CONV_2D":
                y = tf.nn.conv2d(args[0], args[1], 1, "SAME") + args[2]
            elif name == "MAX_POOL_2D":
                pool = int(args[0].shape[1]) // int(self.tensors[output]["shape"][1])
                y = tf.nn.max_pool2d(args[0], pool, pool, "VALID")
            elif name == "RESHAPE":
                y = tf.reshape(args[0], (-1, int(np.prod(args[0].shape[1:]))))
            else:  # FULLY_CONNECTED
                y = tf.matmul(args[0], args[1]) + args[2]
            if "relu" in self.tensors[output]["name"].lower():
                y = tf.nn.relu(y)
            if output != self.output_index or quantize_output:
                y = _fake_quant(y, *self._quant(output))
            values[output] = y
        return tf.reshape(values[self.output_index], (-1,))


def load_replica(path: Path = TFLITE) -> TfliteReplica:
    return TfliteReplica(path.read_bytes())


class AdaptiveTrainer:
    """Generator vs the frozen replica; resumable from data/jpeg/adaptive/ (weights + Adam)."""

    def __init__(self, replica: TfliteReplica, blocks: int, filters: int, lr: float) -> None:
        self.replica = replica
        self.generator = generator(blocks, filters)
        self.optimizer = tf.keras.optimizers.Adam(lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
        self.optimizer.build(self.generator.trainable_variables)
        self.gamma = tf.Variable(0.0, trainable=False)
        self.checkpoint = tf.train.Checkpoint(generator=self.generator, optimizer=self.optimizer)

    @tf.function
    def step(self, jpeg: tf.Tensor, original: tf.Tensor) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            fake = self.generator(jpeg, training=True)
            l1 = tf.reduce_mean(tf.abs(fake - original))
            logits = self.replica.logit(round_pixels(to_pixels(fake)))
            adv = tf.reduce_mean(tf.nn.softplus(logits))  # -log(1 - P(JPEG))
            loss = l1 + self.gamma * adv
        grads = tape.gradient(loss, self.generator.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.generator.trainable_variables, strict=True))
        return {"loss": loss, "l1": l1, "adv": adv, "mean_logit": tf.reduce_mean(logits)}

    def fit(
        self,
        jpeg: np.ndarray,
        original: np.ndarray,
        out: Path,
        args: argparse.Namespace,
        on_step: Callable[[int, dict], None] | None = None,
    ) -> dict:
        """Train until `args.steps` (or `args.minutes` of wall time this call); checkpoint every
        `args.save_every` steps and at the end, so a killed run resumes where it stopped."""
        state_path = out / "state.json"
        state: dict = {"steps_done": 0, "seconds": 0.0, "log": []}
        if args.resume and state_path.exists():
            state = json.loads(state_path.read_text())
            self.checkpoint.restore(str(out / "ckpt")).expect_partial()
            log.info("resumed at step %d", state["steps_done"])
        state.update({k: getattr(args, k) for k in ("blocks", "filters", "batch", "gamma", "lr")})
        state.update({"warmup_steps": args.warmup_steps, "planned_steps": args.steps})
        state.update({"save_every": args.save_every})
        rng = np.random.default_rng(1000 + state["steps_done"])
        began = time.perf_counter()
        start, sums, count = began, {}, 0
        while state["steps_done"] < args.steps:
            if time.perf_counter() - began > args.minutes * 60:
                log.info("time budget of %.0f min reached", args.minutes)
                break
            self.gamma.assign(0.0 if state["steps_done"] < args.warmup_steps else args.gamma)
            pick = rng.choice(len(jpeg), args.batch, replace=False)
            turns, flip = int(rng.integers(0, 4)), bool(rng.integers(0, 2))
            x, y = to_unit(jpeg[pick]), to_unit(original[pick])
            if flip:  # flips and rot90 keep a 64-px patch's 8x8 grid in place
                x, y = x[:, :, ::-1], y[:, :, ::-1]
            x, y = (np.ascontiguousarray(np.rot90(a, turns, axes=(1, 2))) for a in (x, y))
            losses = {k: float(v) for k, v in self.step(tf.constant(x), tf.constant(y)).items()}
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + value
            count += 1
            state["steps_done"] += 1
            if on_step is not None:
                on_step(state["steps_done"], losses)
            done = state["steps_done"]
            if done % args.save_every == 0 or done == args.steps:
                self._save(out, state, start, sums, count)
                start, sums, count = time.perf_counter(), {}, 0
        if count:
            self._save(out, state, start, sums, count)
        return state

    def _save(self, out: Path, state: dict, start: float, sums: dict, count: int) -> None:
        seconds = time.perf_counter() - start
        state["seconds"] = round(state["seconds"] + seconds, 1)
        record = {
            "step": state["steps_done"],
            "gamma": round(float(self.gamma.numpy()), 6),
            "seconds_per_step": round(seconds / count, 3),
            **{key: round(value / count, 5) for key, value in sums.items()},
        }
        state["log"].append(record)
        log.info(json.dumps(record))
        self.checkpoint.write(str(out / "ckpt"))
        self.generator.save_weights(out / "generator.weights.h5")
        (out / "state.json").write_text(json.dumps(state, indent=2))


def replica_spec(replica: TfliteReplica) -> dict:
    """The replica's op steps as plain data: op, tensor ids, fused ReLU, pool size, and each
    output's int8 (scale, zero point); its constants are keyed by the same tensor ids."""
    steps = []
    for name, inputs, output in replica.steps:
        step = {"op": name, "inputs": inputs, "output": output}
        step["relu"] = "relu" in replica.tensors[output]["name"].lower()
        if name == "MAX_POOL_2D":
            size = int(replica.tensors[inputs[0]]["shape"][1])
            step["pool"] = size // int(replica.tensors[output]["shape"][1])
        steps.append(step)
    return {
        "steps": steps,
        "quant": {str(output): replica._quant(output) for _, _, output in replica.steps},
        "input_index": replica.input_index,
        "output_index": replica.output_index,
    }


def comb_check_crops(images: list, count: int = 24) -> np.ndarray:
    """128-px centre crops of validation pictures, each as is and after one JPEG save: the
    kiosk's DC-comb z of these is what adaptive_gpu.comb_z must reproduce."""
    rng = np.random.default_rng(15)
    out = []
    for source in images[:count]:
        gray = read_gray(source.path)
        y, x = (gray.shape[0] - 128) // 2, (gray.shape[1] - 128) // 2
        crop = gray[y : y + 128, x : x + 128]
        out += [crop, jpeg_roundtrip(crop, int(rng.integers(30, 91)))[0]]
    return np.stack(out)


def export_gpu_bundle(folder: Path, replica: TfliteReplica, threshold: float) -> None:
    """What training/jpeg/adaptive_gpu.py needs on a machine without TensorFlow: the replica as
    constants and steps, this replica's logits on check patches (the PyTorch one must match),
    the kiosk's comb z on check crops (likewise), validation patches, the train-split pictures
    (never the test ones) and the flag logit."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = replica_spec(replica)
    arrays = np.load(patches_path(WORK, 64))
    check = np.concatenate([arrays["val_originals"][:200], arrays["val_jpeg"][:200]])
    logits = replica.logit(tf.constant(check[..., None].astype(np.float32))).numpy()
    by_split = images_by_split(data_root())
    crops = comb_check_crops(by_split["val"])
    combs = [comb_statistic(crop, offsets=False) for crop in crops]
    np.savez_compressed(
        folder / "replica.npz",
        comb_check_crops=crops,
        comb_check_z=np.array([c["z"] for c in combs]),
        comb_check_blocks=np.array([c["blocks"] for c in combs]),
        replica_spec=np.array(json.dumps(spec)),
        check_patches=check,
        check_logits=logits,
        threshold_logit=np.float32(logit(threshold)),
        val_jpeg=arrays["val_jpeg"][:VALIDATION_PATCHES],
        val_original=arrays["val_originals"][:VALIDATION_PATCHES],
        **{f"const_{k}": v.numpy() for k, v in replica.constants.items()},
    )
    train = by_split["train"]
    pictures = {f"img{i}": read_gray(source.path) for i, source in enumerate(train)}
    np.savez_compressed(folder / "train_images.npz", **pictures)
    log.info(
        "bundle for the accelerator: %d replica steps, %d train pictures",
        len(spec["steps"]),
        len(train),
    )


def import_gpu(folder: Path, out: Path) -> None:
    """Load adaptive_gpu.py's weights into the Keras generator, check it reproduces the PyTorch
    outputs, and store it (with its state) where `load_adaptive_generator` reads."""
    state = json.loads((folder / "state.json").read_text())
    weights = np.load(folder / "generator_keras.npz")
    model = generator(state["blocks"], state["filters"])
    for layer in model.layers:
        names = [v.path.split("/")[-1] for v in layer.weights]
        if names:
            layer.set_weights([weights[f"{layer.name}/{n}"] for n in names])
    probe = np.transpose(weights["probe/in"], (0, 2, 3, 1))
    ours = model(probe, training=False).numpy()
    diff = float(np.abs(ours - np.transpose(weights["probe/out"], (0, 2, 3, 1))).max())
    if diff > 1e-3:
        raise SystemExit(f"Keras generator differs from the PyTorch one by {diff:.2e}")
    state["keras_vs_torch_max_abs_diff"] = diff
    out.mkdir(parents=True, exist_ok=True)
    model.save_weights(out / "generator.weights.h5")
    (out / "state.json").write_text(json.dumps(state, indent=2))
    log.info(
        "imported %d steps (max abs diff to PyTorch %.1e) -> %s", state["steps_done"], diff, out
    )


def load_adaptive_generator(out: Path | None = None) -> tf.keras.Model:
    """The trained adaptive generator, sized from its state.json."""
    out = out or adaptive_dir()
    state = json.loads((out / "state.json").read_text())
    model = generator(state["blocks"], state["filters"])
    model.load_weights(out / "generator.weights.h5")
    return model


def main() -> None:
    """`python -m training.jpeg.adaptive [--steps N --minutes M --resume]`: train the generator
    against the frozen replica of models/jpeg_history.tflite (data/jpeg/adaptive/)."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--blocks", type=int, default=16, help="paper: 16")
    parser.add_argument("--filters", type=int, default=64, help="paper: 64")
    parser.add_argument("--batch", type=int, default=16, help="paper: 16")
    parser.add_argument("--steps", type=int, default=250000, help="paper: 50 x 80,000 / 16")
    parser.add_argument("--warmup-steps", type=int, default=0, help="L1-only steps first")
    parser.add_argument("--minutes", type=float, default=1e9, help="wall-time budget of this call")
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--gamma", type=float, default=1e-2)
    parser.add_argument("--save-every", type=int, default=25)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--export-gpu-bundle", type=Path, help="write adaptive_gpu.py's inputs")
    parser.add_argument("--import-gpu", type=Path, help="load adaptive_gpu.py's output folder")
    parser.add_argument("--generator-dir", type=Path, help="default data/jpeg/adaptive")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    limit_threads(args.threads)
    if args.export_gpu_bundle:
        threshold = load_manifest(MODELS).models["jpeg_history"].threshold
        export_gpu_bundle(args.export_gpu_bundle, load_replica(), threshold)
        return
    if args.import_gpu:
        import_gpu(args.import_gpu, args.generator_dir or adaptive_dir())
        return
    seed_everything(15)
    arrays = np.load(patches_path(WORK, 64))
    out = args.generator_dir or adaptive_dir()
    out.mkdir(parents=True, exist_ok=True)
    trainer = AdaptiveTrainer(load_replica(), args.blocks, args.filters, args.lr)
    state = trainer.fit(arrays["train_jpeg"], arrays["train_originals"], out, args)
    log.info("%d steps done -> %s", state["steps_done"], out)


if __name__ == "__main__":
    main()
