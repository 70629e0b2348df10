"""Tests of the MDMM (concat=1) networks against the official MDMM code (github.com/HsinYingLee/MDMM): its parameter
counts, closed forms of them, its layer shapes and its concatenations (docs/mdmm.md)."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn as nn

from conftest import on_meta
from gmdrit_cli.families.blocks import (
    GaussianNoiseLayer,
    LayerNorm,
    LeakyReLUConv2d,
    ReLUINSConvTranspose2d,
    conv_transpose_tiled,
    init_conv_weights,
    tile,
)
from gmdrit_cli.families.mdmm.nets import (
    AttributeBackbone,
    AttributeEncoder,
    ContentDiscriminator,
    ContentEncoder,
    Generator,
    ImageDiscriminator,
    build_mdmm_networks,
)

NZ = 8
KEYS = {"content_encoder", "attribute_encoder", "generator", "dis_encoded", "dis_random", "dis_content"}

# The official MDMM modules' parameter counts (counted by instantiating them; docs/mdmm.md gives the C = 2, 216 px
# row): {(C, S): {module: count}}.
TABLE = {
    (3, 216): dict(E_c=5_099_136, E_a=1_347_152, G=5_465_273, D=15_737_472, D_c=10_684_163, total=54_070_668),
    (3, 108): dict(E_c=5_099_136, E_a=1_347_152, G=5_465_273, D=15_712_896, D_c=10_684_163, total=54_021_516),
    (2, 216): dict(E_c=5_099_136, E_a=1_346_128, G=5_435_252, D=15_728_256, D_c=10_683_906, total=54_020_934),
    (2, 108): dict(E_c=5_099_136, E_a=1_346_128, G=5_435_252, D=15_711_872, D_c=10_683_906, total=53_988_166),
}
NET_KEY = dict(E_c="content_encoder", E_a="attribute_encoder", G="generator", D="dis_encoded", D_c="dis_content")


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@functools.cache
def nets(C: int, S: int) -> dict[str, nn.Module]:
    """Built once per (C, S) and shared (read-only use: eval mode, no_grad)."""
    built = build_mdmm_networks(C, S)
    for net in built.values():
        net.eval()
    return built


def closed_forms(C: int, S: int) -> dict[str, int]:
    """Closed forms of the official modules' parameter counts, written out independently of the implementation."""
    k = int(S / 64)
    e_c = (3 * 64 * 49 + 64) + (64 * 128 * 9 + 128) + (128 * 256 * 9 + 256) + 8 * (256 * 256 * 9 + 256)

    def basic(ci: int, co: int) -> int:
        return ci * ci * 9 + ci + ci * co * 9 + co + ci * co + co

    e_a = (3 + C) * 64 * 16 + 64 + basic(64, 128) + basic(128, 192) + basic(192, 256) + 2 * (256 * 8 + 8)
    t = 264 + C
    d2o = (t + 8) // 2
    d3i = d2o + 8
    d3o = d3i // 2
    g = (
        2 * (256**2 * 9 + 256)
        + 6 * (t**2 * 9 + t)
        + ((t + 8) * d2o * 9 + d2o + 2 * d2o)
        + (d3i * d3o * 9 + d3o + 2 * d3o)
        + ((d3o + 8) * 3 + 3)
    )
    d = 15_708_800 + 1024 + 1024 * C * k * k
    d_c = 3 * (256**2 * 49 + 256) + (256**2 * 16 + 256) + 256 * C + C
    return dict(E_c=e_c, E_a=e_a, G=g, D=d, D_c=d_c, total=e_c + e_a + g + 2 * d + d_c)


# --------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("C,S", sorted(TABLE))
def test_parameter_counts_match_the_official_modules_and_closed_forms(C, S):
    built = on_meta(lambda: build_mdmm_networks(C, S))
    assert set(built) == KEYS
    counts = {name: n_params(built[key]) for name, key in NET_KEY.items()}
    counts["total"] = sum(n_params(m) for m in built.values())
    assert n_params(built["dis_random"]) == counts["D"]
    assert counts == TABLE[(C, S)]
    assert counts == closed_forms(C, S)


def test_content_discriminator_parameter_count_independent_of_size():
    dc = ContentDiscriminator(2)
    assert n_params(dc) == 10_683_906
    # The network has no size argument; the same instance runs on every map size below.
    with torch.no_grad():
        for s in (54, 27, 8, 16, 1):
            assert dc(torch.randn(2, 256, s, s)).shape == (2, 2)


def test_double_convT_option_adds_the_forks_parameters():
    # The configuration of the GM-DRIT report authors' fork of MDMM (docs/gmdrit.md): C = 2, nz = 108.
    base = n_params(on_meta(lambda: Generator(2, nz=108)))
    double = n_params(on_meta(lambda: Generator(2, nz=108, double_convT=True)))
    assert double - base == 506_232 + 266_772


def test_spectral_norm_and_instance_norm_keep_parameter_count():
    d = ImageDiscriminator(108, 2, norm="instance", spectral_norm=True)
    init_conv_weights(d)
    assert n_params(d) == TABLE[(2, 108)]["D"]
    with torch.no_grad():
        rf, cls = d(torch.randn(2, 3, 108, 108))
    assert rf.shape == (2, 1, 4, 4) and cls.shape == (2, 2)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize(
    "C,S,s,rf_hw",
    [
        pytest.param(3, 216, 54, 6, marks=pytest.mark.slow),  # the official networks at 216 and 108 px
        pytest.param(2, 216, 54, 6, marks=pytest.mark.slow),
        pytest.param(2, 108, 27, 4, marks=pytest.mark.slow),
        pytest.param(3, 108, 27, 4, marks=pytest.mark.slow),
        (2, 64, 16, 3),
        (2, 32, 8, 3),
    ],
)
def test_forward_shapes(C, S, s, rf_hw):
    # 216 px: batch 1 keeps it fast; smaller sizes use batch 2.
    N = 1 if S == 216 else 2
    built = nets(C, S) if (C, S) in TABLE else build_mdmm_networks(C, S)
    for net in built.values():
        net.eval()
    x = torch.rand(N, 3, S, S) * 2 - 1
    c = torch.eye(C)[torch.arange(N) % C]
    with torch.no_grad():
        z_c = built["content_encoder"](x)
        assert z_c.shape == (N, 256, s, s)
        mu, logvar = built["attribute_encoder"](x, c)
        assert mu.shape == (N, NZ) and logvar.shape == (N, NZ)
        z = torch.randn(N, NZ) * 3  # large codes: tanh must still bound the image
        y = built["generator"](z_c, z, c)
        assert y.shape == (N, 3, S, S)
        assert y.min() >= -1 and y.max() <= 1
        for key in ("dis_encoded", "dis_random"):
            rf, cls = built[key](y)
            assert rf.shape == (N, 1, rf_hw, rf_hw)
            assert cls.shape == (N, C)
        assert built["dis_content"](z_c).shape == (N, C)


@pytest.mark.slow  # the official networks at 216 px
def test_intermediate_shapes_at_216():
    built = nets(2, 216)
    x = torch.randn(1, 3, 216, 216)
    with torch.no_grad():
        # Attribute backbone: 108 after the first conv, then 54, 27, 13 after the BasicBlocks.
        sizes = []
        hooks = [
            m.register_forward_hook(lambda _m, _i, o: sizes.append(tuple(o.shape[1:])))
            for m in list(built["attribute_encoder"].backbone.model)[1:5]
        ]
        built["attribute_encoder"](x, torch.tensor([[1.0, 0.0]]))
        for h in hooks:
            h.remove()
        assert sizes == [(64, 108, 108), (128, 54, 54), (192, 27, 27), (256, 13, 13)]

        # Image discriminator body: 108, 54, 27, 14, 7, 4.
        h = x
        sizes = []
        for layer in built["dis_encoded"].body:
            h = layer(h)
            sizes.append(tuple(h.shape[1:]))
        assert sizes == [(64, 108, 108), (128, 54, 54), (256, 27, 27), (512, 14, 14), (1024, 7, 7), (1024, 4, 4)]
        assert built["dis_encoded"].head_class(h).shape == (1, 2, 2, 2)

        # Content discriminator: official sizes 25, 11, 4, 1 with the official RP1 padding.
        h = torch.randn(1, 256, 54, 54)
        sizes = []
        for layer in built["dis_content"].model:
            h = layer(h)
            if isinstance(layer, LeakyReLUConv2d):
                sizes.append(h.shape[-1])
        assert sizes == [25, 11, 4, 1]


def test_generator_intermediate_shapes_at_108():
    g = nets(3, 108)["generator"]
    assert g.dec1[0].model[1].in_channels == 267
    assert g.dec2.model[0].in_channels == 275 and g.dec2.model[0].out_channels == 137
    assert g.dec3.model[0].in_channels == 145 and g.dec3.model[0].out_channels == 72
    assert g.dec4[0].in_channels == 80


def test_generator_adain_hook_receives_features_and_style():
    seen = {}

    class Spy(nn.Module):
        def forward(self, feat, style):
            seen["feat"], seen["style"] = feat.shape, style.shape
            return feat

    g = Generator(2, nz=4, code_dim=5, adain=Spy()).eval()
    with torch.no_grad():
        y = g(torch.randn(2, 256, 8, 8), torch.randn(2, 4), torch.randn(2, 5))
    assert y.shape == (2, 3, 32, 32)
    assert seen == {"feat": (2, 256, 8, 8), "style": (2, 9)}


# --------------------------------------------------------------------------- behaviour


@pytest.mark.parametrize("S,hw", [(216, 6), (108, 4), (32, 3)])
def test_realfake_head_outer_ring_is_exactly_zero(S, hw):
    d = nets(2, S)["dis_encoded"] if (2, S) in TABLE else ImageDiscriminator(S, 2)
    with torch.no_grad():
        rf, _ = d(torch.randn(1, 3, S, S))
    assert rf.shape[-1] == hw
    ring = torch.ones(hw, hw, dtype=torch.bool)
    ring[1:-1, 1:-1] = False
    assert torch.all(rf[..., ring] == 0)
    assert torch.all(rf[..., ~ring] != 0)


def test_noise_layer_train_vs_eval():
    layer = GaussianNoiseLayer()
    x = torch.zeros(4, 3, 5, 5)
    layer.train()
    torch.manual_seed(0)
    a = layer(x)
    torch.manual_seed(0)
    b = layer(x)
    assert not torch.equal(a, x)
    assert torch.equal(a, b)  # seeded global RNG -> reproducible noise
    assert 0.5 < a.std().item() < 1.5
    layer.eval()
    assert layer(x) is x


def test_content_encoder_noise_only_in_training():
    enc = ContentEncoder()
    init_conv_weights(enc)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        enc.eval()
        assert torch.equal(enc(x), enc(x))
        enc.train()
        noisy1, noisy2 = enc(x), enc(x)
    assert not torch.equal(noisy1, noisy2)
    assert noisy1.shape == (2, 256, 8, 8)


def test_leaky_relu_conv_instance_norm_really_normalises():
    torch.manual_seed(0)
    plain = LeakyReLUConv2d(3, 8, 3, 1, 1, norm="none")
    inst = LeakyReLUConv2d(3, 8, 3, 1, 1, norm="instance")
    inst.load_state_dict(plain.state_dict())  # same weights, only the norm differs
    x = torch.randn(2, 3, 16, 16) * 5 + 3
    with torch.no_grad():
        y_plain, y_inst = plain(x), inst(x)
        pre = inst.model[1](inst.model[0](x))  # conv output before IN
        normed = inst.model[2](pre)
    assert not torch.allclose(y_plain, y_inst)
    assert any(isinstance(m, nn.InstanceNorm2d) for m in inst.modules())
    assert not any(isinstance(m, nn.InstanceNorm2d) for m in plain.modules())
    assert torch.allclose(normed.mean(dim=(2, 3)), torch.zeros(2, 8), atol=1e-5)
    assert torch.allclose(normed.var(dim=(2, 3), unbiased=False), torch.ones(2, 8), atol=1e-3)
    with pytest.raises(ValueError):
        LeakyReLUConv2d(3, 8, 3, 1, 1, norm="batch")


def test_layer_norm_and_conv_transpose_block():
    ln = LayerNorm(4)
    x = torch.randn(3, 4, 5, 5) * 2 + 1
    y = ln(x)
    flat = y.flatten(1)
    assert torch.allclose(flat.mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(flat.var(1, unbiased=False), torch.ones(3), atol=1e-3)
    assert n_params(ln) == 8
    up = ReLUINSConvTranspose2d(4, 6)
    assert up(x).shape == (3, 6, 10, 10)
    assert ReLUINSConvTranspose2d(4, 6, stride=1)(x).shape == (3, 6, 5, 5)


def test_layer_norm_is_the_same_in_channels_last():
    torch.manual_seed(0)
    ln = LayerNorm(5).double()
    nn.init.normal_(ln.weight)
    nn.init.normal_(ln.bias)
    x = torch.randn(3, 5, 4, 6, dtype=torch.double)
    expected = ln(x)
    got = ln(x.contiguous(memory_format=torch.channels_last))
    assert got.is_contiguous(memory_format=torch.channels_last)  # no round trip through NCHW
    assert torch.allclose(got, expected, atol=1e-12)
    # and against the definition: per-sample mean/variance over (C, H, W), per-channel affine
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    var = x.var(dim=(1, 2, 3), unbiased=False, keepdim=True)
    assert torch.allclose(got, (x - mean) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias, atol=1e-12)


def test_tile_and_init():
    v = torch.arange(6.0).reshape(2, 3)
    t = tile(v, 4, 5)
    assert t.shape == (2, 3, 4, 5)
    assert torch.equal(t[:, :, 3, 2], v)

    torch.manual_seed(0)
    g = init_conv_weights(Generator(2))
    ws = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))])
    assert abs(ws.std().item() - 0.02) < 1e-3
    assert abs(ws.mean().item()) < 1e-3
    # Layer-norm affine parameters keep their identity init.
    for m in g.modules():
        if isinstance(m, LayerNorm):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


@pytest.mark.parametrize(
    "kernel,stride,padding,output_padding,h,w",
    [
        (3, 2, 1, 1, 5, 7),  # the generator's up-sampling layers, odd and even sizes
        (3, 1, 1, 0, 4, 4),  # double_convT's extra layer
        (1, 1, 0, 0, 6, 3),  # dec4
        (4, 2, 1, 0, 5, 5),
        (3, 2, 0, 1, 3, 4),
    ],
)
def test_conv_transpose_tiled_equals_convolving_the_tiled_map(kernel, stride, padding, output_padding, h, w):
    torch.manual_seed(0)
    conv = nn.ConvTranspose2d(6 + 4, 5, kernel, stride=stride, padding=padding, output_padding=output_padding).double()
    x = torch.randn(2, 6, h, w, dtype=torch.double, requires_grad=True)
    vec = torch.randn(2, 4, dtype=torch.double, requires_grad=True)
    reference = conv(torch.cat([x, tile(vec, h, w)], dim=1))
    fast = conv_transpose_tiled(conv, x, vec)
    assert fast.shape == reference.shape
    assert torch.allclose(fast, reference, atol=1e-12)
    upstream = torch.randn_like(reference)
    inputs = [x, vec, conv.weight, conv.bias]
    expected = torch.autograd.grad((reference * upstream).sum(), inputs)
    got = torch.autograd.grad((fast * upstream).sum(), inputs)
    for e, g in zip(expected, got):
        assert torch.allclose(g, e, atol=1e-12)


@pytest.mark.parametrize("double_convT", [False, True])
def test_generator_equals_the_official_concatenations(double_convT):
    """Generator.forward convolves the tiled z in closed form; the official formula concatenates."""
    torch.manual_seed(0)
    gen = init_conv_weights(Generator(2, nz=5, double_convT=double_convT, width=8)).double()
    z_c = torch.randn(3, 32, 6, 6, dtype=torch.double)
    z = torch.randn(3, 5, dtype=torch.double)
    code = torch.eye(2, dtype=torch.double)[[0, 1, 1]]

    def up(block, x):
        return block.model(x) if isinstance(block, ReLUINSConvTranspose2d) else block[1](block[0].model(x))

    out = gen.dec_share(z_c)
    out = gen.dec1(torch.cat([out, tile(code, 6, 6), tile(z, 6, 6)], dim=1))
    out = up(gen.dec2, torch.cat([out, tile(z, 6, 6)], dim=1))
    out = up(gen.dec3, torch.cat([out, tile(z, 12, 12)], dim=1))
    reference = gen.dec4(torch.cat([out, tile(z, 24, 24)], dim=1))
    assert torch.allclose(gen(z_c, z, code), reference, atol=1e-12)


def test_attribute_encoder_is_backbone_plus_heads():
    enc = AttributeEncoder(3, nz=8)
    assert isinstance(enc.backbone, AttributeBackbone)
    assert enc.backbone.model[1].in_channels == 6
    with torch.no_grad():
        feat = enc.backbone(torch.randn(2, 6, 32, 32))
        assert feat.shape == (2, 256)
        # The one-hot code changes the output: it really is injected.
        x = torch.randn(1, 3, 32, 32)
        mu_a, _ = enc(x, torch.tensor([[1.0, 0.0, 0.0]]))
        mu_b, _ = enc(x, torch.tensor([[0.0, 1.0, 0.0]]))
    assert not torch.allclose(mu_a, mu_b)
