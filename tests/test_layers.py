"""The package layout keeps its layers: imports in dlcli/ and recipes/ (read with ast, those inside
functions too) only point down the table below, and no module imports itself back round a
circle. docs/architecture.md explains the layers."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Bottom to top: a module may import its own layer and the ones above it in this list.
LAYERS = ["dlcli.core", "dlcli.runs", "dlcli.data", "dlcli.models", "recipes", "dlcli.training", "dlcli.tuning", "dlcli.launchers", "dlcli.serve", "dlcli.cli"]
ROOT_MODULES = {"dlcli": 0, "dlcli.__main__": len(LAYERS)}  # the version and oneDNN default; `python -m dlcli`


def layer_of(module):
    if module in ROOT_MODULES:
        return ROOT_MODULES[module]
    for rank, prefix in enumerate(LAYERS):
        if module == prefix or module.startswith(prefix + "."):
            return rank
    raise AssertionError(f"{module} is in no layer of tests/test_layers.py's LAYERS; add its package there")


def module_name(path, root):
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root=REPO, packages=("dlcli", "recipes")):
    """{module name: path} for every .py file of the packages."""
    return {module_name(p, root): p for package in packages for p in sorted((root / package).rglob("*.py"))}


def imports(path, name, known):
    """[(line, imported module)] of project modules that `path` (module `name`) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # `from module import name` imports the module; `from package import module`, the module
            # and the package (Python runs its __init__ first, so a package that imports the
            # module back is a circle)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
        else:
            continue
        found += [(node.lineno, target) for target in dict.fromkeys(targets) if target in known and target != name]
    return found


def graph(root=REPO):
    """{module: [(line, imported module)]} over dlcli/ and recipes/."""
    modules = project_modules(root)
    return {name: imports(path, name, modules) for name, path in modules.items()}, modules


def upward_imports(edges, modules, root=REPO):
    return [
        f"{modules[source].relative_to(root)}:{line} imports {target}: {LAYERS[layer_of(source)] if source not in ROOT_MODULES else source} "
        f"(layer {layer_of(source)}) may not import {LAYERS[layer_of(target)] if target not in ROOT_MODULES else target} (layer {layer_of(target)})"
        for source, targets in sorted(edges.items())
        for line, target in targets
        if layer_of(target) > layer_of(source)
        and not any(other.startswith(target + ".") for at, other in targets if at == line)  # the module, not also its package
    ]


def cycles(edges):
    """Each import circle once, as [a, b, ..., a]."""
    found, done, stack = [], set(), []

    def visit(module):
        if module in stack:
            found.append(stack[stack.index(module):] + [module])
            return
        if module in done:
            return
        stack.append(module)
        for _, target in edges[module]:
            visit(target)
        stack.pop()
        done.add(module)

    for module in sorted(edges):
        visit(module)
    return found


def test_every_import_points_down_the_layers():
    edges, modules = graph()
    assert not upward_imports(edges, modules), "\n".join(upward_imports(edges, modules))


def test_no_import_circles():
    edges, _ = graph()
    assert not cycles(edges), "\n".join(" -> ".join(circle) for circle in cycles(edges))


def test_an_upward_import_or_a_circle_is_found_and_named(tmp_path):
    """The checks can fail: a copy of the tree with runs/rundir.py importing the models layer."""
    for package in ("dlcli", "recipes"):
        for path in (REPO / package).rglob("*.py"):
            target = tmp_path / path.relative_to(REPO)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    rundir = tmp_path / "dlcli" / "runs" / "rundir.py"
    rundir.write_text(rundir.read_text() + "\n\ndef _model():\n    from dlcli.models import exports\n")
    edges, modules = graph(tmp_path)
    problems = upward_imports(edges, modules, tmp_path)
    assert len(problems) == 1 and problems[0].startswith("dlcli/runs/rundir.py:") and "imports dlcli.models.exports" in problems[0]
    assert "dlcli.runs (layer 1) may not import dlcli.models (layer 3)" in problems[0]
    assert any(circle[0] == circle[-1] and "dlcli.runs.rundir" in circle for circle in cycles(edges))


@pytest.mark.parametrize("package", ["dlcli", "recipes"])
def test_long_modules_say_why_at_the_top(package):
    """A module over ~400 lines says at its top why it is one module (CONVENTIONS.md)."""
    for path in (REPO / package).rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > 420:
            docstring = ast.get_docstring(ast.parse(text)) or ""
            assert "one module" in docstring.lower(), f"{path.relative_to(REPO)}: {len(text.splitlines())} lines, and its docstring does not say why it is one module"
