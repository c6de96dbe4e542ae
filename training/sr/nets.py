"""Networks for x4 super-resolution on the Y channel (inputs and outputs in [0, 1]).

Generator: SRCNN's three stages (patch extraction 5x5, non-linear mapping as residual 3x3 blocks,
reconstruction) computed at LR resolution, then an upsampling block (conv to 16 channels +
depth_to_space x4, i.e. pixel shuffle) added to a bilinear upsampling of the input, so the net
only learns the missing detail. Every op maps to a TFLite builtin. SRGAN discriminator: 8 conv
blocks 64 -> 512 (stride 2 every second block), dense 1024, dense 1 with sigmoid (Ledig et al.).
"""

from __future__ import annotations

from training.sr.data import SCALE
from training.tf_setup import tf

layers = tf.keras.layers


def _residual_block(x: tf.Tensor, channels: int, name: str) -> tf.Tensor:
    y = layers.Conv2D(channels, 3, padding="same", activation="relu", name=f"{name}_conv1")(x)
    y = layers.Conv2D(channels, 3, padding="same", name=f"{name}_conv2")(y)
    return layers.Add(name=f"{name}_add")([x, y])


def make_generator(channels: int = 32, blocks: int = 5, size: int | None = None) -> tf.keras.Model:
    """SRCNN-style residual generator; `size` fixes the LR input side (for TFLite export)."""
    lr = layers.Input((size, size, 1), name="lr_y")
    features = layers.Conv2D(channels, 5, padding="same", activation="relu", name="extract")(lr)
    x = features
    for index in range(blocks):
        x = _residual_block(x, channels, f"map{index}")
    x = layers.Conv2D(channels, 3, padding="same", name="map_out")(x)
    x = layers.Add(name="map_skip")([features, x])
    x = layers.Conv2D(SCALE * SCALE, 3, padding="same", name="reconstruct")(x)
    detail = layers.Lambda(lambda t: tf.nn.depth_to_space(t, SCALE), name="pixel_shuffle")(x)
    base = layers.UpSampling2D(SCALE, interpolation="bilinear", name="bilinear")(lr)
    hr = layers.Add(name="hr_y")([base, detail])
    return tf.keras.Model(lr, hr, name="sr_generator")


def make_discriminator(hr_size: int) -> tf.keras.Model:
    """SRGAN discriminator for (hr_size, hr_size, 1) Y patches -> P(real)."""
    image = layers.Input((hr_size, hr_size, 1), name="hr_y")
    x = image
    for index, channels in enumerate((64, 64, 128, 128, 256, 256, 512, 512)):
        x = layers.Conv2D(channels, 3, strides=1 + index % 2, padding="same")(x)
        if index:
            x = layers.BatchNormalization()(x)
        x = layers.LeakyReLU(0.2)(x)
    x = layers.Flatten()(x)
    x = layers.LeakyReLU(0.2)(layers.Dense(1024)(x))
    return tf.keras.Model(image, layers.Dense(1, activation="sigmoid")(x), name="discriminator")


def make_feature_net(veil_model_path: str) -> tf.keras.Model:
    """Perceptual-loss features without ImageNet VGG (not downloadable here): the project's own
    veil SqueezeVGG (a VGG16-like trunk trained on 128x128 grey faces), blocks 2 and 3, frozen."""
    veil = tf.keras.models.load_model(veil_model_path, compile=False)
    # The shipped veil averages several runs (training/ensemble.py), each a sub-model: the first.
    veil = next((layer for layer in veil.layers if isinstance(layer, tf.keras.Model)), veil)
    veil.trainable = False
    y = layers.Input((None, None, 1), name="y")
    # the veil net reads 0..255 grey pixels: (255 Y - 16) * 255 / 219
    x = layers.Rescaling(255.0 * 255.0 / 219.0, offset=-16.0 * 255.0 / 219.0)(y)
    outputs = []
    for layer in veil.layers[1:]:
        x = layer(x, training=False) if "dropout" in layer.name or "bn" in layer.name else layer(x)
        if layer.name in ("block2_relu2", "block3_relu3"):
            outputs.append(x)
        if len(outputs) == 2:
            break
    return tf.keras.Model(y, outputs, name="feature_net")
