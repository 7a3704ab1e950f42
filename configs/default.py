"""Defaults shared by every config; each config file overrides what it needs.

Sections: sde, model, training, optim, sampling, eval, data (schema in shared/DESIGN.md).
"""
import ml_collections
from ml_collections.config_dict import placeholder


def get_default_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    config.sde = sde = ml_collections.ConfigDict()
    sde.name = "vpsde"            # vpsde | subvpsde | vesde
    sde.beta_min = 0.1
    sde.beta_max = 20.0
    sde.schedule = "linear"       # linear | cosine (VP, sub-VP)
    sde.sigma_min = 0.01
    sde.sigma_max = 50.0
    sde.num_scales = 1000         # N, the discretisation steps

    config.training = training = ml_collections.ConfigDict()
    training.batch_size = 128
    training.n_iters = 1_300_001
    training.snapshot_freq = 50_000
    training.snapshot_freq_for_preemption = 10_000
    training.snapshot_sampling = True
    training.num_snapshot_samples = 64
    training.log_freq = 50
    training.eval_freq = 100
    training.continuous = True
    training.reduce_mean = False
    training.likelihood_weighting = False
    training.importance_sampling = False
    training.seed = 42
    training.nan_policy = "stop"  # stop | skip: what a non-finite loss does
    training.nan_skip_limit = 10  # skip: non-finite batches in a row before the run stops
    training.loss = "dsm"         # dsm | hybrid | vlb (hybrid, vlb: DDPM with model.learn_variance)
    training.vlb_weight = 0.001   # λ of L_simple + λ·L_vlb (loss=hybrid)
    training.timestep_sampling = "uniform"  # hybrid, vlb: uniform | loss_second_moment
    training.label_dropout = 0.1  # class-conditional models: P(label -> null label)

    config.optim = optim = ml_collections.ConfigDict()
    optim.optimizer = "Adam"
    optim.lr = 2e-4
    optim.beta1 = 0.9
    optim.eps = 1e-8
    optim.weight_decay = 0.0
    optim.warmup = 5000
    optim.grad_clip = 1.0         # max gradient norm; negative disables clipping

    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.method = "pc"        # see samplers.SAMPLERS
    sampling.predictor = "euler_maruyama"
    sampling.corrector = "none"
    sampling.snr = 0.16
    sampling.n_steps_each = 1
    sampling.noise_removal = True
    sampling.probability_flow = False
    sampling.rtol = 1e-5
    sampling.atol = 1e-5
    sampling.ode_method = "RK45"     # scipy solve_ivp method (method="ode")
    sampling.sde_method = "euler"    # torchsde Ito solver (method="sdeint"): euler | milstein | srk
    sampling.eps = 1e-3
    sampling.num_steps = 0        # 0: the method's default (the SDE's num_scales for pc & co.)
    # Options of particular methods; None keeps the method's own default.
    sampling.step_lr = placeholder(float)         # annealed_langevin
    sampling.adaptive = placeholder(bool)         # sdeint
    sampling.eta = placeholder(float)             # ddim: 0 deterministic, 1 ancestral
    sampling.time_schedule = placeholder(str)     # ddim, heun, dpm_solver: uniform|logsnr|edm|quadratic
    sampling.rho = placeholder(float)             # EDM ρ schedule
    sampling.s_churn = placeholder(float)         # heun: stochastic churn
    sampling.s_tmin = placeholder(float)
    sampling.s_tmax = placeholder(float)
    sampling.s_noise = placeholder(float)
    sampling.order = placeholder(int)             # dpm_solver: 1, 2 or 3
    sampling.abstol = placeholder(float)          # adaptive_sde
    sampling.reltol = placeholder(float)
    sampling.safety = placeholder(float)
    sampling.variance = placeholder(str)          # ancestral: beta | posterior | learned
    # Class-conditional and guided sampling (--mode sample).
    sampling.class_label = -1     # the class of every sample; -1: classes in turn
    sampling.guidance_scale = 1.0  # classifier-free: s_∅ + γ(s_y − s_∅); 1 = conditional
    sampling.classifier_scale = 0.0  # classifier guidance: s + γ·∇log p_t(y | x) (0: off)
    sampling.task = "generate"    # generate | inpaint | colorize | superres | interpolate
    sampling.mask = "right_half"  # inpaint: right_half | bottom_half | center | random_pixels
    sampling.superres_factor = 2  # superres: the average-pooling factor of the observed images
    # inpaint / colorize / superres: how to condition (samplers.condition); the predictor,
    # corrector, snr, n_steps_each, eps, num_steps and noise_removal above apply as they can.
    sampling.condition_method = "replacement"  # replacement | smc | repaint | dps
    sampling.num_particles = 16                # smc: particles per image (cost K× one run)
    sampling.ess_threshold = placeholder(float)  # smc: resample when ESS < this·K (0.5)
    sampling.lookahead = placeholder(str)        # smc: predictive | tweedie
    sampling.data_std = placeholder(float)       # smc, tweedie look-ahead: data scale (1.0)
    sampling.jump_length = placeholder(int)      # repaint: j (10)
    sampling.jump_n_sample = placeholder(int)    # repaint: r (10)
    sampling.dps_scale = placeholder(float)      # dps: step size ζ (1.0)

    config.eval = evaluate = ml_collections.ConfigDict()
    evaluate.batch_size = 256
    evaluate.enable_bpd = True
    evaluate.bpd_dataset = "test"  # test | train
    evaluate.bpd_num_examples = 0  # 0: the whole split
    evaluate.bpd_repeats = 1       # dequantization draws per example
    evaluate.likelihood_eps = 1e-5
    evaluate.rtol = 1e-5
    evaluate.atol = 1e-5
    evaluate.divergence = "rademacher"
    evaluate.enable_sampling = False
    evaluate.num_samples = 64
    evaluate.enable_fid = False    # needs enable_sampling and a local Inception file:
    evaluate.inception_path = ""   # TorchScript inception-2015-12-05.pt (see evaluation/fid.py)
    evaluate.seed = 0
    evaluate.enable_vlb = False    # DDPM variational bound (bits/dim) beside the ODE's (VP chain)
    evaluate.vlb_num_timesteps = 0  # 0: the exact sum over all N steps; K: unbiased K-step estimate

    # Time-conditional classifier for classifier guidance (--mode train_classifier); images use
    # the encoder fields, vectors `width`. Labels follow the SDE (999·t for VP, σ(t) for VE).
    config.classifier = classifier = ml_collections.ConfigDict()
    classifier.nf = 32
    classifier.ch_mult = (1, 2, 2)     # channels nf·ch_mult[i] at resolution image_size / 2^i
    classifier.num_res_blocks = 1
    classifier.attn_resolutions = (8,)
    classifier.dropout = 0.1
    classifier.nonlinearity = "swish"
    classifier.width = 128             # vector data: MLP width
    classifier.batch_size = 128
    classifier.n_iters = 2000
    classifier.lr = 1e-3               # Adam, linear warm-up over `warmup` steps
    classifier.warmup = 100
    classifier.eps = 1e-3              # t ~ U(eps, T)
    classifier.log_freq = 50
    classifier.eval_freq = 500
    classifier.snapshot_freq = 500
    classifier.eval_t = (0.05, 0.25, 0.5, 0.75)  # test accuracy at these times
    classifier.eval_num_examples = 0   # 0: the whole test split
    classifier.seed = 42

    config.data = data = ml_collections.ConfigDict()
    data.dataset = "CIFAR10"
    data.root = "data"             # holds cifar-10-batches-py/
    data.download = False
    data.image_size = 32
    data.num_channels = 3
    data.centered = False          # True: [-1, 1], False: [0, 1]
    data.random_flip = True
    data.uniform_dequantization = False
    data.dim = 2                   # vector data (toy sets)
    data.num_train = 50_000
    data.num_test = 10_000
    data.seed = 0

    config.model = ml_collections.ConfigDict()
    return config
