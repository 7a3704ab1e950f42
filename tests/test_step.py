"""The optimizer step (`training.step.TrainStep`): micro-batch accumulation against one large
batch, mixed precision (bf16 autocast, fp16 with its gradient scaler), non-finite steps
skipped on the device, and compiled forward passes."""
import copy

import numpy as np
import pytest
import torch

from configs.toy_gmm import get_config as toy_config
from configs.vp_digits import get_config as digits_config
from data import BatchOrder, build_dataset, build_transform
from run.distributed import single_process
from training.precision import grad_scaler
from training.state import build_train_state
from training.step import TrainStep


def toy_state(seed=0, **training):
    config = toy_config()
    config.model.width = 32
    config.training.batch_size = 32
    for name, value in training.items():
        config.training[name] = value
    torch.manual_seed(seed)
    return config, build_train_state(config, torch.device("cpu"))


def stepper(state, **kwargs):
    return TrainStep(state.model, state.loss_fn, state.optimizer, state.ema, single_process(),
                     grad_clip=1.0, **kwargs)


def toy_batch(n=32, seed=1):
    return torch.randn(n, 2, generator=torch.Generator().manual_seed(seed))


def parameters(state):
    return torch.cat([p.detach().flatten() for p in state.model.parameters()])


def test_micro_batches_give_the_step_of_one_large_batch():
    """float32: the same noise per example and gradients equal up to summation order (a few
    float32 ulps of the gradient, relative 1e-5 on the parameters after Adam's first steps)."""
    finals, losses = [], []
    for accum in (1, 4):
        _, state = toy_state()
        step = stepper(state, accum_steps=accum)
        generator = torch.Generator().manual_seed(3)
        trace = [step.step(toy_batch(seed=k), None, 1e-3, generator).loss.item()
                 for k in range(3)]
        finals.append(parameters(state))
        losses.append(trace)
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-5)
    torch.testing.assert_close(finals[0], finals[1], rtol=1e-5, atol=1e-6)


def test_micro_batches_must_split_the_batch():
    _, state = toy_state()
    with pytest.raises(ValueError, match="grad_accum_steps=3"):
        stepper(state, accum_steps=3).step(toy_batch(32), None, 1e-3, torch.Generator())


def test_a_non_finite_loss_is_skipped_on_the_device():
    """Fused Adam reads the flag: parameters, Adam's moments and the EMA stay as they were."""
    _, state = toy_state()
    step = stepper(state)
    assert step.device_skip, "the builder's Adam should be the fused one"
    generator = torch.Generator().manual_seed(0)
    step.step(toy_batch(), None, 1e-3, generator)
    before = (parameters(state), copy.deepcopy(state.optimizer.state_dict()),
              [s.clone() for s in state.ema.shadow_params])
    bad = toy_batch()
    bad[0, 0] = float("nan")
    result = step.step(bad, None, 1e-3, generator)
    assert not bool(result.applied) and bool(result.non_finite)
    torch.testing.assert_close(parameters(state), before[0], rtol=0, atol=0)
    for key, moments in state.optimizer.state_dict()["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(moments[name], before[1]["state"][key][name], rtol=0, atol=0)
    for shadow, kept in zip(state.ema.shadow_params, before[2]):
        torch.testing.assert_close(shadow, kept, rtol=0, atol=0)


def test_fp16_scaler_skips_an_overflow_and_recovers():
    """An overflowing scaled loss skips the step (parameters unchanged, not counted as a
    non-finite batch), halves the scale, and the next step applies."""
    if not hasattr(torch.amp, "GradScaler"):
        pytest.skip("torch.amp.GradScaler is missing in this torch")
    _, state = toy_state()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 40)   # overflows float16 (2^16)
    step = stepper(state, precision="fp16", scaler=scaler)
    generator = torch.Generator().manual_seed(0)
    before = parameters(state)
    result = step.step(toy_batch(), None, 1e-3, generator)
    assert not bool(result.non_finite), "an overflow is the scaler's, not a bad batch"
    torch.testing.assert_close(parameters(state), before, rtol=0, atol=0)
    assert scaler.get_scale() == 2.0 ** 39
    for k in range(64):       # halving from 2^39 brings |g|·scale under 2^16 in a few dozen
        result = step.step(toy_batch(seed=2 + k), None, 1e-3, generator)
        assert not bool(result.non_finite)
        if bool(result.applied) and not torch.equal(parameters(state), before):
            break
    else:
        pytest.fail("no step applied after 64 halvings of the loss scale")
    assert scaler.get_scale() < 2.0 ** 39
    assert all(p.dtype == torch.float32 for p in state.model.parameters())
    assert all(torch.isfinite(p).all() for p in state.model.parameters())


def test_grad_scaler_only_for_fp16():
    assert grad_scaler("fp32", torch.device("cpu")) is None
    assert grad_scaler("bf16", torch.device("cpu")) is None
    assert grad_scaler("fp16", torch.device("cpu")) is not None


def test_compiled_forward_matches_the_plain_one(monkeypatch):
    """`training.compile`: the step through `torch.compile` (the "eager" backend here, the
    graph capture without a C++ toolchain) gives the plain step's loss and parameters."""
    import models.score_model as score_model

    monkeypatch.setattr(score_model, "COMPILE_BACKEND", "eager")
    results = []
    for compile_net in (False, True):
        _, state = toy_state()
        forward = score_model.compiled(state.model) if compile_net else None
        step = stepper(state, forward_model=forward)
        generator = torch.Generator().manual_seed(5)
        loss = step.step(toy_batch(), None, 1e-3, generator).loss.item()
        results.append((loss, parameters(state)))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-7)
    assert toy_config().training.compile is False


def digits_losses(precision: str, steps: int) -> np.ndarray:
    config = digits_config()
    config.training.batch_size = 16
    config.training.precision = precision
    torch.manual_seed(0)
    state = build_train_state(config, torch.device("cpu"))
    data = build_dataset(config.data, "train")
    order, transform = BatchOrder(len(data), 16, 0), build_transform(config.data)
    step = TrainStep(state.model, state.loss_fn, state.optimizer, state.ema, single_process(),
                     grad_clip=config.optim.grad_clip, precision=precision)
    losses = []
    for k in range(steps):
        batch = transform(data.data[order.indices(k)], train=True,
                          generator=torch.Generator().manual_seed(k))
        lr = config.optim.lr * min(1.0, (k + 1) / config.optim.warmup)
        losses.append(step.step(batch, None, lr, state.generator).loss.item())
    assert all(p.dtype == torch.float32 for p in state.model.parameters())
    return np.array(losses)


@pytest.mark.slow
def test_bf16_trains_digits_like_float32():
    """200 steps of vp_digits with the same seeds: the bf16 curve's mean over the last 100
    steps lies within three standard errors of float32's (the per-step spread of the DSM loss
    over noise and t is the noise scale); both learn (the loss falls by more than that)."""
    steps, window = 200, 100
    fp32, bf16 = digits_losses("fp32", steps), digits_losses("bf16", steps)
    assert np.isfinite(bf16).all()
    tail32, tail16 = fp32[-window:], bf16[-window:]
    standard_error = np.sqrt(tail32.var(ddof=1) / window + tail16.var(ddof=1) / window)
    assert abs(tail16.mean() - tail32.mean()) < 3 * standard_error, (tail16.mean(), tail32.mean())
    for curve in (fp32, bf16):
        assert curve[:20].mean() - curve[-window:].mean() > 3 * standard_error
