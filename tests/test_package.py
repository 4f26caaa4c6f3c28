"""Package-level promises: a light import, the public names the notebooks rely on, every
import declared, and the modules layered one way."""

import ast
import re
import subprocess
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

import rfviz

PACKAGE = Path(rfviz.__file__).parent
ROOT = PACKAGE.parent


def modules_after_import(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    return set(result.stdout.split())


def test_import_rfviz_loads_neither_torch_nor_matplotlib():
    loaded = modules_after_import("import rfviz")
    assert "rfviz.arithmetic" in loaded
    assert not {name for name in loaded if name.split(".")[0] in {"torch", "matplotlib"}}


def test_drawing_names_load_on_first_use_without_torch():
    loaded = modules_after_import("import rfviz; rfviz.draw_pixels1d")
    assert "matplotlib" in loaded and "torch" not in loaded


def test_public_names_resolve():
    for name in rfviz.__all__:
        assert getattr(rfviz, name) is not None, name
    assert rfviz.draw_pixels1d.__module__ == "rfviz.draw.pixels1d"


def test_trace_stays_the_function_whatever_is_imported_first():
    code = ("import rfviz.tiling, rfviz.probe; from rfviz import trace, receptive_field; "
            "print(callable(trace), callable(receptive_field))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["True", "True"]


def imports_of(path: Path) -> set[str]:
    """Top-level names of every module ``path`` imports (nested imports too); relative
    imports as ``rfviz.x``."""
    names = set()
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                names.add(f"{base}.{node.module}" if node.module else base)
            else:
                names.add(node.module)
    return names


def declared_distributions() -> set[str]:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"],
                    *(r for extra in project["optional-dependencies"].values() for r in extra)]
    return {re.split(r"[<>=!~\[ ]", r)[0].lower() for r in requirements}


def test_every_import_of_the_package_is_declared_in_pyproject():
    # `pip install .[torch]` must give everything `import rfviz.<anything>` needs.
    distributions = packages_distributions()
    imported = {name.split(".")[0] for path in PACKAGE.rglob("*.py") for name in imports_of(path)}
    third_party = {name for name in imported
                   if name != "rfviz" and name not in sys.stdlib_module_names}
    needed = {distributions[name][0].lower() for name in third_party}
    assert needed <= declared_distributions(), needed - declared_distributions()
    assert "tqdm" in needed  # the check sees imports (the one that was missing)


# Each module may import only modules of its own layer or below: the pure core, then the
# torch layer, then drawing (matplotlib), then widgets.
LAYERS = [
    {"arithmetic", "field", "spans", "roundoff", "table", "layer_table", "exercises",
     "architectures"},
    {"tracing", "atlas", "probe", "tiling", "erf", "cost", "split",
     "unet", "blend", "staged"},
    {"draw"},
    {"widgets", "explorer", "__main__", "__init__"},
]


def layer_of(module: str) -> int:
    part = module.split(".")[1] if module.count(".") else "__init__"
    return next(i for i, layer in enumerate(LAYERS) if part in layer)


def test_modules_import_downwards_only():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if module == "rfviz.__init__":
            continue  # the facade: loads the others lazily
        for name in imports_of(path):
            if name.startswith("rfviz.") and layer_of(name) > layer_of(module):
                upward.append(f"{module} imports {name}")
    assert not upward
