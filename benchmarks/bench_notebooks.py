"""Each lesson run top to bottom in a fresh kernel, as a student's "Run All Cells" would.

Prints the seconds each notebook takes and the total (target: the whole suite ≤ 3 minutes on
a 2-core machine), and fails loudly if a cell errors that is not tagged ``raises-exception``.
The committed notebooks are read, never written.

Run: ``.venv/bin/python benchmarks/bench_notebooks.py``.
"""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def main() -> None:
    total = 0.0
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(notebook, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{path.name:40} {seconds:6.1f} s")
    print(f"{'all notebooks':40} {total:6.1f} s   (target ≤ 180 s)")


if __name__ == "__main__":
    main()
