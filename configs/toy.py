"""Shared by the 2-D toy configs: a residual MLP on a VP SDE, trained in a minute or two on CPU."""
import ml_collections

from configs.default import get_default_config


def toy_config(dataset: str) -> ml_collections.ConfigDict:
    config = get_default_config()
    config.data.dataset = dataset
    config.data.dim = 2
    config.data.num_train = 50_000
    config.data.num_test = 2_000
    config.model = ml_collections.ConfigDict(dict(
        name="mlp", width=128, num_res_blocks=3, nf=32, embedding_type="positional",
        dropout=0.0, init_scale=0.0, scale_by_sigma=False, nonlinearity="swish", ema_rate=0.999))
    training = config.training
    training.batch_size = 512
    training.n_iters = 4000
    training.snapshot_freq = 2000
    training.snapshot_freq_for_preemption = 500
    training.log_freq = 100
    training.eval_freq = 500
    training.num_snapshot_samples = 2000
    training.reduce_mean = True
    config.optim.lr = 2e-3
    config.optim.warmup = 100
    config.sampling.pc_num_steps = 500   # pc & co.; other methods keep their own defaults
    config.eval.batch_size = 1000
    config.eval.bpd_num_examples = 2000
    config.eval.divergence = "exact"
    config.eval.num_samples = 2000
    return config
