"""The layers of the codebase, read from the import statements themselves (`ast`): data flows one
way, so a change that breaks a rule fails here with the file and the import that broke it.

    main.py, cli/   compose the modes                       (nothing imports main)
    training/       loop, losses, classifier trainer        ┐ never import each other
    evaluation/     likelihood, bound, sample runs, FID     ┘
    run/            workdir, checkpoints, distributed, builders from config
    data/           data sets, batch order, transforms      (only models.analytic of models)
    samplers/       every sampler and likelihood            (only sde_lib)
    models/         networks, ScoreModel, EMA, oracle       (only sde_lib)
    sde_lib/        forward SDEs                            (nothing of the project)
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["sde_lib", "models", "samplers", "data", "run", "training", "evaluation", "cli",
            "configs"]
PROJECT = set(PACKAGES) | {"main"}
# What each package may import of the project, besides itself (module names, or packages).
ALLOWED = {
    "sde_lib": set(),
    "models": {"sde_lib"},
    "samplers": {"sde_lib"},
    "data": {"models.analytic"},
    "configs": {"models.presets"},   # the papers' architectures as config sections
    "run": {"sde_lib", "models", "samplers", "data"},
    "training": {"sde_lib", "models", "samplers", "data", "run"},
    "evaluation": {"sde_lib", "models", "samplers", "data", "run"},
    "cli": {"sde_lib", "models", "samplers", "data", "run", "training", "evaluation", "configs"},
    "main": {"sde_lib", "models", "samplers", "data", "run", "training", "evaluation", "cli",
             "configs"},
}


def project_imports(path: Path):
    """(line, imported module) for every import of a project module in `path`, wherever it
    stands (top level or inside a function)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            # `from pkg import name` imports the submodule pkg.name where there is one.
            names = [f"{node.module}.{alias.name}" if is_module(f"{node.module}.{alias.name}")
                     else node.module for alias in node.names]
        else:
            continue
        for name in names:
            if name.split(".")[0] in PROJECT:
                yield node.lineno, name


def is_module(name: str) -> bool:
    """Whether the dotted `name` is a module or package of the project."""
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def is_allowed(layer: str, module: str) -> bool:
    if module.split(".")[0] == layer:
        return True
    return any(module == rule or module.startswith(rule + ".") for rule in ALLOWED[layer])


def files(layer: str):
    if layer == "main":
        return [ROOT / "main.py"]
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(layer):
    broken = [f"{path.relative_to(ROOT)}:{line} imports {module}"
              for path in files(layer) for line, module in project_imports(path)
              if not is_allowed(layer, module)]
    assert not broken, "layer rule broken:\n" + "\n".join(broken)


def test_nothing_imports_main():
    importers = [f"{path.relative_to(ROOT)}:{line}" for layer in PACKAGES
                 for path in files(layer) for line, module in project_imports(path)
                 if module.split(".")[0] == "main"]
    assert not importers


def test_the_checker_sees_a_broken_rule(tmp_path):
    """The rule checker itself catches imports at any depth and in either form."""
    source = tmp_path / "x.py"
    source.write_text("import torch\nfrom training.train import train\n"
                      "def f():\n    import evaluation.modes\n    from models import mlp\n")
    found = [module for _, module in project_imports(source)]
    assert found == ["training.train", "evaluation.modes", "models.mlp"]
    assert not is_allowed("evaluation", "training.train")
    assert not is_allowed("data", "models.ncsnpp") and is_allowed("data", "models.analytic")
    assert not is_allowed("data", "models")
    assert is_allowed("samplers", "sde_lib.utils") and not is_allowed("samplers", "models")
