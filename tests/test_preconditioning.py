"""EDM's preconditioning coefficients against Karras et al. 2022, Table 1 and App. B.6."""
import math

import pytest
import torch

from models.preconditioning import SIGMA_DATA, check_sigma_data, edm_coefficients

f64 = torch.float64
SIGMAS = [0.002, 0.05, 0.5, 1.0, 7.3, 80.0]


@pytest.mark.parametrize("sigma_data", [0.5, 0.2])
def test_coefficients_are_table_1(sigma_data):
    """c_skip = σ_d²/(σ² + σ_d²), c_out = σ·σ_d/√(σ² + σ_d²), c_in = 1/√(σ² + σ_d²), c_noise = ¼ ln σ,
    written out here per σ with the math module."""
    coefficients = edm_coefficients(torch.tensor(SIGMAS, dtype=f64), sigma_data)
    for i, sigma in enumerate(SIGMAS):
        total = sigma * sigma + sigma_data * sigma_data
        expected = (sigma_data ** 2 / total, sigma * sigma_data / math.sqrt(total),
                    1 / math.sqrt(total), math.log(sigma) / 4)
        got = tuple(c[i].item() for c in coefficients)
        assert got == pytest.approx(expected, rel=1e-14, abs=0)


def test_at_sigma_data_the_skip_and_the_network_share_the_output():
    c_skip, c_out, c_in, c_noise = edm_coefficients(torch.tensor([SIGMA_DATA], dtype=f64))
    assert SIGMA_DATA == 0.5   # Table 1's σ_data for CIFAR-10 in [-1, 1]
    assert c_skip.item() == pytest.approx(0.5)
    assert c_out.item() == pytest.approx(SIGMA_DATA / math.sqrt(2))
    assert c_in.item() == pytest.approx(1 / (SIGMA_DATA * math.sqrt(2)))
    assert c_noise.item() == pytest.approx(math.log(0.5) / 4)


def test_input_and_training_target_have_unit_variance():
    """App. B.6: for data of std σ_d and noise n ~ N(0, σ²), Var[c_in·(y + n)] = 1 and the
    network's target F* = (y − c_skip·(y + n))/c_out has Var = 1 (eq. 7's requirements), and c_skip
    minimises Var[F*] (so c_out, eq. 138, is the smallest output scale)."""
    sigma = torch.tensor(SIGMAS, dtype=f64)
    for sigma_data in (0.5, 0.2):
        c_skip, c_out, c_in, _ = edm_coefficients(sigma, sigma_data)
        input_var = c_in ** 2 * (sigma_data ** 2 + sigma ** 2)
        target_var = ((1 - c_skip) ** 2 * sigma_data ** 2 + c_skip ** 2 * sigma ** 2) / c_out ** 2
        torch.testing.assert_close(input_var, torch.ones_like(sigma), rtol=1e-13, atol=0)
        torch.testing.assert_close(target_var, torch.ones_like(sigma), rtol=1e-13, atol=0)
        # d/dc [(1 − c)²σ_d² + c²σ²] = 0 at c = c_skip.
        derivative = -2 * (1 - c_skip) * sigma_data ** 2 + 2 * c_skip * sigma ** 2
        torch.testing.assert_close(derivative, torch.zeros_like(sigma), rtol=0, atol=1e-12)


@pytest.mark.parametrize("value", [0.0, -0.5, float("inf"), float("nan"), True, "0.5"])
def test_sigma_data_must_be_positive(value):
    with pytest.raises(ValueError, match="sigma_data must be a positive number"):
        check_sigma_data(value)
