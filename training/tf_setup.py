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


def limit_threads(threads: int) -> None:
    """Train on `threads` CPU threads (other jobs share the machine); a no-op once TF runs."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TF already initialised in this process (e.g. in a test session)
        pass


__all__ = ["limit_threads", "seed_everything", "tf"]
