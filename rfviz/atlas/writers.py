"""The atlas's files: ``atlas.json`` (the rows and the versions that made them),
``atlas.csv`` (one line per row) and ``README.md`` (:mod:`.markdown`), written and read."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from .markdown import readme
from .networks import versions
from .rows import COLUMNS

__all__ = ["read", "to_csv", "write"]


def write(rows: Sequence[dict], out: Path | str) -> None:
    """``README.md``, ``atlas.csv`` and ``atlas.json`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = versions()
    (out / "atlas.json").write_text(json.dumps({"versions": meta, "columns": list(COLUMNS),
                                                "rows": list(rows)}, indent=1,
                                               ensure_ascii=False) + "\n")
    (out / "atlas.csv").write_text(to_csv(rows))
    (out / "README.md").write_text(readme(rows, meta))


def read(out: Path | str) -> list[dict]:
    """The rows of the atlas in directory ``out`` (its ``atlas.json``), as :func:`write` wrote
    them: one dict per row, keys :data:`~rfviz.atlas.rows.COLUMNS` (those a row has)."""
    return json.loads((Path(out) / "atlas.json").read_text())["rows"]


def to_csv(rows: Iterable[dict]) -> str:
    """One line per row; per-axis values joined by "×" (H×W, or T×H×W)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in COLUMNS])
    return buffer.getvalue()


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return "×".join(map(str, value))
    if isinstance(value, bool):
        return "yes" if value else ""
    return str(value)
