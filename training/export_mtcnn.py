"""Convert the `mtcnn` package's P/R/O-Nets (its own Keras weights) to float32 TFLite files.

The kiosk runs the MTCNN cascade on LiteRT; the `mtcnn` package stays the reference that the
parity test and the pipeline benchmark compare against. Float32 is kept on purpose: the three nets
are small (about 2 MB together) and float keeps boxes identical to the reference.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from kiosk.contract.manifest import write_entry
from training.export import convert
from training.paths import MODELS
from training.tf_setup import tf

logger = logging.getLogger(__name__)

NETS = {
    # name: (network class path, weights file, fixed input size or None for any)
    "mtcnn_pnet": ("mtcnn.network.pnet.PNet", "pnet.lz4", None),
    "mtcnn_rnet": ("mtcnn.network.rnet.RNet", "rnet.lz4", 24),
    "mtcnn_onet": ("mtcnn.network.onet.ONet", "onet.lz4", 48),
}


def _build(class_path: str, weights: str, size: int | None) -> tf.keras.Model:
    import importlib

    from mtcnn.utils.tensorflow import load_weights

    module_name, class_name = class_path.rsplit(".", 1)
    net = getattr(importlib.import_module(module_name), class_name)()
    net.build()
    net.set_weights(load_weights(weights))
    inputs = tf.keras.Input(shape=(size, size, 3), batch_size=1 if size is None else None)
    return tf.keras.Model(inputs, net(inputs))


def export(models_dir: Path) -> list[Path]:
    """Write mtcnn_{p,r,o}net.tflite into `models_dir` and register them in the manifest."""
    from importlib.metadata import version

    written = []
    for name, (class_path, weights, size) in NETS.items():
        tflite = convert(_build(class_path, weights, size), "float32", name, weights=weights)
        path = models_dir / f"{name}.tflite"
        path.write_bytes(tflite)
        write_entry(
            models_dir,
            name,
            path,
            architecture=f"MTCNN {name[-4:].upper()} (Zhang et al. 2016)",
            input_shape=[1, size or -1, size or -1, 3],
            quantization="float32",
            provenance={
                "source": f"weights from the `mtcnn` PyPI package {version('mtcnn')} ({weights})",
                "training_data": "WIDER FACE / CelebA as trained by the MTCNN authors",
            },
        )
        logger.info("%s -> %s", name, path)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=MODELS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.models_dir.mkdir(parents=True, exist_ok=True)
    export(args.models_dir)


if __name__ == "__main__":
    main()
