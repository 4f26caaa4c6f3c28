"""Each lesson run top to bottom in a fresh kernel, as a student's "Run All Cells" would.

Prints the seconds each notebook takes and the total (target: the whole suite ≤ 3 minutes on
a 2-core machine), and each kernel's peak resident memory (target: ≤ 1.5 GB, so that a lesson
fits in a Binder session's 2 GB; a kernel that only imports torch is printed for scale: it is
several hundred MiB smaller with Binder's CPU-only wheel). Fails loudly if a cell errors that is
not tagged ``raises-exception``. The committed notebooks are read, never written.

Run: ``.venv/bin/python benchmarks/bench_notebooks.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
PEAK_MB = "import resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"


def run(notebook, folder: Path) -> tuple[float, float]:
    """Seconds to run every cell in a fresh kernel, and the kernel's peak memory in MiB."""
    notebook.cells.append(nbformat.v4.new_code_cell(PEAK_MB))
    start = time.perf_counter()
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute()
    seconds = time.perf_counter() - start
    return seconds, float(notebook.cells[-1].outputs[0]["text"])


def main() -> None:
    total, peaks = 0.0, []
    for path in NOTEBOOKS:
        seconds, peak_mb = run(nbformat.read(path, as_version=4), path.parent)
        total += seconds
        peaks.append(peak_mb)
        print(f"{path.name:40} {seconds:6.1f} s {peak_mb:7.0f} MiB peak")
    print(f"{'all notebooks':40} {total:6.1f} s   (target ≤ 180 s); "
          f"largest peak {max(peaks):.0f} MiB (target ≤ 1536 MiB)")
    torch_only = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import torch")])
    _, torch_mb = run(torch_only, NOTEBOOKS[0].parent)
    print(f"{'a kernel that only imports torch':40} {torch_mb:16.0f} MiB peak")


if __name__ == "__main__":
    main()
