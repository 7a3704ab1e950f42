"""EDM's recipe (Karras et al. 2022) on scikit-learn's 8×8 digits: the CPU-sized twin of
`vp_digits.py`.

Everything but the EDM design choices is `vp_digits`'s (network, batch, steps, optimizer, EMA),
so the two compare the designs at equal training: EDM's SDE σ(t) = t up to σ_max = 80, its
preconditioned denoiser, its loss (ln σ ~ N(−1.2, 1.2²), λ(σ) = 1/c_out²) and its deterministic
Heun sampler with 18 levels of the ρ = 7 schedule down to σ_min = 0.002 (35 evaluations).
σ_data stays EDM's 0.5 (the digits' std in [-1, 1] is 0.75).
"""
from configs import vp_digits


def get_config():
    config = vp_digits.get_config()
    sde = config.sde
    sde.name = "edmsde"
    sde.sigma_min, sde.sigma_max = 0.002, 80.0

    training = config.training
    training.loss = "edm"
    training.parametrization = "edm"
    training.sigma_data = 0.5
    training.p_mean, training.p_std = -1.2, 1.2

    sampling = config.sampling
    sampling.method = "heun"
    sampling.num_steps = 17          # intervals between 18 noise levels: 2·17 + 1 = 35 evaluations
    sampling.eps = 0.002             # σ_min (time is σ on this SDE)
    sampling.time_schedule = "edm"
    sampling.rho = 7.0
    sampling.s_churn = 0.0

    # Times are noise levels here: the classifier's levels span what VP's 0.05 … 0.75 do.
    config.classifier.eps = 0.002
    config.classifier.eval_t = (0.1, 1.0, 3.0, 20.0)
    return config
