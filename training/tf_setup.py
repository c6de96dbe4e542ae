"""Import TensorFlow quietly and deterministically; every training module imports TF through here."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import tensorflow as tf

tf.get_logger().setLevel("ERROR")


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and TensorFlow so splits and initial weights repeat."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed)
    tf.random.set_seed(seed)


__all__ = ["seed_everything", "tf"]
