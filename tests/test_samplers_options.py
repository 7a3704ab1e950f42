"""samplers.options: one declaration per method, and everything derived from it agrees."""
import inspect
import math

import pytest
import torch

import samplers
from configs.default import get_default_config
from run.progress import settings_digest
from samplers.config import check_config, field_map
from samplers.options import INF, SCHEMA, defaults, field_of
from sde_lib import VPSDE

COMMON = {"generator", "device", "dtype", "x_T", "callback"}


def _refused(option):
    """A value the declaration refuses (None where every value of its type is allowed)."""
    if option.kind == "bool":
        return "yes"
    if option.kind in ("choice", "schedule"):
        return "bogus"
    if option.lo > -INF:
        return option.lo - 2 if option.kind == "int" else option.lo - 0.5   # (num_steps=0: default)
    return option.hi + 1 if option.hi < INF else math.nan


def _never_called(x, t):
    raise AssertionError("the score was evaluated: options must be checked before any work")


@pytest.mark.parametrize("method", sorted(samplers.SAMPLERS))
def test_the_declared_defaults_are_the_signatures(method):
    parameters = inspect.signature(samplers.SAMPLERS[method]).parameters.values()
    signature = {p.name: p.default for p in parameters
                 if p.kind is p.KEYWORD_ONLY and p.name not in COMMON}
    assert signature == defaults(method)


@pytest.mark.parametrize("method", sorted(samplers.SAMPLERS))
def test_cli_and_python_refuse_a_value_with_the_same_message(method):
    """Every declared option, out of its range: `samplers.sample` and the config's up-front
    check give one line, the same but for the name (`config.sampling.<field>` from the CLI)."""
    sde = VPSDE(N=4)
    for name, option in SCHEMA[method].items():
        bad = _refused(option)
        with pytest.raises(ValueError) as python:
            samplers.sample(_never_called, sde, (2, 1), method, **{name: bad})
        field = field_of(name, option)
        with pytest.raises(ValueError) as cli:
            check_config({"method": method, field: bad}, method)
        python, cli = str(python.value), str(cli.value)
        assert python.startswith(f"{name}=") and cli.startswith(f"config.sampling.{field}=")
        assert python.split("=", 1)[1] == cli.split("=", 1)[1], (python, cli)
        assert "\n" not in cli and option.allowed() in cli


@pytest.mark.parametrize("method", ["pc", "dpm_solver", "ode"])
def test_an_option_the_method_ignores_is_refused_the_same_way(method):
    sde, baseline = VPSDE(N=4), get_default_config().sampling
    own = set(field_map(method))
    for other in SCHEMA:
        if ":" in other:
            continue
        for name, option in SCHEMA[other].items():
            field = field_of(name, option)
            if field in own or name in SCHEMA[method]:
                continue
            value = "bogus" if option.kind in ("choice", "schedule") else 3
            with pytest.raises(ValueError, match="does not apply") as python:
                samplers.sample(_never_called, sde, (2, 1), method, **{name: value})
            config = dict(baseline, method=method, **{field: value})
            with pytest.raises(ValueError, match="does not apply") as cli:
                check_config(config, method, baseline)
            assert str(cli.value).startswith(f"config.sampling.{field}=")
            # The same words; the takers are listed by keyword (Python) or by field (CLI), which
            # differ where a field sets differently named keywords (n_steps_each: pc's n_steps).
            words = str(python.value).split("=", 1)[1].split("; it is an option of")[0]
            assert words in str(cli.value)


def test_the_resolved_settings_list_every_option_and_name_the_folder():
    from evaluation.modes import sample_settings
    config = get_default_config()
    for method in sorted(samplers.SAMPLERS):
        config.sampling.method = method
        sampler = samplers.build_sampler(config.sampling)
        settings = sample_settings(config, sampler, 4)
        assert set(settings["options"]) == set(SCHEMA[method])
        if "num_steps" in SCHEMA[method] and method in ("pc", "ancestral", "sdeint"):
            assert settings["options"]["num_steps"] == config.sde.num_scales
        # Another value of any one option lands in another folder.
        for name, value in settings["options"].items():
            changed = dict(settings, options=dict(settings["options"], **{name: f"{value}!"}))
            assert settings_digest(changed) != settings_digest(settings)


def test_a_default_dpm_solver_run_records_its_steps_order_and_schedule():
    from evaluation.modes import sample_settings
    config = get_default_config()
    config.sampling.method = "dpm_solver"
    options = sample_settings(config, samplers.build_sampler(config.sampling), 4)["options"]
    assert options["order"] == 2 and options["schedule"] == "logsnr"
    assert options["rho"] == 7.0 and options["denoise"] is True and options["num_steps"] == 20


def test_show_config_describes_the_sampler_fields():
    from cli.help import show_config
    text = show_config(get_default_config())
    line = next(line for line in text.splitlines() if line.startswith("sampling.order "))
    assert "dpm_solver 2" in line and "dpm_adaptive 3" in line


def test_condition_methods_are_declared_once():
    assert samplers.METHOD_OPTIONS["smc"] == defaults("condition:smc")
    with pytest.raises(ValueError, match=r"num_particles=0 is not allowed .* >= 1"):
        samplers.check_condition_options("smc", {"num_particles": 0})
    with pytest.raises(ValueError, match="does not apply"):
        samplers.check_condition_options("dps", {"num_particles": 4})


def test_the_likelihood_is_declared_once_too():
    parameters = inspect.signature(samplers.log_likelihood).parameters.values()
    signature = {p.name: p.default for p in parameters
                 if p.kind is p.KEYWORD_ONLY and p.name != "generator"}
    assert signature == defaults("likelihood:log_likelihood")
    x = torch.zeros(2, 1)
    with pytest.raises(ValueError, match=r"^divergence='hutch' is not allowed .* one of"):
        samplers.log_likelihood(_never_called, VPSDE(), x, divergence="hutch")
    with pytest.raises(ValueError, match=r"^rtol=0.0 is not allowed .* > 0"):
        samplers.log_likelihood(_never_called, VPSDE(), x, rtol=0.0)
