"""szmass.network.model: the mResUNet's size, wiring, errors, saving, and that it can learn
(SPEC §3)."""

import keras
import numpy as np
import pytest
import xarray as xr
from keras import layers

from szmass.network.model import build_mresunet

# Keras 3.15 converts TF variables with np.array(copy=False), which NumPy 2 deprecates.
pytestmark = [
    pytest.mark.filterwarnings(
        "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
    ),
]

PAPER = {"base_filters": 64, "depth": 3, "n_substages": 4}


def _expected_parameters(*, base_filters: int, depth: int, n_substages: int) -> int:
    """Parameters of the SPEC §3 architecture, counted by hand.

    A sub-stage is a 3x3 conv (weights + bias), a batch norm (gamma, beta, moving mean and
    variance) and, where its input has other channels or it strides, a 1x1 projection.
    Encoder level k has base * 2**k filters, the bridge base * 2**depth; decoder level k
    takes the up-sampled level-(k+1) output plus two skips of base * 2**k channels each.
    """

    def substage(c_in, f, project):
        return 9 * c_in * f + f + 4 * f + ((c_in * f + f) if project else 0)

    def block(c_in, f, stride):
        n = substage(c_in, f, project=stride != 1 or c_in != f)
        return n + (n_substages - 1) * substage(f, f, project=False)

    filters = [base_filters * 2**k for k in range(depth + 1)]
    total, c_in = 0, 1
    for k in range(depth):
        total += block(c_in, filters[k], stride=1 if k == 0 else 2)
        c_in = filters[k]
    total += block(c_in, filters[depth], stride=2)
    for k in reversed(range(depth)):
        total += block(filters[k + 1] + 2 * filters[k], filters[k], stride=1)
    return total + filters[0] * 2 + 2  # final 1x1 conv to 2 channels


@pytest.fixture(scope="module")
def paper_model() -> keras.Model:
    return build_mresunet(**PAPER)


def test_paper_parameter_count(paper_model):
    n = paper_model.count_params()
    assert 15e6 <= n <= 17e6, n  # SPEC §3: "about 16M parameters at base width 64"
    assert n == _expected_parameters(**PAPER) == 16_914_050


def test_cpu_width_parameter_count():
    """config/cpu.yaml's base width 16: ~1.06M parameters (the 1/16 of the paper's, as the
    parameters go with the square of the width, less the biases)."""
    n = build_mresunet(base_filters=16).count_params()
    assert n == _expected_parameters(base_filters=16, depth=3, n_substages=4) == 1_062_818
    assert n == pytest.approx(1.06e6, rel=0.01)


@pytest.mark.parametrize(("base", "depth"), [(4, 1), (4, 2), (8, 3)])
def test_parameter_count_formula(base, depth):
    net = build_mresunet(input_size=16, base_filters=base, depth=depth)
    assert net.count_params() == _expected_parameters(base_filters=base, depth=depth, n_substages=4)


def test_paper_architecture(paper_model):
    """Filters 64-128-256, bridge 512, decoder 256-128-64; 3x3 kernels with dilation 1-4;
    stride 2 where the filters double; a linear 1x1 output to 2 channels."""
    net = paper_model
    names = [*(f"enc{k}" for k in range(3)), "bridge", *(f"dec{k}" for k in range(3))]
    filters = [64, 128, 256, 512, 64, 128, 256]
    sizes = [40, 20, 10, 5, 40, 20, 10]
    for block, f, size in zip(names, filters, sizes, strict=True):
        for d in range(1, 5):
            conv = net.get_layer(f"{block}_d{d}_conv")
            assert conv.filters == f and conv.kernel_size == (3, 3), conv.name
            assert conv.dilation_rate == (d, d), conv.name
            stride = 2 if d == 1 and block in ("enc1", "enc2", "bridge") else 1
            assert conv.strides == (stride, stride), conv.name
            assert net.get_layer(f"{block}_d{d}_add").output.shape == (None, size, size, f)
    out = net.get_layer("output")
    assert out.kernel_size == (1, 1) and out.filters == 2
    assert out.activation is keras.activations.linear
    assert net.input.shape == (None, 40, 40, 1)
    assert net.output.shape == (None, 40, 40, 2)


def test_substage_order(paper_model):
    """Each sub-stage is conv -> SELU -> batch norm, with its input added back."""
    net = paper_model
    for layer in net.layers:
        if not layer.name.endswith("_conv"):
            continue
        stem = layer.name.removesuffix("_conv")
        selu, bn, add = (net.get_layer(f"{stem}_{s}") for s in ("selu", "bn", "add"))
        assert selu.activation is keras.activations.selu
        assert selu.input is layer.output
        assert bn.input is selu.output
        assert any(t is bn.output for t in add.input)
        (other,) = [t for t in add.input if t is not bn.output]
        # the other summand is the sub-stage's input, or its 1x1 projection
        assert other is layer.input or other is net.get_layer(f"{stem}_proj").output


def test_skip_connections(paper_model):
    """The decoder concatenates the dilation-2 and dilation-4 sub-stage outputs of the
    matching encoder block to the up-sampled features."""
    net = paper_model
    for k in range(3):
        concat = net.get_layer(f"dec{k}_concat")
        assert isinstance(concat, layers.Concatenate)
        inputs = concat.input
        assert len(inputs) == 3
        assert inputs[0] is net.get_layer(f"dec{k}_up").output
        assert inputs[1] is net.get_layer(f"enc{k}_d2_add").output
        assert inputs[2] is net.get_layer(f"enc{k}_d4_add").output
        # and the decoder block reads the concatenation
        assert net.get_layer(f"dec{k}_d1_conv").input is concat.output


@pytest.mark.parametrize("size", [16, 40, 48, 64])
def test_output_shape(size):
    net = build_mresunet(input_size=size, base_filters=4, depth=3)
    assert net.output.shape == (None, size, size, 2)
    out = net(np.zeros((2, size, size, 1), np.float32), training=False)
    assert tuple(out.shape) == (2, size, size, 2)


@pytest.mark.parametrize(("size", "depth"), [(36, 3), (42, 3), (42, 2), (20, 3), (9, 1)])
def test_size_not_divisible_is_refused(size, depth):
    with pytest.raises(ValueError, match=rf"input size {size} is not divisible by .*{2**depth}"):
        build_mresunet(input_size=size, base_filters=4, depth=depth)


def _dropouts(net):
    return {layer.name: layer for layer in net.layers if isinstance(layer, layers.Dropout)}


@pytest.mark.parametrize("placement", ["decoder", "encoder"])
def test_dropout_placement(placement):
    net = build_mresunet(
        input_size=16, base_filters=4, depth=2, dropout=0.3, dropout_placement=placement
    )
    prefix = "dec" if placement == "decoder" else "enc"
    found = _dropouts(net)
    assert set(found) == {f"{prefix}{k}_dropout" for k in range(2)}
    for k in range(2):
        drop = found[f"{prefix}{k}_dropout"]
        assert drop.rate == 0.3
        # after the whole block (its last sub-stage)
        assert drop.input is net.get_layer(f"{prefix}{k}_d4_add").output
    if placement == "encoder":
        # the skips are taken inside the block, before the dropout
        assert net.get_layer("enc0_d4_add").output in net.get_layer("dec0_concat").input


@pytest.mark.parametrize(("placement", "rate"), [("none", 0.3), ("decoder", 0.0)])
def test_no_dropout(placement, rate):
    net = build_mresunet(
        input_size=16, base_filters=4, depth=2, dropout=rate, dropout_placement=placement
    )
    assert _dropouts(net) == {}


def test_unknown_dropout_placement():
    with pytest.raises(ValueError, match="dropout_placement"):
        build_mresunet(input_size=16, base_filters=4, depth=1, dropout_placement="bridge")


def test_skip_dilations_must_exist():
    with pytest.raises(ValueError, match="skip_dilations"):
        build_mresunet(input_size=16, base_filters=4, depth=1, n_substages=3)


def test_save_load_round_trip(tmp_path):
    """A saved .keras file loads with plain keras.saving.load_model (no custom objects) and
    predicts the same, in inference mode (dropout off, batch-norm moving statistics)."""
    keras.utils.set_random_seed(1)
    net = build_mresunet(input_size=40, base_filters=4, depth=3, dropout=0.3)
    rng = np.random.default_rng(0)
    # non-trivial weights everywhere, batch-norm statistics included (variances positive)
    net.set_weights(
        [
            (np.abs(w) + 0.5 if "variance" in v.path else w).astype(v.dtype)
            for v, w in zip(
                net.weights,
                (0.3 * rng.standard_normal(v.shape) for v in net.weights),
                strict=True,
            )
        ]
    )
    x = rng.standard_normal((3, 40, 40, 1)).astype(np.float32)

    def eager(model):
        return keras.ops.convert_to_numpy(model(x, training=False))

    expected = eager(net)
    np.testing.assert_array_equal(eager(net), expected)  # inference is deterministic
    net.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    assert loaded.count_params() == net.count_params()
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in net.layers]
    for a, b in zip(loaded.weights, net.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    np.testing.assert_array_equal(eager(loaded), expected)  # bit for bit


def test_separate_heads():
    """Each channel has its own 3x3 residual sub-stage and 1x1 convolution after the shared
    decoder: two heads' parameters more than the paper's shared 1x1 convolution, and a change
    to one head's weights moves its own channel only."""
    base = {"input_size": 16, "base_filters": 4, "depth": 2}
    shared, split = build_mresunet(**base), build_mresunet(**base, separate_heads=True)
    f = base["base_filters"]
    head = 9 * f * f + f + 4 * f + f + 1  # 3x3 conv, batch norm, 1x1 conv to one channel
    assert split.count_params() == shared.count_params() - (2 * f + 2) + 2 * head
    assert split.output.shape == (None, 16, 16, 2)
    x = np.random.default_rng(3).standard_normal((2, 16, 16, 1)).astype(np.float32)
    before = keras.ops.convert_to_numpy(split(x, training=False))
    out = split.get_layer("head0_output")
    out.set_weights([w + 1.0 for w in out.get_weights()])
    after = keras.ops.convert_to_numpy(split(x, training=False))
    assert np.all(after[..., 0] != before[..., 0])
    np.testing.assert_array_equal(after[..., 1], before[..., 1])
    assert split.get_layer("head1_conv").input is split.get_layer("head0_conv").input


# --- it learns -----------------------------------------------------------------------------

#: The overfit run: 16 maps of the prepared 8x8 set, each seen 64 times per epoch, batch 8,
#: Adam at 1e-2, 5 epochs (640 steps, ~12 s here). Measured: the inference MSE falls from
#: ~20 (an untrained mResUNet's outputs are far off scale) to ~3e-3, i.e. ~4% of what an
#: all-zero prediction scores and ~12% of what the best map-independent prediction (the mean
#: label map) scores.
OVERFIT = {"repeats": 64, "batch_size": 8, "learning_rate": 1e-2, "epochs": 5}


def test_small_network_overfits_16_maps(prepared8):
    train = xr.open_zarr(prepared8 / "train.zarr").load()
    pick = np.r_[0:6, 8:13, 16:21]  # 6 + 5 + 5 maps of the three masses
    x, y = train.inputs.values[pick], train.labels.values[pick]
    assert x.shape == (16, 8, 8, 1)
    keras.utils.set_random_seed(0)
    net = build_mresunet(input_size=8, base_filters=8, depth=1, dropout=0.0)
    net.compile(
        optimizer=keras.optimizers.Adam(OVERFIT["learning_rate"]), loss="mse", jit_compile=False
    )

    def mse():
        return float(np.mean((keras.ops.convert_to_numpy(net(x, training=False)) - y) ** 2))

    before = mse()
    reps = (OVERFIT["repeats"], 1, 1, 1)
    net.fit(
        np.tile(x, reps),
        np.tile(y, reps),
        batch_size=OVERFIT["batch_size"],
        epochs=OVERFIT["epochs"],
        verbose=0,
    )
    after = mse()
    zero = float(np.mean(y**2))  # predict nothing
    mean_map = float(np.mean((y - y.mean(axis=0)) ** 2))  # predict the mean label map
    print(f"overfit: MSE {before:.3g} -> {after:.3g} ({before / after:.0f}x); ", end="")
    print(f"all-zero {zero:.3g}, mean map {mean_map:.3g}")
    assert after <= before / 10
    assert after <= 0.1 * zero
    assert after <= 0.25 * mean_map
