"""What `python main.py --help` prints, and `--mode show_config`: every field of a config with
its value and the one-line description written beside it in `configs/default.py`."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Dict

DEFAULT_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "default.py"
HELP_FLAGS = ("-h", "--help", "--helpshort", "--helpfull", "-?")

USAGE = """\
score-sde: score-based generative modeling with SDEs.

usage: python main.py --config CONFIG.py --workdir DIR --mode MODE [--config.SECTION.FIELD=VALUE ...]
       python main.py --workdir DIR --mode MODE [--config.SECTION.FIELD=VALUE ...]   (a workdir with a config.json)

modes:
  train             train the score model (resumes automatically from the workdir)
  eval              bits/dim by the probability-flow ODE (+ DDPM's bound, samples, FID) -> eval/metrics.json
  sample            draw samples (or run sampling.task: inpaint, colorize, interpolate) -> samples/
  train_classifier  train the time-conditional classifier of classifier guidance -> classifier/
  fid_stats         compute and cache the data set's Inception statistics for FID
  frontier          every fast sampler at each NFE budget (frontier.nfe) vs the converged flow and
                    the data -> frontier/frontier.json, .md, .png
  show_config       print every config field with its value and description, then exit
  distill           train a consistency student of --config.distill.teacher=WORKDIR (no --config)

flags:
{flags}

config overrides: any field as --config.<section>.<field>=value, e.g.
  --config.sampling.method=dpm_solver --config.sampling.num_steps=10 --config.training.batch_size=32
Without --config, eval / sample / show_config use the workdir's stored config.json; a workdir
refuses settings that change its model (exit 2, listing the fields).

configs: configs/*.py (vp_digits.py is the CPU default); every field and what it means:
  python main.py --config configs/vp_digits.py --mode show_config
exit status: 0 done, 1 failed, 2 bad input, 3 stopped by a signal (rerun to resume), 130 aborted.
"""


def usage(flag_values) -> str:
    """The help text, with the flags of `flag_values`."""
    lines = []
    for name in ("config", "workdir", "mode", "eval_folder", "device", "threads", "verbose"):
        if name in flag_values:
            flag = flag_values[name]
            lines.append(f"  --{name:<13} {flag.help}")
    return USAGE.format(flags="\n".join(lines))


def field_descriptions(source: Path = DEFAULT_CONFIG) -> Dict[str, str]:
    """"section.field" → the comment beside its assignment in `configs/default.py`."""
    aliases, described = {}, {}
    for line in source.read_text().splitlines():
        section = re.match(r"\s*config\.(\w+)\s*=\s*(\w+)\s*=", line)
        if section:
            aliases[section.group(2)] = section.group(1)
            continue
        field = re.match(r"\s*(\w+)\.(\w+)\s*=\s*[^#]*?(?:#\s*(.*))?$", line)
        if field and field.group(1) in aliases:
            described[f"{aliases[field.group(1)]}.{field.group(2)}"] = (field.group(3) or "").strip()
    return described


def show_config(config) -> str:
    """Every field of `config`, one per line: `section.field = value  # description`."""
    from samplers.options import field_summaries

    descriptions = field_descriptions()
    declared = field_summaries()   # the samplers' option declarations
    lines = []
    for section, values in sorted(config.items()):
        if not hasattr(values, "items"):
            lines.append(f"{section} = {values!r}")
            continue
        for name, value in sorted(values.items()):
            key = f"{section}.{name}"
            text = f"{key} = {value!r}"
            note = descriptions.get(key)
            if section == "sampling" and name in declared:
                note = f"{note} [{declared[name]}]" if note else f"[{declared[name]}]"
            lines.append(f"{text:<48}  # {note}" if note else text)
    return "\n".join(lines)
