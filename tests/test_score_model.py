"""ScoreModel: label and output conventions, checked with networks whose optimal output is known.

For Gaussian data N(μ, s²I) the kernel x_t = a·x_0 + σ·ε gives p_t = N(aμ, (a²s² + σ²)I), so
the optimal noise prediction is ε̂ = σ(x − aμ)/(a²s² + σ²) and the score −(x − aμ)/(a²s² + σ²).
An "oracle" network computes these from its label alone; ScoreModel must turn them into the
exact score of `models.analytic`.
"""
import pytest
import torch
import torch.nn as nn

import sde_lib
from models.analytic import GaussianMixture
from models.embeddings import sigma_table
from models.mlp import MLP
from models.score_model import ScoreModel, default_parametrization, resolve_parametrization

MU, VAR = 0.7, 0.3


class GaussianOracle(nn.Module):
    """Optimal network output for N(MU, VAR·I) data, given only (x, labels)."""

    def __init__(self, sde, label_kind: str):
        super().__init__()
        self.sde, self.label_kind = sde, label_kind

    def kernel(self, labels):
        if self.label_kind == "999t":          # continuous VP / sub-VP
            return self.sde.marginal_coeffs(labels / 999.0)
        if self.label_kind == "index":         # discrete VP: float label, chain index ⌊label⌋
            return self.sde.discrete_marginal_coeffs(labels.long())
        if self.label_kind == "sigma":         # continuous VE
            return torch.ones_like(labels), labels
        table = sigma_table(self.sde.sigma_min, self.sde.sigma_max, self.sde.N)  # discrete VE
        return torch.ones(labels.shape, dtype=torch.float64), table[labels]

    def forward(self, x, labels):
        a, std = (sde_lib.append_dims(c.to(torch.float64), x.ndim) for c in self.kernel(labels))
        score = -(x - a * MU) / (a ** 2 * VAR + std ** 2)
        return score if self.label_kind in ("sigma", "sigma_index") else -std * score


def _gaussian(dim):
    return GaussianMixture([1.0], [[MU] * dim], [VAR])


def _x(shape=(6, 3, 4, 4)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


T_CONT = torch.tensor([1e-5, 1e-3, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64)


@pytest.mark.parametrize("name, label_kind", [("vp", "999t"), ("vp_cosine", "999t"),
                                              ("subvp", "999t"), ("ve", "sigma")])
def test_continuous_conventions_give_the_exact_score(name, label_kind):
    sde = {"vp": sde_lib.VPSDE(), "vp_cosine": sde_lib.VPSDE(schedule="cosine"),
           "subvp": sde_lib.subVPSDE(), "ve": sde_lib.VESDE()}[name]
    model = ScoreModel(GaussianOracle(sde, label_kind), sde, continuous=True)
    x = _x()
    expected = _gaussian(48).score_fn(sde)(x, T_CONT)
    torch.testing.assert_close(model(x, T_CONT), expected, rtol=1e-9, atol=1e-9)


def test_discrete_vp_uses_the_ddpm_chain():
    sde = sde_lib.VPSDE(N=1000)
    model = ScoreModel(GaussianOracle(sde, "index"), sde, continuous=False)
    t = torch.tensor([0.0, 1.0, 99.0, 499.0, 998.0, 999.0], dtype=torch.float64) / 999
    x = _x()
    assert torch.equal(model.labels(t), t * 999)  # float labels, not rounded
    a = torch.sqrt(torch.cumprod(1 - torch.linspace(0.1e-3, 20e-3, 1000, dtype=torch.float64), 0))
    i = torch.round(t * 999).long()  # t·999 lands on integers here
    a_i, std_i = sde_lib.append_dims(a[i], 4), sde_lib.append_dims(torch.sqrt(1 - a[i] ** 2), 4)
    expected = -(x - a_i * MU) / (a_i ** 2 * VAR + std_i ** 2)
    torch.testing.assert_close(model(x, t), expected, rtol=1e-9, atol=1e-9)
    # The DDPM chain is a discretisation of the VP SDE: close to the continuous score.
    continuous = _gaussian(48).score_fn(sde)(x, t)
    torch.testing.assert_close(model(x, t)[1:], continuous[1:], rtol=2e-2, atol=1e-2)


def test_discrete_ve_uses_smld_indices():
    sde = sde_lib.VESDE(N=100)
    model = ScoreModel(GaussianOracle(sde, "sigma_index"), sde, continuous=False)
    t = torch.tensor([0, 1, 10, 50, 98, 99], dtype=torch.float64) / 99
    labels = model.labels(t)
    assert labels.dtype == torch.int64 and labels.tolist() == [99, 98, 89, 49, 1, 0]
    x = _x()
    # On the grid t_j = j/(N−1), SMLD's σ at index N−1−j is σ(t_j): the continuous score.
    expected = _gaussian(48).score_fn(sde)(x, t)
    torch.testing.assert_close(model(x, t), expected, rtol=1e-9, atol=1e-9)


def test_labels_match_the_reference_conventions():
    t = torch.tensor([1e-5, 0.1, 0.5, 1.0])
    vp = ScoreModel(nn.Identity(), sde_lib.VPSDE(), continuous=True)
    torch.testing.assert_close(vp.labels(t), t * 999)
    ve = ScoreModel(nn.Identity(), sde_lib.VESDE(), continuous=True)
    torch.testing.assert_close(ve.labels(t), 0.01 * 5000.0 ** t)
    assert vp.parametrization == "noise" and ve.parametrization == "score"


@pytest.mark.parametrize("sde, expected", [
    (sde_lib.VPSDE(), "noise"), (sde_lib.subVPSDE(), "noise"),
    (sde_lib.VPSDE(schedule="cosine"), "noise"), (sde_lib.VESDE(), "score")])
def test_default_parametrization(sde, expected):
    assert default_parametrization(sde) == expected


def test_vector_data_scalar_time_and_mode():
    sde = sde_lib.VPSDE()
    oracle = GaussianOracle(sde, "999t").train()
    model = ScoreModel(oracle, sde)
    x = _x((5, 2))
    t = torch.tensor(0.3, dtype=torch.float64)
    expected = _gaussian(2).score_fn(sde)(x, t.expand(5))
    torch.testing.assert_close(model(x, t), expected, rtol=1e-9, atol=1e-9)
    assert oracle.training  # calling the model leaves the network's mode alone


def test_unknown_parametrization_raises():
    with pytest.raises(ValueError, match=r"expected one of \['noise', 'score', 'edm'\]"):
        ScoreModel(nn.Identity(), sde_lib.VPSDE(), parametrization="eps")


# Learned variances, class labels and the chain's times.

class _TwoHeaded(nn.Module):
    """A stand-in network: output [x·label-independent noise guess, v_raw], optionally by class."""
    num_classes, learn_variance = 2, True

    def forward(self, x, labels, y=None):
        shift = 0.0 if y is None else y.to(x.dtype)[:, None]
        return torch.cat([0.5 * x + shift, torch.tanh(x)], dim=1)


def test_forward_with_variance_splits_the_output():
    sde = sde_lib.VPSDE()
    model = ScoreModel(_TwoHeaded(), sde)
    x, t = torch.randn(5, 3, dtype=torch.float64), torch.rand(5, dtype=torch.float64) * 0.9 + 0.05
    score, v = model.forward_with_variance(x, t)
    std = sde.marginal_coeffs(t)[1][:, None]
    torch.testing.assert_close(score, -0.5 * x / std)
    torch.testing.assert_close(v, (torch.tanh(x) + 1) / 2)
    torch.testing.assert_close(model(x, t), score)
    y = torch.tensor([0, 1, 1, 0, 2])
    torch.testing.assert_close(model(x, t, y), -(0.5 * x + y[:, None]) / std)
    assert model.num_classes == 2 and model.null_label == 2 and model.learn_variance


def test_learned_variance_needs_the_noise_parametrisation():
    with pytest.raises(ValueError, match="learn_variance=True needs the 'noise'"):
        ScoreModel(_TwoHeaded(), sde_lib.VESDE())


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_chain_time_matches_the_discrete_chain(schedule):
    sde = sde_lib.VPSDE(schedule=schedule, N=100)
    index = torch.arange(100)
    discrete = ScoreModel(_TwoHeaded(), sde, continuous=False)
    torch.testing.assert_close(discrete.chain_time(index), index.double() / 99)
    # Continuous models: the continuous marginal at chain_time(i) is the chain's marginal at i.
    t = ScoreModel(_TwoHeaded(), sde, continuous=True).chain_time(index)
    mean_coeff, std = sde.marginal_coeffs(t)
    torch.testing.assert_close(mean_coeff, sde.sqrt_alphas_cumprod, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(std, sde.sqrt_1m_alphas_cumprod, rtol=1e-9, atol=1e-12)


# The "edm" parametrisation (Karras et al. 2022, Table 1) on every SDE.

MIXTURE = GaussianMixture([0.3, 0.7], [[1.0, -0.5, 0.2, 2.0], [-1.0, 0.5, 0.0, -0.3]],
                          [[0.05, 0.2, 0.3, 0.1], [0.3, 0.02, 0.1, 0.4]])


class PreconditionedOracle(nn.Module):
    """The raw network F that makes c_skip·x̂ + c_out·F(c_in·x̂; c_noise) the mixture's exact
    denoiser: σ and x̂ are recovered from (input, label) with Table 1's formulas written out here,
    independently of `models.preconditioning`."""

    def __init__(self, sigma_data, embedding_type="positional"):
        super().__init__()
        self.sigma_data, self.embedding_type = sigma_data, embedding_type

    def forward(self, inputs, labels):
        c_noise = torch.log(labels) if self.embedding_type == "fourier" else labels
        sigma = torch.exp(4 * c_noise)                                    # c_noise = ¼ ln σ
        total = sde_lib.append_dims(sigma ** 2 + self.sigma_data ** 2, inputs.ndim)
        x_hat = inputs * total.sqrt()                                     # c_in = 1/√(σ² + σ_d²)
        c_skip = self.sigma_data ** 2 / total
        c_out = sde_lib.append_dims(sigma, inputs.ndim) * self.sigma_data / total.sqrt()
        return (MIXTURE.denoiser(x_hat, sigma) - c_skip * x_hat) / c_out


def _edm_times(sde, n=7, eps=1e-3):
    """From eps to T. A denoiser carries the score as D − x̂ = σ²·a·s, which float64 resolves to
    ~1e-16/σ² relative: at t = 1e-5, sub-VP's σ = 1e-6 would leave 1e-4 (the oracle's own error)."""
    return eps + (sde.T - eps) * torch.linspace(0, 1, n, dtype=torch.float64)


@pytest.mark.parametrize("embedding_type", ["positional", "fourier"])
@pytest.mark.parametrize("sigma_data", [0.5, 0.3])
def test_edm_preconditioned_exact_denoiser_gives_the_exact_score(any_sde, embedding_type,
                                                                 sigma_data):
    model = ScoreModel(PreconditionedOracle(sigma_data, embedding_type), any_sde,
                       parametrization="edm", sigma_data=sigma_data)
    t = _edm_times(any_sde)
    x = _x((7, 1, 2, 2)) * 2
    torch.testing.assert_close(model(x, t), MIXTURE.score(x, t, any_sde), rtol=1e-8, atol=1e-8)
    # E[x_0 | x_t] = D(x/a; σ), σ = std/a, the same function of the scaled input for every SDE.
    mean_coeff, std = any_sde.marginal_coeffs(t)
    expected = MIXTURE.denoiser(x / mean_coeff[:, None, None, None], std / mean_coeff)
    torch.testing.assert_close(model.denoise(x, t), expected, rtol=1e-8, atol=1e-8)


def test_edm_denoiser_takes_edm_noise_levels(any_sde):
    model = ScoreModel(PreconditionedOracle(0.5), any_sde, parametrization="edm")
    sigma = torch.tensor([0.02, 0.3, 1.0, 5.0, 40.0], dtype=torch.float64)
    x_hat = _x((5, 4))
    torch.testing.assert_close(model.denoiser(x_hat, sigma), MIXTURE.denoiser(x_hat, sigma),
                               rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(model.denoiser(x_hat, 0.3), MIXTURE.denoiser(x_hat, 0.3),
                               rtol=1e-8, atol=1e-8)


def test_edm_labels_are_c_noise_on_edmsde():
    sde = sde_lib.EDMSDE()
    t = torch.tensor([0.002, 0.5, 80.0], dtype=torch.float64)
    positional = ScoreModel(PreconditionedOracle(0.5), sde, parametrization="edm")
    fourier = ScoreModel(PreconditionedOracle(0.5, "fourier"), sde, parametrization="edm")
    torch.testing.assert_close(positional.labels(t), torch.log(t) / 4)
    torch.testing.assert_close(fourier.labels(t), t ** 0.25)   # the network embeds its log


def test_denoise_of_the_other_parametrisations_is_tweedie():
    sde = sde_lib.VPSDE()
    model = ScoreModel(GaussianOracle(sde, "999t"), sde)
    t, x = T_CONT[1:], _x((5, 48))
    mean_coeff, std = sde.marginal_coeffs(t)
    expected = _gaussian(48).denoiser(x / mean_coeff[:, None], std / mean_coeff)
    torch.testing.assert_close(model.denoise(x, t), expected, rtol=1e-9, atol=1e-9)


def test_edm_parametrisation_needs_continuous_time_and_an_unscaled_network():
    sde = sde_lib.EDMSDE()
    with pytest.raises(ValueError, match="continuous"):
        ScoreModel(PreconditionedOracle(0.5), sde, continuous=False, parametrization="edm")
    with pytest.raises(ValueError, match="scale_by_sigma=False"):
        ScoreModel(MLP(dim=2, scale_by_sigma=True, embedding_type="fourier"), sde,
                   parametrization="edm")
    with pytest.raises(ValueError, match="sigma_data"):
        ScoreModel(PreconditionedOracle(0.5), sde, parametrization="edm", sigma_data=0.0)
    assert ScoreModel(MLP(dim=2, embedding_type="fourier"), sde, parametrization="edm").log_labels


def test_edm_network_runs_under_the_sampling_autocast():
    """`autocast_dtype` (sampling.precision) reaches the network of the "edm" parametrisation too;
    bf16's 8-bit mantissa keeps the score within a few per cent of its scale, in x's dtype."""
    torch.manual_seed(0)
    net = MLP(dim=2, embedding_type="fourier")
    for p in net.parameters():          # away from the zero initialisation of the last layer
        p.data.add_(0.1 * torch.randn_like(p))
    model = ScoreModel(net, sde_lib.EDMSDE(), parametrization="edm").eval()
    x, t = torch.randn(64, 2), torch.rand(64) * 10 + 0.01
    with torch.no_grad():
        exact = model(x, t)
        model.autocast_dtype = torch.bfloat16
        approx = model(x, t)
    assert approx.dtype == torch.float32
    assert not torch.equal(approx, exact), "autocast did not reach the network"
    assert (approx - exact).abs().max() < 0.05 * exact.abs().max()


def test_resolve_parametrization_is_the_default_unless_asked():
    assert resolve_parametrization(sde_lib.EDMSDE()) == "score"   # a ≡ 1, like VE
    assert resolve_parametrization(sde_lib.VPSDE(), "") == "noise"
    assert resolve_parametrization(sde_lib.VPSDE(), "edm") == "edm"
    with pytest.raises(ValueError, match="parametrization"):
        resolve_parametrization(sde_lib.VPSDE(), "v")
