"""Fixed-seed digests of every sampler, likelihood and conditioning method on the exact mixture.

    OMP_NUM_THREADS=1 python benchmarks/sampler_digest.py > digest.txt   (on two checkouts; diff)

A refactoring of `samplers/` must leave every line unchanged: each prints the NFE and a hash of
the float64 result of one run from fixed generators, on VP and VE, for every registered method
at its defaults (the chain methods at 40 steps), a few non-default options, the likelihood by
both solvers and divergences, encode / decode, every conditioning method, inpainting and DDPM's
bound. A method or option that a checkout does not know prints ERR with the first words of the
error instead.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]      # the project's `samplers`, not benchmarks/samplers.py

import samplers  # noqa: E402
import sde_lib  # noqa: E402
from models.analytic import GaussianMixture  # noqa: E402

MIXTURE = GaussianMixture([0.3, 0.7], [[-1.0, 0.5], [1.0, -0.5]], [0.05, 0.1])
CHAIN = {"pc": 40, "reverse_diffusion": 40, "euler_maruyama": 40, "ancestral": 40,
         "annealed_langevin": 20, "sdeint": 40}
VARIANTS = (("unipc", dict(variant="bh1")), ("ddim", dict(eta=1.0)),
            ("heun", dict(s_churn=10.0)), ("dpm_solver", dict(order=3, num_steps=10)),
            ("dpm_solver_sde", dict(order=3)),
            ("pc", dict(predictor="ancestral", corrector="ald", num_steps=20)))


def digest(*values) -> str:
    h = hashlib.sha256()
    for value in values:
        h.update(value.detach().double().cpu().numpy().tobytes() if torch.is_tensor(value)
                 else repr(value).encode())
    return h.hexdigest()[:16]


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def attempt(label: str, run) -> None:
    try:
        nfe, values = run()
        print(label, nfe, digest(*values))
    except Exception as err:  # a method this checkout lacks: say so and go on
        print(label, "ERR", type(err).__name__, str(err)[:60])


def sampling_rows(name: str, sde) -> None:
    score = MIXTURE.score_fn(sde)

    def run(method, options):
        result = samplers.sample(score, sde, (16, 2), method, generator=seeded(0),
                                 dtype=torch.float64, **options)
        return result.nfe, (result.x,)
    for method in sorted(samplers.SAMPLERS):
        options = {"num_steps": CHAIN[method]} if method in CHAIN else {}
        attempt(f"{name} {method}", lambda: run(method, options))
    for method, options in VARIANTS:
        attempt(f"{name} {method} {options}", lambda: run(method, options))


def likelihood_rows(name: str, sde) -> None:
    score, x = MIXTURE.score_fn(sde), MIXTURE.sample(8, seeded(1)).double()
    for solver in ("RK45", "dpm_solver_23"):
        for divergence in ("exact", "rademacher"):
            def run():
                result = samplers.log_likelihood(score, sde, x, ode_method=solver,
                                                 divergence=divergence, generator=seeded(2))
                return result.nfe, (result.logp, result.z)
            attempt(f"{name} log_likelihood {solver} {divergence}", run)

    def codes():
        encoded = samplers.encode(score, sde, x)
        return encoded.nfe, (encoded.z, samplers.decode(score, sde, encoded.z).x)
    attempt(f"{name} encode/decode", codes)


def conditioning_rows(name: str, sde) -> None:
    score, x = MIXTURE.score_fn(sde), MIXTURE.sample(8, seeded(1)).double()
    operator = samplers.Dense(torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    extra = {"smc": dict(num_particles=4), "repaint": dict(jump_length=3, jump_n_sample=2)}
    for method in sorted(samplers.CONDITION_METHODS):
        def run():
            result = samplers.condition(score, sde, x[:, :1], operator, method=method,
                                        noise_std=0.1 if method in ("smc", "dps") else 0.0,
                                        generator=seeded(3), num_steps=20,
                                        **extra.get(method, {}))
            return result.nfe, (result.x,)
        attempt(f"{name} condition {method}", run)

    def inpaint():
        mask = torch.tensor([[1.0, 0.0]], dtype=torch.float64).expand(8, 2)
        result = samplers.inpaint(score, sde, x, mask, generator=seeded(4), num_steps=20)
        return result.nfe, (result.x,)
    attempt(f"{name} inpaint", inpaint)


def main() -> None:
    torch.set_num_threads(1)
    for name, sde in (("vp", sde_lib.VPSDE(N=100)), ("ve", sde_lib.VESDE(N=100))):
        sampling_rows(name, sde)
        likelihood_rows(name, sde)
        conditioning_rows(name, sde)
    sde = sde_lib.VPSDE(N=50)
    x0 = MIXTURE.sample(4, seeded(5)).double().clamp(-1, 1)

    def bound():
        result = samplers.vlb_bits_per_dim(MIXTURE.score_fn(sde), sde, x0, generator=seeded(6),
                                           num_timesteps=10)
        return "-", [v for v in result if torch.is_tensor(v)]
    attempt("vp vlb_bits_per_dim", bound)


if __name__ == "__main__":
    main()
