"""score-sde command line: `python main.py --mode demo`.

The demo draws samples from a 2-D Gaussian mixture by reverse diffusion with the mixture's
exact score, and reports how well they match exact samples (mean exact log-density).
"""
import torch
from absl import app, flags

import sde_lib
from models.analytic import GaussianMixture

FLAGS = flags.FLAGS
flags.DEFINE_enum("mode", "demo", ["demo"], "What to run.")
flags.DEFINE_enum("sde", "vpsde", sorted(sde_lib.SDES), "Forward SDE.")
flags.DEFINE_integer("num_samples", 2000, "Number of samples.")
flags.DEFINE_integer("seed", 0, "Random seed.")


def demo(sde: sde_lib.SDE, num_samples: int, seed: int) -> None:
    """Reverse-diffusion sampling of a 2-D mixture with its exact score (Song et al. 2021, eq. 47)."""
    gm = GaussianMixture([0.3, 0.7], [[2.0, 2.0], [-1.0, -1.5]], [[0.05, 0.3], [0.3, 0.05]])
    gen = torch.Generator().manual_seed(seed)
    reverse = sde.reverse(gm.score_fn(sde))
    x = sde.prior_sampling((num_samples, 2), generator=gen, dtype=torch.float64)
    eps = 1e-3
    for t_value in torch.linspace(sde.T, eps, sde.N, dtype=torch.float64):
        t = t_value.expand(num_samples)
        f, G = reverse.discretize(x, t)
        x = x - f + G[:, None] * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    exact = gm.sample(num_samples, gen)
    print(f"SDE {type(sde).__name__}, {sde.N} reverse-diffusion steps, {num_samples} samples")
    print(f"  sample mean {x.mean(0).tolist()}  exact {gm.mean().tolist()}")
    print(f"  mean log p_0(x): samples {gm.log_prob(x).mean():.4f}  exact samples "
          f"{gm.log_prob(exact).mean():.4f} nats")


def main(argv):
    del argv
    demo(sde_lib.get_sde(FLAGS.sde), FLAGS.num_samples, FLAGS.seed)


if __name__ == "__main__":
    app.run(main)
