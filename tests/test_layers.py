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

A module's `if __name__ == "__main__":` block is an entry point, held to main.py's rule
(`python -m models.convert` opens the workdir session of run/ from there).
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


def project_imports(path: Path, entry_point: bool = False):
    """(line, imported module) for every import of a project module in `path`, wherever it
    stands (top level or inside a function); `entry_point=True`: only those inside the
    `if __name__ == "__main__":` blocks, which are left out otherwise."""
    tree = ast.parse(path.read_text(), filename=str(path))
    guarded = {id(node) for block in tree.body if _is_main_guard(block)
               for node in ast.walk(block)}
    for node in ast.walk(tree):
        if (id(node) in guarded) != entry_point:
            continue
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


def _is_main_guard(node: ast.AST) -> bool:
    """`if __name__ == "__main__":` at a module's top level."""
    test = getattr(node, "test", None)
    return (isinstance(node, ast.If) and isinstance(test, ast.Compare)
            and isinstance(test.left, ast.Name) and test.left.id == "__name__"
            and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)
            and isinstance(test.comparators[0], ast.Constant)
            and test.comparators[0].value == "__main__")


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
    broken += [f"{path.relative_to(ROOT)}:{line} (entry point) imports {module}"
               for path in files(layer) for line, module in project_imports(path, True)
               if not is_allowed("main", module)]
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


def test_an_entry_point_block_is_held_to_mains_rule(tmp_path):
    source = tmp_path / "x.py"
    source.write_text("import sde_lib\nif __name__ == '__main__':\n    from cli.convert import main\n"
                      "    import main as m\nif __name__ != '__main__':\n    import run.files\n")
    assert [m for _, m in project_imports(source)] == ["sde_lib", "run.files"]
    assert [m for _, m in project_imports(source, True)] == ["cli.convert", "main"]
