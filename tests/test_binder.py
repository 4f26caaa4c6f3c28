"""binder/ must install what the notebooks import, pinned exactly as requirements.txt pins it."""

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==([^\s+#]+)(\+\w+)?")


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text().splitlines():
        match = PIN.match(line.strip())
        if match:
            found[match[1].lower()] = match[2]
    return found


def imported_top_level(notebook: Path) -> set[str]:
    import json

    names = set()
    for cell in json.loads(notebook.read_text())["cells"]:
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse("".join(cell["source"]))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module.split(".")[0])
    return names


def test_shared_packages_have_the_same_versions():
    main, binder = pins(ROOT / "requirements.txt"), pins(ROOT / "binder" / "requirements.txt")
    shared = set(main) & set(binder)
    assert {"torch", "torchvision", "ipywidgets", "jupyterlab", "matplotlib"} <= shared
    assert {name: binder[name] for name in shared} == {name: main[name] for name in shared}


def test_binder_uses_cpu_torch_wheels():
    text = (ROOT / "binder" / "requirements.txt").read_text()
    assert re.search(r"^torch==[\d.]+\+cpu$", text, re.MULTILINE)
    assert re.search(r"^torchvision==[\d.]+\+cpu$", text, re.MULTILINE)


def test_binder_installs_everything_the_notebooks_import():
    provided = set(pins(ROOT / "binder" / "requirements.txt")) | {"rfviz"}
    aliases = {"pil": "pillow"}
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        needed = {aliases.get(name.lower(), name.lower())
                  for name in imported_top_level(notebook) if name not in sys.stdlib_module_names}
        assert needed <= provided, (notebook.name, needed - provided)
    assert "pip install --no-deps -e ." in (ROOT / "binder" / "postBuild").read_text()
