"""SqueezeMiniVGG and SqueezeVGG (Mazandarani et al.): VGG conv stacks with SqueezeNet's head.

The fully-connected head of VGG is replaced by a 1x1 convolution to one channel, global average
pooling and a sigmoid, which removes most parameters. Normalization (pixels / 255) is a layer of
the model, so exported files carry it. The layer named "logit" is what the kiosk's int8 model
outputs: quantizing the logit rather than the sigmoid keeps fine score resolution near 0 and 1,
where the operating thresholds sit; the kiosk applies the sigmoid.
"""

from __future__ import annotations

from training.tf_setup import tf

keras = tf.keras
layers = keras.layers

# BatchNorm tracks its statistics fast (Keras' 0.99 left them half-initialised after the few
# hundred steps these small sets give, and inference collapsed to one output); light dropout
# between blocks keeps the train/inference variance shift before each BatchNorm small.
BN_MOMENTUM = 0.9
BLOCK_DROPOUT = 0.1

# (filters per conv layer) per block; a 2x2 max-pool closes every block.
SQUEEZE_MINI_VGG = ((32, 32), (64, 64), (128, 128))  # VGG7-like: 6 conv layers
# VGG16 trunk (13 conv layers) at 1/8 of its width: sized for CPU training and a Pi at camera rate.
SQUEEZE_VGG = ((8, 8), (16, 16), (32, 32, 32), (64, 64, 64), (64, 64, 64))


def vgg_with_squeeze_head(
    x: tf.Tensor, blocks: tuple[tuple[int, ...], ...], dropout: float, name: str, inputs: tf.Tensor
) -> keras.Model:
    """The model from `inputs`: VGG conv blocks (conv-BN-ReLU, 2x2 max-pool, light dropout) on
    `x`, then SqueezeNet's head: 1x1 conv to one channel, global average pooling ("logit"),
    sigmoid ("score"). Shared by the compliance CNNs and the morph CNN."""
    for b, filters_list in enumerate(blocks, start=1):
        for c, filters in enumerate(filters_list, start=1):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{b}_conv{c}")(
                x
            )
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"block{b}_bn{c}")(x)
            x = layers.ReLU(name=f"block{b}_relu{c}")(x)
        x = layers.MaxPooling2D(2, name=f"block{b}_pool")(x)
        x = layers.Dropout(BLOCK_DROPOUT, name=f"block{b}_dropout")(x)
    x = layers.Dropout(dropout, name="head_dropout")(x)
    x = layers.Conv2D(1, 1, name="head_conv1x1")(x)
    logit = layers.GlobalAveragePooling2D(name="logit")(x)
    outputs = layers.Activation("sigmoid", name="score")(logit)
    return keras.Model(inputs, outputs, name=name)


def _squeeze_vgg(
    input_shape: tuple[int, int, int],
    blocks: tuple[tuple[int, ...], ...],
    dropout: float,
    name: str,
) -> keras.Model:
    inputs = keras.Input(shape=input_shape, name="pixels")
    x = layers.Rescaling(1.0 / 255.0, name="normalize")(inputs)
    return vgg_with_squeeze_head(x, blocks, dropout, name, inputs)


def squeeze_mini_vgg(input_shape: tuple[int, int, int], dropout: float = 0.4) -> keras.Model:
    return _squeeze_vgg(input_shape, SQUEEZE_MINI_VGG, dropout, "SqueezeMiniVGG")


def squeeze_vgg(input_shape: tuple[int, int, int], dropout: float = 0.4) -> keras.Model:
    return _squeeze_vgg(input_shape, SQUEEZE_VGG, dropout, "SqueezeVGG")


def logit_model(model: keras.Model) -> keras.Model:
    """The same network ending at the logit (what is exported to TFLite)."""
    return keras.Model(model.inputs, model.get_layer("logit").output, name=f"{model.name}_logit")


ARCHITECTURES = {"SqueezeMiniVGG": squeeze_mini_vgg, "SqueezeVGG": squeeze_vgg}
