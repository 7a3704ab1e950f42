"""build_sampler: config.sampling fields onto method options, defaults, and early errors."""
import importlib
from pathlib import Path

import ml_collections
import pytest
import torch

import samplers
from tests.conftest import SDE_FACTORIES


def _config(**fields):
    base = dict(method="pc", predictor="reverse_diffusion", corrector="langevin", snr=0.16,
                n_steps_each=1, noise_removal=True, probability_flow=False, rtol=1e-5, atol=1e-5,
                eps=1e-3, num_steps=None)
    base.update(fields)
    return ml_collections.ConfigDict(base)


def test_fields_map_onto_the_method_options():
    sampler = samplers.build_sampler(_config(predictor="ancestral", corrector="ald", snr=0.1,
                                             n_steps_each=2, noise_removal=False, num_steps=10))
    assert sampler.method == "pc"
    assert sampler.options == dict(predictor="ancestral", corrector="ald", snr=0.1, n_steps=2,
                                   denoise=False, probability_flow=False, eps=1e-3, num_steps=10)
    # Each method takes only its own options; None and absent fields keep the method's defaults.
    assert samplers.build_sampler(_config(method="ode", ode_method="DOP853")).options == dict(
        denoise=True, rtol=1e-5, atol=1e-5, eps=1e-3, ode_method="DOP853")
    langevin = samplers.build_sampler(_config(method="annealed_langevin", step_lr=1e-5))
    assert langevin.options == dict(n_steps_each=1, denoise=True, eps=1e-3, step_lr=1e-5)
    assert samplers.build_sampler({"method": "sdeint", "sde_method": "srk"}).options == dict(
        sde_method="srk")
    assert samplers.build_sampler({}).method == "pc"
    # num_steps = 0 is the configs' placeholder for the SDE's own N (configs/default.py).
    assert "num_steps" not in samplers.build_sampler(_config(num_steps=0)).options


def test_the_default_config_builds_and_runs():
    from configs.default import get_default_config
    sampler = samplers.build_sampler(get_default_config().sampling)
    sde = SDE_FACTORIES["vp"]()
    sde.N = 3
    result = sampler(lambda x, t: -x, sde, (2, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    assert result.x.shape == (2, 1, 2, 2) and torch.isfinite(result.x).all()


def test_the_sampler_runs_with_the_shared_signature():
    sampler = samplers.build_sampler(_config(num_steps=5, corrector="none"))
    sde = SDE_FACTORIES["vp"]()
    result = sampler(lambda x, t: -x, sde, (3, 1, 2, 2), generator=torch.Generator().manual_seed(0))
    assert result.x.shape == (3, 1, 2, 2) and result.nfe == 6
    expected = samplers.sample(lambda x, t: -x, sde, (3, 1, 2, 2), "pc", num_steps=5,
                               corrector="none", generator=torch.Generator().manual_seed(0))
    assert torch.equal(result.x, expected.x)


@pytest.mark.parametrize("fields, message", [
    (dict(method="dpm"), "config.sampling.method"),
    (dict(predictor="heun"), "predictor"),
    (dict(corrector="hmc"), "corrector"),
    (dict(predictor="none", corrector="none"), "both be 'none'"),
    (dict(method="ancestral", probability_flow=True), "probability_flow"),
    (dict(predictor="ancestral", probability_flow=True), "probability_flow"),
    (dict(method="ode", ode_method="euler"), "ode_method"),
    (dict(method="sdeint", sde_method="heun"), "sde_method"),
])
def test_unknown_names_fail_at_build_time_listing_the_valid_ones(fields, message):
    with pytest.raises(ValueError, match=message) as info:
        samplers.build_sampler(_config(**fields), baseline=_config())
    assert "expected" in str(info.value) or "none" in str(info.value) \
        or "does not apply" in str(info.value)


# Experiment configs: the modules with a get_config() (default / cifar / toy are shared bases).
CONFIG_FILES = sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.py")
                      if "def get_config(" in p.read_text())


@pytest.mark.parametrize("name", CONFIG_FILES)
def test_every_config_file_names_a_valid_sampler(name):
    module = importlib.import_module(f"configs.{name}")
    samplers.build_sampler(module.get_config().sampling)


def test_options_a_method_ignores_are_refused():
    from configs.default import get_default_config
    baseline = get_default_config().sampling
    with pytest.raises(ValueError, match=r"config.sampling.order=3 does not apply to method "
                                         r"'heun' \(it would be ignored\); it is an option of "
                                         r"\['dpm_adaptive', 'dpm_solver', 'dpm_solver_sde', "
                                         r"'unipc'\]"):
        samplers.build_sampler({"method": "heun", "order": 3}, baseline)
    with pytest.raises(ValueError, match=r"config.sampling.variant='bh2' does not apply to "
                                         r"method 'dpm_solver' \(it would be ignored\); it is "
                                         r"an option of \['unipc'\]"):
        samplers.build_sampler({"method": "dpm_solver", "variant": "bh2"}, baseline)
    with pytest.raises(ValueError, match="config.sampling.eta=0.5 does not apply to method 'ode'"):
        samplers.build_sampler({"method": "ode", "eta": 0.5}, baseline)
    assert samplers.build_sampler({"method": "ddim", "eta": 0.5}, baseline).options["eta"] == 0.5
    # Fields every config carries (PC's predictor, say) may keep their default values ...
    assert samplers.build_sampler(dict(baseline, method="ode"), baseline).method == "ode"
    # ... but set to another value for a method that ignores them, they are refused.
    with pytest.raises(ValueError, match="config.sampling.snr=0.2 does not apply to method "
                                         "'dpm_solver'"):
        samplers.build_sampler(dict(baseline, method="dpm_solver", snr=0.2), baseline)


def test_a_config_stored_before_one_tolerance_naming_keeps_its_meaning():
    """Old stored configs: rtol = atol = 1e-5 were ode's and sdeint's; abstol / reltol the
    adaptive solvers'. They sample as before, and do not stop another method."""
    from configs.default import get_default_config
    baseline = get_default_config().sampling
    old = dict(baseline, rtol=1e-5, atol=1e-5, abstol=None, reltol=0.05)
    assert samplers.build_sampler(dict(old, method="dpm_solver"), baseline).options.get(
        "rtol") is None
    adaptive = samplers.build_sampler(dict(old, method="adaptive_sde"), baseline).options
    assert adaptive["rtol"] == 0.05 and "atol" not in adaptive
    assert samplers.build_sampler(dict(old, method="ode"), baseline).options["rtol"] == 1e-5
