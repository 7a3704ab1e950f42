"""run.stored_config: which fields define a workdir's model, compared field by field."""
import pytest

from configs.vp_cifar import get_config as vp_cifar_config
from configs.vp_digits import get_config as digits_config
from models.convert import project_config
from run.builders import build_sde, stored_config
from run.stored_config import ConfigMismatch, check_matches, differences


def _stored(config):
    return stored_config(config, build_sde(config))


def test_only_model_defining_fields_count():
    base = _stored(digits_config())
    config = digits_config()
    config.training.batch_size, config.training.n_iters, config.optim.lr = 7, 3, 1e-2
    config.sampling.method, config.eval.batch_size = "ode", 3
    config.model.ema_rate, config.model.dropout = 0.5, 0.2        # not what the network is
    config.sde.sigma_max = 80.0                                    # the VP SDE does not read it
    assert differences(_stored(config), base) == []
    config.sde.beta_max, config.model.nf, config.data.centered = 5.0, 32, False
    config.training.continuous = False
    assert differences(_stored(config), base) == [
        "model.centered=True (stored) vs False (now)", "model.nf=16 (stored) vs 32 (now)",
        "sde.beta_max=20.0 (stored) vs 5.0 (now)",
        "training.continuous=True (stored) vs False (now)"]


def test_an_other_sde_lists_its_fields():
    base = _stored(digits_config())
    config = digits_config()
    config.sde.name = "vesde"
    diff = differences(_stored(config), base)
    assert "sde.name='vpsde' (stored) vs 'vesde' (now)" in diff
    assert "training.parametrization='noise' (stored) vs 'score' (now)" in diff
    with pytest.raises(ConfigMismatch, match="contradicts config.json"):
        check_matches(_stored(config), base, "config.json")
    check_matches(_stored(config), None, "nothing stored")


def test_a_converted_checkpoints_config_matches_the_projects_own_config():
    """models.convert stores the reference's model section (other extra fields); it compares
    by the network it builds."""
    config = vp_cifar_config()
    reference = {"model": dict(config.model.to_dict(), normalization="GroupNorm",
                               attention_type="ddpm", conv_size=3, beta_min=0.1, beta_max=20.0,
                               num_scales=1000, sigma_min=0.01, sigma_max=50.0),
                 "data": {"image_size": 32, "num_channels": 3, "centered": True},
                 "training": {"sde": "vpsde", "continuous": True}}
    assert differences(_stored(config), project_config(reference)) == []
    config.model.num_res_blocks = 2
    assert differences(_stored(config), project_config(reference)) == [
        "model.num_res_blocks=4 (stored) vs 2 (now)"]


def test_classifier_runs_compare_only_the_sde_and_the_data():
    base = _stored(digits_config())
    config = digits_config()
    config.model.nf = 64
    assert differences(_stored(config), base, model=False) == []
    config.data.image_size = 16
    assert differences(_stored(config), base, model=False) == [
        "model.image_size=8 (stored) vs 16 (now)"]


def test_the_parametrisation_and_edms_sigma_data_define_the_model():
    from configs.edm_digits import get_config as edm_config
    base = _stored(digits_config())
    config = digits_config()
    config.training.parametrization = "edm"           # EDM's preconditioning of the VP model
    assert differences(_stored(config), base) == [
        "training.parametrization='noise' (stored) vs 'edm' (now)",
        "training.sigma_data=None (stored) vs 0.5 (now)"]
    config.training.parametrization = "noise"         # the SDE's own, asked for by name
    config.training.sigma_data = 0.3                  # not read without "edm"
    assert differences(_stored(config), base) == []
    edm = _stored(edm_config())
    assert edm["training"]["parametrization"] == "edm"
    changed = edm_config()
    changed.training.sigma_data, changed.training.p_mean = 0.6, 0.0   # p_mean: the loss only
    assert differences(_stored(changed), edm) == [
        "training.sigma_data=0.5 (stored) vs 0.6 (now)"]
    changed = edm_config()
    changed.sde.sigma_max = 100.0
    assert differences(_stored(changed), edm) == ["sde.sigma_max=80.0 (stored) vs 100.0 (now)"]
