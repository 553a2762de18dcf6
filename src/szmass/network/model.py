"""mResUNet (Gupta & Reichardt 2020, arXiv:2003.06135, §2.1 and Fig. 1; SPEC §3).

A U-Net of residual blocks. Each block has ``n_substages`` sub-stages (3x3 convolutions with
dilation 1, 2, 3, 4), each conv -> SELU -> batch norm with its input added back (a 1x1
projection where the shapes differ). The encoder doubles the filters and halves the map with
stride 2 at each level; the decoder up-samples and concatenates the outputs of the dilation-2
and dilation-4 sub-stages of the matching encoder block. A final 1x1 linear convolution gives
two channels: the normalised SZ map and the mass map. With ``separate_heads`` (beyond the
paper; issue 12) each channel gets its own residual sub-stage before its own 1x1 convolution,
so the SZ map does not share its last features with the mass map's central cusp.

The input has one channel (the map) or, for a model that takes the redshift (issue 16), two:
the map and a constant channel of the normalised z (``dataset.network_inputs``). With
``z_conditioning="film"`` the z also conditions every block (FiLM, Perez et al. 2018,
arXiv:1709.07871): each block's output x becomes x * g(z) + b(z), g and b per filter from a
small dense network of z, initialised to g = 1, b = 0 (the channel-only network at the start).

Only standard Keras layers are used, so a saved ``.keras`` file loads with plain
``keras.saving.load_model``.
"""

import keras
from keras import layers

DROPOUT_PLACEMENTS = ("decoder", "encoder", "none")
#: How a model that takes z sees it: the constant input channel alone, or also FiLM.
Z_CONDITIONINGS = ("channel", "film")
#: Width of the dense layer between z and each block's FiLM scale and shift.
FILM_HIDDEN = 32


def film_embedding(inputs):
    """z from the constant second input channel (its spatial mean, selected by a fixed
    non-trainable dense layer: standard layers only), then a SELU dense layer."""
    zbar = layers.GlobalAveragePooling2D(name="film_pool")(inputs)
    z = layers.Dense(
        1,
        use_bias=False,
        trainable=False,
        kernel_initializer=keras.initializers.Constant([[0.0], [1.0]]),
        name="film_z",
    )(zbar)
    return layers.Dense(FILM_HIDDEN, activation="selu", name="film_hidden")(z)


def film(x, embedding, *, name: str):
    """x * g + b, with g, b (batch, 1, 1, filters) linear in ``embedding``; g = 1, b = 0 at
    initialisation."""
    filters = x.shape[-1]
    scale = layers.Dense(
        filters, kernel_initializer="zeros", bias_initializer="ones", name=f"{name}_film_g"
    )(embedding)
    shift = layers.Dense(filters, kernel_initializer="zeros", name=f"{name}_film_b")(embedding)
    scale = layers.Reshape((1, 1, filters), name=f"{name}_film_g4")(scale)
    shift = layers.Reshape((1, 1, filters), name=f"{name}_film_b4")(shift)
    x = layers.Multiply(name=f"{name}_film_mul")([x, scale])
    return layers.Add(name=f"{name}_film_add")([x, shift])


def residual_substage(x, filters: int, *, dilation: int, stride: int = 1, name: str):
    """conv(3x3, dilation) -> SELU -> batch norm, plus the input (1x1-projected if needed)."""
    y = layers.Conv2D(
        filters,
        3,
        strides=stride,
        dilation_rate=dilation,
        padding="same",
        kernel_initializer="lecun_normal",
        name=f"{name}_conv",
    )(x)
    y = layers.Activation("selu", name=f"{name}_selu")(y)
    y = layers.BatchNormalization(name=f"{name}_bn")(y)
    if stride != 1 or x.shape[-1] != filters:
        x = layers.Conv2D(filters, 1, strides=stride, padding="same", name=f"{name}_proj")(x)
    return layers.Add(name=f"{name}_add")([x, y])


def residual_block(x, filters: int, *, n_substages: int, stride: int, name: str):
    """``n_substages`` residual sub-stages, dilations 1..n; returns (output, {dilation: out})."""
    outputs = {}
    for i in range(n_substages):
        dilation = i + 1
        x = residual_substage(
            x,
            filters,
            dilation=dilation,
            stride=stride if i == 0 else 1,
            name=f"{name}_d{dilation}",
        )
        outputs[dilation] = x
    return x, outputs


def build_mresunet(
    *,
    input_size: int = 40,
    input_channels: int = 1,
    base_filters: int = 64,
    depth: int = 3,
    n_substages: int = 4,
    dropout: float = 0.3,
    dropout_placement: str = "decoder",
    skip_dilations: tuple[int, ...] = (2, 4),
    n_outputs: int = 2,
    separate_heads: bool = False,
    z_conditioning: str = "channel",
    name: str = "mresunet",
) -> keras.Model:
    """Build the mResUNet.

    Args:
        input_size: side of the square input map; must be divisible by 2**depth.
        input_channels: 1 (the map) or 2 (the map and the normalised redshift).
        base_filters: filters of the first encoder block (64 in the paper: ~16M parameters);
            level k has base_filters * 2**k, the bridge base_filters * 2**depth.
        depth: encoder levels below the bridge (3 in the paper: 64-128-256, bridge 512).
        n_substages: sub-stages per block, with dilations 1..n_substages (4).
        dropout: dropout rate (0.3), applied after each block of ``dropout_placement``.
        dropout_placement: "decoder" (paper §2.1), "encoder" (paper §3) or "none".
        skip_dilations: which sub-stage outputs of each encoder block feed the decoder.
        n_outputs: output channels (2: SZ map and mass map).
        separate_heads: give each output channel its own 3x3 residual sub-stage and 1x1
            convolution (False: the paper's one shared 1x1 convolution).
        z_conditioning: for a model that takes z (``input_channels`` 2), "channel" (the
            constant input channel only) or "film" (also a FiLM scale and shift of every
            block's output).
    Returns:
        keras.Model mapping (batch, input_size, input_size, input_channels) to
        (batch, input_size, input_size, n_outputs).
    """
    if input_size % 2**depth:
        raise ValueError(
            f"input size {input_size} is not divisible by 2**depth = {2**depth}: the "
            f"{depth} stride-2 levels need it (e.g. 40 for depth 3)"
        )
    if input_channels < 1:
        raise ValueError(f"input_channels is {input_channels}; expected 1 (map) or 2 (map, z)")
    if dropout_placement not in DROPOUT_PLACEMENTS:
        raise ValueError(f"dropout_placement must be one of {DROPOUT_PLACEMENTS}")
    if z_conditioning not in Z_CONDITIONINGS:
        raise ValueError(
            f"model.z_conditioning is {z_conditioning!r}; expected one of {Z_CONDITIONINGS}"
        )
    if z_conditioning == "film" and input_channels != 2:
        raise ValueError(
            "model.z_conditioning 'film' needs a model that takes the redshift (clusters "
            "drawn over a cluster.redshift range); this one has a fixed z"
        )
    if not set(skip_dilations) <= set(range(1, n_substages + 1)):
        raise ValueError(f"skip_dilations {skip_dilations} must lie in 1..{n_substages}")

    inputs = keras.Input((input_size, input_size, input_channels), name="sky")
    embedding = film_embedding(inputs) if z_conditioning == "film" else None

    def condition(x, name):
        return x if embedding is None else film(x, embedding, name=name)

    x, skips = inputs, []
    for level in range(depth):
        x, outs = residual_block(
            x,
            base_filters * 2**level,
            n_substages=n_substages,
            stride=1 if level == 0 else 2,
            name=f"enc{level}",
        )
        x = condition(x, f"enc{level}")
        skips.append([outs[d] for d in skip_dilations])
        if dropout_placement == "encoder" and dropout > 0:
            x = layers.Dropout(dropout, name=f"enc{level}_dropout")(x)
    x, _ = residual_block(
        x, base_filters * 2**depth, n_substages=n_substages, stride=2, name="bridge"
    )
    x = condition(x, "bridge")
    for level in reversed(range(depth)):
        x = layers.UpSampling2D(2, name=f"dec{level}_up")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, *skips[level]])
        x, _ = residual_block(
            x, base_filters * 2**level, n_substages=n_substages, stride=1, name=f"dec{level}"
        )
        x = condition(x, f"dec{level}")
        if dropout_placement == "decoder" and dropout > 0:
            x = layers.Dropout(dropout, name=f"dec{level}_dropout")(x)
    if not separate_heads:
        outputs = layers.Conv2D(n_outputs, 1, activation="linear", dtype="float32", name="output")(
            x
        )
    else:
        heads = [
            layers.Conv2D(1, 1, activation="linear", dtype="float32", name=f"head{k}_output")(
                residual_substage(x, base_filters, dilation=1, name=f"head{k}")
            )
            for k in range(n_outputs)
        ]
        outputs = layers.Concatenate(name="output", dtype="float32")(heads)
    return keras.Model(inputs, outputs, name=name)
