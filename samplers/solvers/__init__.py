"""Generation solvers: each module registers its methods in `samplers.SAMPLERS` on import.

pc (predictor–corrector, with `predictors` and `correctors`), langevin (annealed Langevin), ode
(scipy), sdeint (torchsde), ddim, heun, dpm_solver (DPM-Solver++ and its SDE variant), unipc, and
the adaptive-step solvers adaptive_sde and dpm_adaptive.
"""
