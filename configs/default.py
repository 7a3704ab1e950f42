"""Defaults shared by every config; each config file overrides what it needs.

Sections: sde, model, training, optim, sampling, eval, data (schema in shared/DESIGN.md).
"""
import ml_collections
from ml_collections.config_dict import placeholder


def get_default_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()

    config.sde = sde = ml_collections.ConfigDict()
    sde.name = "vpsde"            # vpsde | subvpsde | vesde | edmsde
    sde.beta_min = 0.1            # VP / sub-VP: β(0)
    sde.beta_max = 20.0           # VP / sub-VP: β(1)
    sde.schedule = "linear"       # linear | cosine (VP, sub-VP)
    sde.sigma_min = 0.01          # VE: smallest noise std; edmsde: the sampling floor (EDM: 0.002)
    sde.sigma_max = 50.0          # VE: largest noise std (prior std); edmsde: T = σ_max (EDM: 80)
    sde.num_scales = 1000         # N, the discretisation steps

    config.training = training = ml_collections.ConfigDict()
    training.batch_size = 128     # global batch (split over torchrun processes)
    training.n_iters = 1_300_001  # training steps in all (a rerun resumes up to it)
    training.snapshot_freq = 50_000  # steps between kept checkpoint_<step>.pth
    training.snapshot_freq_for_preemption = 10_000  # steps between rewrites of checkpoints-meta/
    training.snapshot_sampling = True  # write a sample grid at every snapshot
    training.num_snapshot_samples = 64  # samples in that grid
    # The grid's sampler: a sampling.method at its own defaults (evaluation/snapshots.py), or
    # "sampling" (config.sampling as it is); snapshot_num_steps > 0 sets its steps.
    training.snapshot_sampler = "dpm_solver"
    training.snapshot_num_steps = 0  # 0: the method's own (dpm_solver: 20 steps, 21 evaluations)
    training.snapshot_fd = False  # images below 32x32: fd of each grid in TensorBoard (snapshot/fd)
    training.log_freq = 50        # steps between TensorBoard scalars
    training.eval_freq = 100      # steps between test-batch losses
    training.continuous = True    # continuous time (else the SDE's N-step discrete chain)
    training.reduce_mean = False  # loss: mean over dimensions (else sum)
    training.likelihood_weighting = False  # λ(t) = g(t)² (Song et al. 2021b)
    training.importance_sampling = False  # with likelihood_weighting: t ∝ g²/σ²
    training.seed = 42            # initial weights, noise, batch order
    training.nan_policy = "stop"  # stop | skip: what a non-finite loss does
    training.nan_skip_limit = 10  # skip: non-finite batches in a row before the run stops
    training.loss = "dsm"         # dsm | edm | hybrid | vlb (hybrid, vlb: DDPM with model.learn_variance)
    # The network's output parametrisation: None (the SDE's: "noise" for VP / sub-VP, "score" for
    # VE and EDM's SDE), or "noise" | "score" | "edm" (EDM's preconditioned denoiser, any SDE).
    training.parametrization = placeholder(str)  # None (the SDE's own) | noise | score | edm
    training.sigma_data = 0.5     # EDM: the data's std (preconditioning and loss weight)
    training.p_mean = -1.2        # loss=edm: ln σ ~ N(p_mean, p_std²)
    training.p_std = 1.2          # loss=edm: the std of ln σ
    training.vlb_weight = 0.001   # λ of L_simple + λ·L_vlb (loss=hybrid)
    training.timestep_sampling = "uniform"  # hybrid, vlb: uniform | loss_second_moment
    training.label_dropout = 0.1  # class-conditional models: P(label -> null label)
    training.precision = "fp32"       # fp32 | bf16 | fp16 (CUDA): autocast + fp16 loss scaling
    training.grad_accum_steps = 1     # micro-batches per step (the global batch is unchanged)
    training.compile = False          # torch.compile the network (first steps compile)
    training.channels_last = False    # NHWC memory layout (helps convolutions on GPUs)
    training.tf32 = True              # CUDA: TF32 matrix products in fp32

    config.optim = optim = ml_collections.ConfigDict()
    optim.optimizer = "Adam"      # Adam
    optim.lr = 2e-4               # learning rate after warm-up
    optim.beta1 = 0.9             # Adam β1 (β2 = 0.999)
    optim.eps = 1e-8              # Adam ε
    optim.weight_decay = 0.0      # Adam weight decay
    optim.warmup = 5000           # linear warm-up steps (0: none)
    optim.grad_clip = 1.0         # max gradient norm; negative disables clipping

    config.sampling = sampling = ml_collections.ConfigDict()
    sampling.method = "pc"        # see samplers.SAMPLERS
    sampling.predictor = "euler_maruyama"  # pc: reverse_diffusion|ancestral|euler_maruyama|none
    sampling.corrector = "none"   # pc: langevin | ald | none
    sampling.snr = 0.16           # corrector signal-to-noise ratio
    sampling.n_steps_each = 1     # corrector steps per time (annealed_langevin: per level)
    sampling.noise_removal = True  # end with Tweedie's E[x0 | x_eps]
    sampling.probability_flow = False  # pc: predictor on the probability-flow ODE
    sampling.ode_method = "RK45"     # scipy solve_ivp method (method="ode")
    sampling.sde_method = "euler"    # torchsde Ito solver (method="sdeint"): euler | milstein | srk
    sampling.eps = 1e-3           # the last time of sampling (t runs T -> eps)
    sampling.num_steps = 0        # > 0: the time intervals of any method; 0: the method's own default
    sampling.nfe = placeholder(int)  # a fixed-step method's budget of score evaluations (picks its steps)
    sampling.pc_num_steps = 0     # steps of pc & co. (samplers.config.is_chain); 0: num_scales
    # Options of particular methods; None keeps the method's own default.
    sampling.step_lr = placeholder(float)         # annealed_langevin
    sampling.adaptive = placeholder(bool)         # sdeint
    sampling.eta = placeholder(float)             # ddim: 0 deterministic, 1 ancestral
    sampling.time_schedule = placeholder(str)  # uniform|logsnr|edm|quadratic|fitted (fit_steps)
    sampling.rho = placeholder(float)             # EDM ρ schedule
    sampling.s_churn = placeholder(float)         # heun: stochastic churn
    sampling.s_tmin = placeholder(float)  # heun: churn from this σ
    sampling.s_tmax = placeholder(float)  # heun: churn up to this σ
    sampling.s_noise = placeholder(float)  # heun: churn noise scale
    sampling.order = placeholder(int)             # dpm_solver(_sde), unipc: 1-3; dpm_adaptive: 2|3
    sampling.variant = placeholder(str)           # unipc: bh1 | bh2
    sampling.unic = placeholder(bool)             # dpm_solver: UniC corrector after each step
    sampling.lower_order_final = placeholder(bool)  # dpm_solver(_sde), unipc
    sampling.rtol = placeholder(float)  # ode, sdeint, adaptive_sde, dpm_adaptive: relative tolerance
    sampling.atol = placeholder(float)  # ode, sdeint, adaptive_sde, dpm_adaptive: absolute tolerance
    sampling.safety = placeholder(float)  # adaptive_sde, dpm_adaptive: step-size safety factor
    sampling.variance = placeholder(str)          # ancestral: beta | posterior | learned
    # Class-conditional and guided sampling (--mode sample).
    sampling.class_label = -1     # the class of every sample; -1: classes in turn
    sampling.guidance_scale = 1.0  # classifier-free: s_∅ + γ(s_y − s_∅); 1 = conditional
    sampling.classifier_scale = 0.0  # classifier guidance: s + γ·∇log p_t(y | x) (0: off)
    sampling.task = "generate"    # generate | inpaint | colorize | superres | interpolate
    sampling.mask = "right_half"  # inpaint: right_half | bottom_half | center | random_pixels
    sampling.precision = "fp32"   # fp32 | bf16 | fp16 (CUDA): autocast of the network when sampling
    sampling.compile = False      # torch.compile the network for sampling (the first batch compiles)
    sampling.superres_factor = 2  # superres: the average-pooling factor of the observed images
    # inpaint / colorize / superres: how to condition (samplers.condition); the predictor,
    # corrector, snr, n_steps_each, eps, num_steps and noise_removal above apply as they can.
    sampling.condition_method = "replacement"  # replacement | smc | repaint | dps
    sampling.num_particles = placeholder(int)  # smc: particles per image, K× the cost (16)
    sampling.ess_threshold = placeholder(float)  # smc: resample when ESS < this·K (0.5)
    sampling.lookahead = placeholder(str)        # smc: predictive | tweedie
    sampling.data_std = placeholder(float)       # smc, tweedie look-ahead: data scale (1.0)
    sampling.jump_length = placeholder(int)      # repaint: j (10)
    sampling.jump_n_sample = placeholder(int)    # repaint: r (10)
    sampling.dps_scale = placeholder(float)      # dps: step size ζ (1.0)

    # --mode fit_steps: learned times of sampling.method at sampling.nfe (samplers.learned_steps);
    # sampling.time_schedule = "fitted" then uses them.
    config.fit_steps = fit_steps = ml_collections.ConfigDict()
    fit_steps.num_samples = 128   # teacher pairs (x_T, converged probability flow's x_0) to fit on
    fit_steps.num_holdout = 256   # more pairs that measure the errors reported (0: the same ones)
    fit_steps.n_iters = 60        # Adam iterations on the step logits (2·steps + 1 solver runs)
    fit_steps.lr = 0.1            # Adam's peak rate on the logits (cosine decay)
    fit_steps.delta = 0.01        # central-difference step in the logits
    fit_steps.tolerance = 1e-5    # the teacher ODE's rtol = atol (RK45)
    fit_steps.seed = 0            # of the teacher pairs' x_T

    config.eval = evaluate = ml_collections.ConfigDict()
    evaluate.batch_size = 256     # examples / samples per batch
    evaluate.enable_bpd = True    # bits/dim by the probability-flow ODE
    evaluate.bpd_dataset = "test"  # test | train
    evaluate.bpd_num_examples = 0  # 0: the whole split
    evaluate.bpd_repeats = 1       # dequantization draws per example
    evaluate.likelihood_eps = 1e-5  # the data-side end of the likelihood ODE
    evaluate.rtol = 1e-5          # likelihood ODE relative tolerance
    evaluate.atol = 1e-5          # likelihood ODE absolute tolerance
    evaluate.divergence = "rademacher"  # rademacher|gaussian|exact: the flow's trace
    evaluate.enable_sampling = False  # also draw eval.num_samples samples
    evaluate.num_samples = 64     # samples to draw (--mode sample too)
    evaluate.enable_fid = False         # FID / IS of the samples (needs enable_sampling)
    evaluate.inception_path = "auto"    # auto: download once into ~/.cache/score-sde; or a path
    evaluate.seed = 0             # sample i uses noise seeded by (seed, i)
    evaluate.enable_vlb = False    # DDPM variational bound (bits/dim) beside the ODE's (VP chain)
    evaluate.vlb_num_timesteps = 0  # 0: the exact sum over all N steps; K: unbiased K-step estimate

    # Time-conditional classifier for classifier guidance (--mode train_classifier); images use
    # the encoder fields, vectors `width`. Labels follow the SDE (999·t for VP, σ(t) for VE).
    config.classifier = classifier = ml_collections.ConfigDict()
    classifier.nf = 32            # base channels
    classifier.ch_mult = (1, 2, 2)     # channels nf·ch_mult[i] at resolution image_size / 2^i
    classifier.num_res_blocks = 1  # residual blocks per level
    classifier.attn_resolutions = (8,)  # self-attention at these resolutions
    classifier.dropout = 0.1      # dropout rate
    classifier.nonlinearity = "swish"  # swish | relu | ...
    classifier.width = 128             # vector data: MLP width
    classifier.batch_size = 128   # batch (eval too)
    classifier.n_iters = 2000     # training steps
    classifier.lr = 1e-3               # Adam, linear warm-up over `warmup` steps
    classifier.warmup = 100       # linear warm-up steps
    classifier.eps = 1e-3              # t ~ U(eps, T)
    classifier.log_freq = 50      # steps between TensorBoard scalars
    classifier.eval_freq = 500    # steps between test evaluations
    classifier.snapshot_freq = 500  # steps between checkpoints
    classifier.eval_t = (0.05, 0.25, 0.5, 0.75)  # test accuracy at these times
    classifier.eval_num_examples = 0   # 0: the whole test split
    classifier.seed = 42          # weights, noise, batch order

    # --mode frontier: every fast sampler at each NFE budget, from one shared set of x_T,
    # against the converged probability flow (`ode` at rtol / atol) and the data.
    config.frontier = frontier = ml_collections.ConfigDict()
    frontier.nfe = (2, 3, 5, 10, 20, 50)  # budgets of score evaluations (distinct integers >= 1)
    frontier.num_samples = 1000   # shared draws x_T (in batches of eval.batch_size)
    frontier.seed = 0             # x_T and the stochastic samplers' noise
    frontier.rtol = 1e-6          # the converged flow's relative tolerance
    frontier.atol = 1e-6          # the converged flow's absolute tolerance

    config.data = data = ml_collections.ConfigDict()
    data.dataset = "CIFAR10"  # CIFAR10|DIGITS|image_folder|npz|npy|toy sets
    data.root = "data"             # holds cifar-10-batches-py/
    data.download = False         # CIFAR10: fetch and checksum the archive
    data.image_size = 32          # images: resized / cropped to this size
    data.num_channels = 3         # images: channels
    data.centered = False          # True: [-1, 1], False: [0, 1]
    data.random_flip = True       # training: random left-right flips
    data.uniform_dequantization = False  # training: (v + u)/256 instead of v/255
    data.dim = 2                   # vector data (toy sets)
    data.num_train = 50_000       # toy sets: training points
    data.num_test = 10_000        # toy sets: test points
    data.seed = 0  # toy sets: generation seed; image_folder / npz: the drawn test split
    data.path = ""   # image_folder: a folder or zip of images; npz: an .npz; npy: .npy or .npz
    data.test_fraction = 0.1          # image_folder / npz: test share drawn with data.seed
    data.in_memory = placeholder(bool)  # image_folder / npy: None: by size; True / False forces it
    data.num_workers = -1             # streamed data: loader processes (-1: from the idle cores)
    data.skip_bad_files = False       # image_folder: replace unreadable files (counted) or stop
    data.max_image_pixels = 1 << 26   # image_folder: refuse an image of more pixels (bombs)
    data.max_file_bytes = 1 << 28     # image_folder: refuse a file / zip member of more bytes

    # Consistency distillation (--mode distill; Song et al. 2023, Geng et al. 2024). A workdir
    # whose config names a teacher is a consistency student (sampling.method="consistency").
    config.distill = distill = ml_collections.ConfigDict()
    distill.teacher = ""          # the trained teacher workdir ("": not a student)
    distill.teacher_digest = ""   # set by the first distill run: the teacher's EMA weights' digest
    distill.method = "cd"         # cd (teacher ODE step between grid points) | ect (no teacher solver)
    distill.n_iters = 2000        # student training steps
    distill.num_scales = 18       # cd: grid points from eps to T (EDM's ρ-schedule; Song et al.: 18)
    distill.solver = "heun"       # cd: the teacher's one step (heun | ddim | dpm_solver | unipc)
    distill.loss = "pseudo_huber"  # l2 | pseudo_huber (Song & Dhariwal 2023, c = 0.00054·√d)
    distill.ema_rate = 0.999      # EMA of the student's weights (the sampled ones)
    distill.lr = placeholder(float)  # Adam, no warm-up; None: the method's paper value (cd 4e-4, ect 1e-4)
    distill.eps = 1e-3            # the student's smallest time: f(x, eps) = x exactly
    distill.ect_stages = 8        # ect: Δt halves this many times over n_iters (Geng et al. 2024)
    distill.p_mean = -1.1         # ect: ln σ ~ N(p_mean, p_std²) (Song & Dhariwal 2023)
    distill.p_std = 2.0           # ect: its std

    config.model = ml_collections.ConfigDict()
    return config
