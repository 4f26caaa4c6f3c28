"""Plain tables for notebooks (HTML) and terminals (aligned text), from rows of strings."""

from __future__ import annotations

import html
from collections.abc import Sequence

__all__ = ["Table"]


class Table:
    """A header and rows of cells; ``str()`` aligns them, notebooks show HTML.

    >>> print(Table(["n", "rf"], [[55, 11], [27, 19]]))
    n   rf
    55  11
    27  19
    """

    def __init__(self, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
        self.header = [str(cell) for cell in header]
        self.body = [[str(cell) for cell in row] for row in rows]

    def __str__(self) -> str:
        cells = [self.header, *self.body]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.header))]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                         for row in cells)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        th = "".join(f"<th>{html.escape(c)}</th>" for c in self.header)
        trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                      for row in self.body)
        return (f'<table class="rfviz-table"><thead><tr>{th}</tr></thead>'
                f"<tbody>{trs}</tbody></table>")
