"""Likelihoods: log p_eps by the probability-flow ODE (`probability_flow`, with the adaptive
DPM-Solver in `dpm`), bits/dim (`bpd`), DDPM's variational bound (`vlb`) and the flow's latent
codes (`encode`)."""
