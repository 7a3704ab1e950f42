"""ExponentialMovingAverage: warm-up decay, store / copy_to / restore, state_dict round trips."""
import pytest
import torch
import torch.nn as nn

from models.ema import ExponentialMovingAverage


def _net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 4), nn.GroupNorm(2, 4), nn.Linear(4, 2)).double()
    net[1].weight.requires_grad_(False)  # a frozen parameter is not averaged
    return net


def _perturb(net, step):
    with torch.no_grad():
        for p in net.parameters():
            generator = torch.Generator().manual_seed(step)
            p.add_(torch.randn(p.shape, dtype=p.dtype, generator=generator))


@pytest.mark.parametrize("use_num_updates", [True, False])
def test_update_follows_the_warm_up_recurrence(use_num_updates):
    net = _net()
    ema = ExponentialMovingAverage(net.parameters(), decay=0.9, use_num_updates=use_num_updates)
    trainable = [p for p in net.parameters() if p.requires_grad]
    expected = [p.detach().clone() for p in trainable]
    for n in range(1, 30):
        _perturb(net, n)
        decay = min(0.9, (1 + n) / (10 + n)) if use_num_updates else 0.9
        assert ema.current_decay() == pytest.approx(decay)
        ema.update(net.parameters())
        expected = [s - (1 - decay) * (s - p.detach()) for s, p in zip(expected, trainable)]
    for shadow, want in zip(ema.shadow_params, expected):
        torch.testing.assert_close(shadow, want, rtol=1e-12, atol=1e-12)
    assert ema.num_updates == (29 if use_num_updates else None)
    assert len(ema.shadow_params) == len(trainable) == 5


def test_store_copy_to_restore():
    net = _net()
    ema = ExponentialMovingAverage(net.parameters(), decay=0.5)
    _perturb(net, 1)
    ema.update(net.parameters())
    raw = [p.detach().clone() for p in net.parameters()]
    ema.store(net.parameters())
    ema.copy_to(net.parameters())
    trainable = [p for p in net.parameters() if p.requires_grad]
    assert all(torch.equal(p, s) for p, s in zip(trainable, ema.shadow_params))
    assert not torch.equal(trainable[0], raw[0])
    assert torch.equal(net[1].weight, raw[2])  # the frozen parameter is left alone
    ema.restore(net.parameters())
    assert all(torch.equal(p, r) for p, r in zip(net.parameters(), raw))


def test_state_dict_round_trip_and_checks():
    net = _net()
    ema = ExponentialMovingAverage(net.parameters(), decay=0.999)
    for n in range(3):
        _perturb(net, n)
        ema.update(net.parameters())
    state = ema.state_dict()
    assert set(state) == {"decay", "num_updates", "shadow_params"} and state["num_updates"] == 3
    other = ExponentialMovingAverage(_net().parameters(), decay=0.5)
    other.load_state_dict(state)
    assert other.decay == 0.999 and other.num_updates == 3
    assert all(torch.equal(a, b) for a, b in zip(other.shadow_params, ema.shadow_params))
    assert other.shadow_params[0] is not ema.shadow_params[0]  # loaded by copy
    with pytest.raises(ValueError, match="3 shadow parameters, this model 5"):
        other.load_state_dict(dict(state, shadow_params=state["shadow_params"][:3]))
    bad = [torch.zeros(7)] + state["shadow_params"][1:]
    with pytest.raises(ValueError, match=r"shape \(7,\), expected \(4, 3\)"):
        other.load_state_dict(dict(state, shadow_params=bad))


def test_bad_arguments():
    net = _net()
    with pytest.raises(ValueError, match="decay must be in"):
        ExponentialMovingAverage(net.parameters(), decay=1.5)
    ema = ExponentialMovingAverage(net.parameters(), decay=0.9)
    with pytest.raises(ValueError, match="expected 5 trainable parameters, got 2"):
        ema.update(net[0].parameters())
    with pytest.raises(ValueError, match="call store first"):
        ema.restore(net.parameters())


def test_to_moves_and_casts():
    ema = ExponentialMovingAverage(_net().parameters(), decay=0.9).to(dtype=torch.float32)
    assert all(p.dtype == torch.float32 for p in ema.shadow_params)
