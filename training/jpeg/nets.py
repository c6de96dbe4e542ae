"""Networks of the JPEG task, every size configurable.

- `kv_discriminator`: the paper's discriminator / JPEG detector. Input stacked with its 5x5 KV
  high-pass residual; 3 groups of (conv3x3-BN-ReLU x2, 4x4 max-pool), channels doubling; FC 64
  ReLU; FC 1 (layer "logit") and a sigmoid.
- `constrained_cnn`: a Bayar & Stamm style detector whose first layer is a constrained
  "prediction error" convolution (centre weight -1, the others summing to 1, re-projected after
  every update), then a scaled-down version of their conv/BN/tanh stack.
- `generator`: the SRGAN-like anti-forensic generator, fully convolutional (any input size).

Detectors take uint8-range pixels (0..255, shape (S, S, 1)) and normalize inside, so the exported
TFLite file carries its preprocessing. The generator works in [-1, 1] as in the paper.
"""

from __future__ import annotations

import numpy as np

from training.highpass import KV_KERNEL
from training.tf_setup import tf

keras = tf.keras
layers = keras.layers


def _unit_range(pixels: tf.Tensor) -> tf.Tensor:
    return layers.Rescaling(1 / 127.5, offset=-1.0, name="to_unit_range")(pixels)


def kv_residual(name: str = "kv_residual") -> layers.Layer:
    """The fixed (non-trainable) KV high-pass filter as a 5x5 convolution."""
    return layers.Conv2D(
        1,
        5,
        padding="same",
        use_bias=False,
        trainable=False,
        kernel_initializer=keras.initializers.Constant(KV_KERNEL[:, :, None, None]),
        name=name,
    )


def kv_discriminator(size: int = 64, base_filters: int = 16, dense: int = 64) -> keras.Model:
    """Paper's discriminator; `size` must be a multiple of 64 (three 4x4 poolings)."""
    pixels = keras.Input((size, size, 1), name="pixels")
    unit = _unit_range(pixels)
    x = layers.Concatenate(name="with_kv")([unit, kv_residual()(unit)])
    for group in range(3):
        filters = base_filters * 2**group
        for conv in range(2):
            x = layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=f"g{group}_conv{conv}"
            )(x)
            x = layers.BatchNormalization(name=f"g{group}_bn{conv}")(x)
            x = layers.ReLU(name=f"g{group}_relu{conv}")(x)
        x = layers.MaxPooling2D(4, name=f"g{group}_pool")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense, activation="relu", name="fc")(x)
    logit = layers.Dense(1, name="logit")(x)
    score = layers.Activation("sigmoid", name="score")(logit)
    return keras.Model(pixels, score, name="kv_discriminator")


class PredictionErrorConstraint(keras.constraints.Constraint):
    """Bayar & Stamm: centre weight -1, off-centre weights rescaled to sum to 1 per filter."""

    def __call__(self, kernel: tf.Tensor) -> tf.Tensor:
        size = kernel.shape[0]
        centre = np.zeros((size, size, 1, 1), np.float32)
        centre[size // 2, size // 2] = 1.0
        off = kernel * (1.0 - centre)
        total = tf.reduce_sum(off, axis=(0, 1), keepdims=True)
        total = tf.where(tf.abs(total) < 1e-6, tf.ones_like(total), total)
        return off / total - centre


def constrained_cnn(size: int = 64, filters: int = 24, dense: int = 64) -> keras.Model:
    """Scaled-down Bayar & Stamm (2016) detector: 3 constrained 5x5 filters, then
    conv7x7/2 - BN - tanh - maxpool, conv5x5 - BN - tanh - maxpool, conv1x1 - BN - tanh,
    global average pooling, FC tanh, FC logit."""
    pixels = keras.Input((size, size, 1), name="pixels")
    x = _unit_range(pixels)
    x = layers.Conv2D(
        3,
        5,
        padding="same",
        use_bias=False,
        kernel_initializer=keras.initializers.RandomUniform(0.0, 1.0),
        kernel_constraint=PredictionErrorConstraint(),
        name="constrained",
    )(x)
    x = layers.Conv2D(filters, 7, strides=2, padding="same", use_bias=False, name="conv1")(x)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.Activation("tanh")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.Conv2D(filters, 5, padding="same", use_bias=False, name="conv2")(x)
    x = layers.BatchNormalization(name="bn2")(x)
    x = layers.Activation("tanh")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
    x = layers.Conv2D(2 * filters, 1, use_bias=False, name="conv3")(x)
    x = layers.BatchNormalization(name="bn3")(x)
    x = layers.Activation("tanh")(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(dense, activation="tanh", name="fc")(x)
    logit = layers.Dense(1, name="logit")(x)
    score = layers.Activation("sigmoid", name="score")(logit)
    return keras.Model(pixels, score, name="constrained_cnn")


DETECTORS = {"kv": kv_discriminator, "constrained": constrained_cnn}


def generator(blocks: int = 16, filters: int = 64) -> keras.Model:
    """SRGAN-like generator: conv3x3 + LReLU(0.2), `blocks` residual blocks of
    (conv-BN-LReLU) x2 with skips, 3 more convs, tanh. Input and output in [-1, 1], any size.

    One change from the paper: the input is added (through atanh) before the final tanh and the
    last conv starts at zero, so the untrained generator is the identity. With the few hundred
    CPU steps trained here this keeps outputs at JPEG quality instead of starting from grey.
    """
    image = keras.Input((None, None, 1), name="image")
    first = layers.LeakyReLU(0.2)(layers.Conv2D(filters, 3, padding="same", name="head")(image))
    x = first
    for block in range(blocks):
        skip = x
        for conv in range(2):
            x = layers.Conv2D(
                filters, 3, padding="same", use_bias=False, name=f"b{block}_conv{conv}"
            )(x)
            x = layers.BatchNormalization(name=f"b{block}_bn{conv}")(x)
            x = layers.LeakyReLU(0.2)(x)
        x = layers.Add(name=f"b{block}_skip")([skip, x])
    x = layers.Conv2D(filters, 3, padding="same", name="tail0")(x)
    x = layers.LeakyReLU(0.2)(layers.Add(name="global_skip")([first, x]))
    x = layers.LeakyReLU(0.2)(layers.Conv2D(filters, 3, padding="same", name="tail1")(x))
    x = layers.Conv2D(1, 3, padding="same", kernel_initializer="zeros", name="tail2")(x)
    identity = layers.Lambda(lambda t: tf.atanh(tf.clip_by_value(t, -0.999, 0.999)), name="atanh")(
        image
    )
    out = layers.Activation("tanh", name="tanh")(layers.Add()([x, identity]))
    return keras.Model(image, out, name="generator")
