"""NCSN++ / DDPM++ / DDPM / MLP: parameter counts, every option at 16×16 and 32×32, errors."""
import pytest
import torch

from models import DDPM, MLP, NCSNpp, build_model, get_preset

# The paper's CIFAR-10 networks (Song et al. 2021, Table 3 / App. H; Ho et al. 2020).
PAPER_PARAMETER_COUNTS = {
    "ddpmpp_continuous": 61_804_419,
    "ncsnpp_continuous": 62_758_915,
    "ddpmpp_deep_continuous": 106_632_579,
    "ncsnpp_deep_continuous": 107_587_075,
    "ddpm": 35_218_947,
}


@pytest.mark.parametrize("preset", sorted(PAPER_PARAMETER_COUNTS))
def test_paper_parameter_counts(preset):
    with torch.device("meta"):  # no memory, no initialisation cost
        net = build_model(get_preset(preset))
    assert sum(p.numel() for p in net.parameters()) == PAPER_PARAMETER_COUNTS[preset]


def test_fourier_features_are_frozen():
    with torch.device("meta"):
        net = build_model(get_preset("ncsnpp_continuous"))
    frozen = [name for name, p in net.named_parameters() if not p.requires_grad]
    assert frozen == ["embed.fourier.W"]


# A small network; each case below changes one option from this base.
BASE = dict(nf=16, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(), dropout=0.0,
            init_scale=1.0, num_scales=1000)
OPTION_CASES = {
    "ddpmpp": dict(),
    "nf_ch_mult_blocks": dict(nf=8, ch_mult=(1, 2, 1), num_res_blocks=2),
    "attn_at_top": dict(attn_resolutions="top"),
    "attn_at_bottom": dict(attn_resolutions="bottom"),
    "dropout": dict(dropout=0.1),
    "init_scale_0": dict(init_scale=0.0),
    "no_resamp_conv": dict(resblock_type="ddpm", resamp_with_conv=False),
    "unconditional": dict(conditional=False),
    "fir": dict(fir=True),
    "fir_kernel_2taps": dict(fir=True, fir_kernel=(1, 1)),
    "fir_kernel_odd": dict(fir=True, fir_kernel=(1, 2, 1), resblock_type="ddpm"),
    "no_skip_rescale": dict(skip_rescale=False),
    "resblock_ddpm": dict(resblock_type="ddpm"),
    "resblock_ddpm_fir": dict(resblock_type="ddpm", fir=True),
    "progressive_output_skip": dict(progressive="output_skip"),
    "progressive_output_skip_fir": dict(progressive="output_skip", fir=True),
    "progressive_residual": dict(progressive="residual"),
    "progressive_residual_fir": dict(progressive="residual", fir=True, resblock_type="ddpm"),
    "input_skip_sum": dict(progressive_input="input_skip", progressive_combine="sum"),
    "input_skip_cat": dict(progressive_input="input_skip", progressive_combine="cat"),
    "input_skip_cat_fir": dict(progressive_input="input_skip", progressive_combine="cat", fir=True),
    "input_residual": dict(progressive_input="residual"),
    "input_residual_cat": dict(progressive_input="residual", progressive_combine="cat"),
    "fourier": dict(embedding_type="fourier", fourier_scale=16.0),
    "fourier_scale_by_sigma": dict(embedding_type="fourier", scale_by_sigma=True),
    "positional_scale_by_sigma": dict(scale_by_sigma=True),
    "uncentered": dict(centered=False),
    "ncsnpp_paper": dict(fir=True, progressive_input="residual", embedding_type="fourier",
                         scale_by_sigma=True, centered=False, init_scale=0.0),
    "all_progressive": dict(progressive="output_skip", progressive_input="input_skip",
                            progressive_combine="cat", fir=True, resblock_type="ddpm"),
}


def _labels(kwargs, batch):
    if kwargs.get("embedding_type") == "fourier":
        return torch.tensor([0.01, 0.3, 5.0, 50.0])[:batch]  # σ
    return torch.tensor([0.0, 10.5, 500.0, 999.0])[:batch]  # 999·t or an index


def _build(case, size):
    kwargs = dict(BASE, **OPTION_CASES[case])
    if kwargs["attn_resolutions"] in ("top", "bottom"):
        levels = len(kwargs["ch_mult"])
        kwargs["attn_resolutions"] = (size if kwargs["attn_resolutions"] == "top"
                                      else size // 2 ** (levels - 1),)
    torch.manual_seed(0)
    return NCSNpp(image_size=size, num_channels=3, **kwargs), kwargs


@pytest.mark.parametrize("size", [16, 32])
@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_ncsnpp_options_shape_and_gradients(case, size):
    net, kwargs = _build(case, size)
    x = torch.randn(3, 3, size, size, requires_grad=True)
    out = net(x, _labels(kwargs, 3))
    assert out.shape == x.shape and torch.isfinite(out).all()
    out.square().mean().backward()
    assert x.grad.abs().sum() > 0
    for name, p in net.named_parameters():
        if p.requires_grad:  # every layer takes part in the computation
            assert p.grad is not None, f"{name} gets no gradient"
            assert torch.isfinite(p.grad).all(), name


def test_options_change_the_network():
    """Each option is wired in: its network computes something else than the base one."""
    x = torch.randn(2, 3, 16, 16)
    base, _ = _build("ddpmpp", 16)
    base.eval()
    for case in ("fir", "no_skip_rescale", "uncentered", "positional_scale_by_sigma"):
        net, kwargs = _build(case, 16)
        net.load_state_dict(base.state_dict())  # same weights, other computation
        labels = _labels(kwargs, 2)
        assert not torch.allclose(net.eval()(x, labels), base(x, labels)), case


def test_channels_last_and_float64_agree():
    net, kwargs = _build("ncsnpp_paper", 16)
    net = net.double().eval()
    x = torch.randn(2, 3, 16, 16, dtype=torch.float64)
    labels = _labels(kwargs, 2).double()
    expected = net(x, labels)
    net_cl = net.to(memory_format=torch.channels_last)
    got = net_cl(x.to(memory_format=torch.channels_last), labels)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_ddpm_shapes_and_gradients():
    torch.manual_seed(0)
    net = DDPM(image_size=16, nf=32, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=(8,))
    x = torch.randn(2, 3, 16, 16, requires_grad=True)
    out = net(x, torch.tensor([0, 999]))
    assert out.shape == x.shape
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters())


def test_mlp_shapes_gradients_and_scale_by_sigma():
    torch.manual_seed(0)
    for embedding in ("positional", "fourier"):
        net = MLP(dim=2, width=32, num_res_blocks=2, nf=16, embedding_type=embedding,
                  init_scale=1.0)
        x = torch.randn(5, 2, requires_grad=True)
        labels = torch.rand(5) * 10 + 0.1
        out = net(x, labels)
        assert out.shape == (5, 2)
        out.square().sum().backward()
        assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    scaled = MLP(dim=2, width=32, nf=16, embedding_type="fourier", scale_by_sigma=True,
                 init_scale=1.0)
    unscaled = MLP(dim=2, width=32, nf=16, embedding_type="fourier", init_scale=1.0)
    unscaled.load_state_dict(scaled.state_dict())
    x, sigma = torch.randn(4, 2), torch.tensor([0.1, 1.0, 3.0, 40.0])
    torch.testing.assert_close(scaled(x, sigma) * sigma[:, None], unscaled(x, sigma))


def test_build_model_maps_config_fields():
    cfg = dict(get_preset("ncsnpp_continuous"), nf=16, ch_mult=[1, 2], num_res_blocks=1,
               attn_resolutions=[8], normalization="GroupNorm", attention_type="ddpm", conv_size=3)
    net = build_model(cfg, image_size=16)
    assert isinstance(net, NCSNpp) and net.resolutions == [16, 8]
    assert net.embedding_type == "fourier" and net.scale_by_sigma and not net.centered
    mlp = build_model({"name": "mlp", "dim": 3, "width": 8, "ema_rate": 0.999})
    assert isinstance(mlp, MLP) and mlp.dim == 3


@pytest.mark.parametrize("change, message", [
    (dict(name="ncsnv2"), "expected one of ['ddpm', 'mlp', 'ncsnpp']"),
    (dict(resblock_type="resnet"), "resblock_type 'resnet'; expected one of ['biggan', 'ddpm']"),
    (dict(progressive="skip"),
     "progressive 'skip'; expected one of ['none', 'output_skip', 'residual']"),
    (dict(progressive_input="x"), "progressive_input 'x'; expected one of ['none', 'input_skip'"),
    (dict(progressive_combine="mul"), "progressive_combine 'mul'; expected one of ['sum', 'cat']"),
    (dict(embedding_type="learned"),
     "embedding_type 'learned'; expected one of ['fourier', 'positional']"),
    (dict(nonlinearity="gelu"), "nonlinearity 'gelu'"),
    (dict(image_size=20), "image_size=20 must be divisible by 2^(len(ch_mult) - 1) = 8"),
    (dict(attn_resolutions=(12,)), "attn_resolutions [12] are not among"),
    (dict(normalization="InstanceNorm"),
     "normalization 'InstanceNorm'; expected one of ['groupnorm']"),
    (dict(nf_typo=3), "Unknown config.model field(s) ['nf_typo']"),
    (dict(image_size=None), "lacks the required field(s) ['image_size']"),
    (dict(fir=True, fir_kernel=[]), "fir_kernel must be a non-empty list"),
])
def test_bad_config_raises_value_error(change, message):
    cfg = dict(get_preset("ddpmpp_continuous"), nf=8, num_res_blocks=1)
    cfg.update(change)
    if cfg.get("image_size", 0) is None:
        del cfg["image_size"]
    with torch.device("meta"), pytest.raises(ValueError) as info:
        build_model(cfg)
    assert message in str(info.value)


def test_bad_input_shape_raises_value_error():
    net, _ = _build("ddpmpp", 16)
    with pytest.raises(ValueError, match="divisible by 2"):
        net(torch.randn(1, 3, 15, 15), torch.zeros(1))
    with pytest.raises(ValueError, match=r"shape \[B, 3, H, W\]"):
        net(torch.randn(1, 1, 16, 16), torch.zeros(1))
    with pytest.raises(ValueError, match=r"shape \[B, 2\]"):
        MLP(dim=2)(torch.randn(3, 4), torch.zeros(3))


# Class conditioning and learned variances.

def _small_nets(**kwargs):
    common = dict(image_size=8, num_channels=3, nf=32, ch_mult=(1, 2), num_res_blocks=1,
                  attn_resolutions=(4,), dropout=0.0)
    return {
        "ncsnpp": lambda: NCSNpp(**common, **kwargs),
        "ncsnpp_output_skip": lambda: NCSNpp(**common, progressive="output_skip", **kwargs),
        "ddpm": lambda: DDPM(**common, **kwargs),
    }


@pytest.mark.parametrize("name", ["ncsnpp", "ncsnpp_output_skip", "ddpm", "mlp"])
def test_class_labels_change_the_output_and_none_is_the_null_label(name):
    torch.manual_seed(0)
    if name == "mlp":
        net, x = MLP(dim=4, width=16, num_res_blocks=1, nf=8, init_scale=1.0, num_classes=3), \
            torch.randn(4, 4)
    else:
        net, x = _small_nets(num_classes=3)[name](), torch.randn(4, 3, 8, 8)
    # Output layers start near zero (init_scale 0 → 1e-10), so compare bitwise.
    labels = torch.full((4,), 100.0)
    y = torch.tensor([0, 1, 2, 3])
    out = net(x, labels, y)
    assert out.shape == x.shape
    other = net(x, labels, torch.tensor([1, 1, 2, 3]))
    assert not torch.equal(out[0], other[0]) and torch.equal(out[1:], other[1:])
    assert torch.equal(net(x, labels), net(x, labels, torch.full((4,), 3)))
    with pytest.raises(ValueError, match="class labels must lie in 0 … 3"):
        net(x, labels, torch.tensor([0, 1, 2, 4]))


def test_class_labels_to_an_unconditional_network_raise():
    net = MLP(dim=2, width=8, num_res_blocks=1, nf=8)
    with pytest.raises(ValueError, match="num_classes=0"):
        net(torch.zeros(2, 2), torch.zeros(2), torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("name", ["ncsnpp", "ncsnpp_output_skip", "ddpm", "mlp"])
def test_learn_variance_doubles_the_output_channels(name):
    if name == "mlp":
        net = MLP(dim=4, width=16, num_res_blocks=1, nf=8, learn_variance=True)
        x = torch.randn(2, 4)
    else:
        net, x = _small_nets(learn_variance=True)[name](), torch.randn(2, 3, 8, 8)
    out = net(x, torch.full((2,), 10.0))
    assert out.shape == (2, 2 * x.shape[1]) + x.shape[2:]
    out.sum().backward()


def test_unconditional_networks_keep_their_parameters():
    """num_classes=0 and learn_variance=False leave the architecture (and checkpoints) as before."""
    base = _small_nets()["ncsnpp"]()
    names = set(dict(base.named_parameters()))
    assert not any("class_embed" in n for n in names)
    cond = _small_nets(num_classes=10)["ncsnpp"]()
    extra = set(dict(cond.named_parameters())) - names
    assert extra == {"embed.class_embed.weight"}


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_classes=-1), "num_classes must be an integer >= 0"),
    (dict(num_classes=2, conditional=False), "needs conditional=True"),
    (dict(learn_variance=True, scale_by_sigma=True), "cannot be combined with scale_by_sigma"),
])
def test_bad_conditioning_options_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MLP(dim=2, **kwargs)
