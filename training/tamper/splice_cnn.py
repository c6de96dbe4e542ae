"""The splice check's tile CNN in Keras: import the accelerator run's weights, export TFLite.

    python -m training.tamper.splice_cnn --export-gpu-bundle splice_bundle   # what travels
    python -m training.tamper.splice_cnn --import-gpu OUT     # -> data/splice/splice_cnn.tflite

`training/tamper/splice_gpu.py` trains the net in PyTorch where no TensorFlow is (the lent
H200) from the bundle written here (the *train* pictures only, grey as the generator reads
them; `make splice-gpu-bundle` adds the PyWavelets wheel the kiosk's imports need there) and
writes its weights in Keras layout with the batch norms folded in. Here the same
network is built from its layer table, the weights are loaded, and the import is refused unless
the Keras model reproduces the run's own logits on its probe patches. The float16 TFLite file
(a fixed batch of the spec's 64 patches: the kiosk pads the last one) is a candidate under
data/splice/; training/tamper/splice_fusion.py scores it through LiteRT as the kiosk does and
decides whether it ships.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from kiosk.contract.models import spec
from kiosk.runtime.forensics.splice import CNN_MODEL_NAME
from training.export import convert
from training.paths import WORK, data_root
from training.tamper.splice import CNN_LAYERS, pictures
from training.tf_setup import tf

keras = tf.keras
layers = keras.layers

CANDIDATE = WORK / "splice" / "splice_cnn.tflite"
RUN = WORK / "splice" / "cnn_run"  # the imported run: weights, probe and state.json
# max |Keras logit - PyTorch logit| on the probe patches. The first run's probe was made with
# cuDNN's default TF32 convolutions (10-bit mantissa): 6.3e-3 from the Keras copy, which matches
# the same run's unfolded weights in float32 on a CPU to 1e-5; a net defined otherwise (padding,
# channel order, a folded norm) is off by tenths. Runs now make their probe in float32 (the
# second: 7.6e-6).
PARITY = 2e-2


def build(batch: int | None = None) -> keras.Model:
    """pixels (batch, 64, 64, 1), 0..255 -> the logit per patch; batch norms folded (inference
    only). `batch` fixes the batch size for the TFLite export."""
    side = spec(CNN_MODEL_NAME).input_shape[1]
    inputs = keras.Input(shape=(side, side, 1), batch_size=batch, name="patches")
    x = layers.Rescaling(1.0 / 64.0, offset=-2.0, name="scale")(inputs)
    srm = layers.Conv2D(3, 5, padding="same", use_bias=False, trainable=False, name="srm")(x)
    x = layers.Concatenate(name="pixels_and_residuals")([x, srm])
    for name, channels, stride in CNN_LAYERS:
        x = layers.Conv2D(
            channels, 3, strides=stride, padding="same", activation="relu", name=name
        )(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    logit = layers.Dense(1, name="logit")(x)
    return keras.Model(inputs, layers.Reshape(())(logit), name="SpliceTileCnn")


def load(model: keras.Model, weights: dict[str, np.ndarray]) -> None:
    model.get_layer("srm").set_weights([weights["srm"]])
    for name, _, _ in CNN_LAYERS:
        model.get_layer(name).set_weights([weights[f"{name}_kernel"], weights[f"{name}_bias"]])
    model.get_layer("logit").set_weights([weights["logit_kernel"], weights["logit_bias"]])


def import_gpu(run: Path) -> keras.Model:
    """The run's weights in the Keras net; ValueError unless it reproduces the run's logits."""
    with np.load(run / "splice_cnn_keras.npz") as data:
        weights = {key: data[key] for key in data.files}
    model = build()
    load(model, weights)
    logits = model.predict(weights["probe_patches"][..., None].astype(np.float32), verbose=0)
    difference = float(np.abs(logits - weights["probe_logits"]).max())
    if difference > PARITY:
        raise ValueError(
            f"the Keras copy differs from the PyTorch run by {difference:.2e} (> {PARITY}) on "
            f"its probe patches: the two definitions of the net disagree"
        )
    print(f"Keras vs PyTorch on {len(logits)} probe patches: max difference {difference:.2e}")
    return model


def export(model: keras.Model, state: dict) -> bytes:
    """Float16 TFLite at the kiosk's fixed batch (weights copied into a fixed-batch net)."""
    fixed = build(batch=spec(CNN_MODEL_NAME).input_shape[0])
    fixed.set_weights(model.get_weights())
    return convert(
        fixed,
        "float16",
        CNN_MODEL_NAME,
        integer_io=False,
        trained_on=state.get("device", "?"),
        steps=state.get("steps"),
        images=state.get("images"),
    )


def export_gpu_bundle(out: Path, root: Path) -> int:
    """The train pictures as grey PNGs (the planes the generator reads: it loads them grey) under
    out/data, with the index that names them; no validation or test picture. Returns the count."""
    count = 0
    for picture in pictures(root):
        if picture.split != "train":
            continue
        target = out / "data" / picture.path.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        gray = cv2.imread(str(picture.path), cv2.IMREAD_GRAYSCALE)
        if not cv2.imwrite(str(target), gray, [cv2.IMWRITE_PNG_COMPRESSION, 9]):
            raise OSError(f"could not write {target}")
        count += 1
    index = out / "data" / "uncompressed" / "index.csv"
    index.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "uncompressed" / "index.csv", index)
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    task = parser.add_mutually_exclusive_group(required=True)
    task.add_argument("--import-gpu", type=Path, help="the run's --out folder")
    task.add_argument("--export-gpu-bundle", type=Path, help="folder to write the bundle to")
    parser.add_argument("--data-root", default=None)
    args = parser.parse_args(argv)
    if args.export_gpu_bundle:
        count = export_gpu_bundle(args.export_gpu_bundle, data_root(args.data_root))
        print(f"{count} train pictures -> {args.export_gpu_bundle / 'data'}")
        return
    model = import_gpu(args.import_gpu)
    state = json.loads((args.import_gpu / "state.json").read_text())
    RUN.mkdir(parents=True, exist_ok=True)
    if args.import_gpu.resolve() != RUN.resolve():
        for name in ("splice_cnn_keras.npz", "state.json"):
            shutil.copy(args.import_gpu / name, RUN / name)
    CANDIDATE.write_bytes(export(model, state))
    print(f"candidate {CANDIDATE} ({CANDIDATE.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
