"""Package-level promises: a light import, and the public names the notebooks rely on."""

import subprocess
import sys

import rfviz


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
