"""The result of tracing a model: one row per op, with its shape and receptive field.

Plain data, no torch: :func:`rfviz.trace` builds a :class:`LayerTable`; notebooks show it as
HTML, terminals as aligned text.

>>> from rfviz.field import Field, ReceptiveField
>>> row = LayerRow("conv1", "Conv2d", (64, 112, 112), Field((ReceptiveField(7, 2, 3),) * 2),
...                kernel=(7, 7), stride=(2, 2), padding=(3, 3), dilation=(1, 1))
>>> print(LayerTable((row,), input_shape=(3, 224, 224)))
layer  op      kernel  stride  padding  dilation  output       field  jump  eff. padding
conv1  Conv2d  7       2       3        1         64×112×112   7      2     3
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from .field import CannotFollow, Field, by
from .table import Table

__all__ = ["LayerRow", "LayerTable", "RfvizWarning"]


class RfvizWarning(UserWarning):
    """An op rfviz cannot follow: the fields after it are unknown."""


@dataclass(frozen=True)
class LayerRow:
    """One op of the traced graph, in execution order."""

    name: str  # named_modules() path, or parent path + function name for functions
    op: str
    shape: tuple[int, ...]  # output shape without the batch dimension, e.g. (C, H, W)
    field: Field
    input_shape: tuple[int, ...] = ()  # shape of its (first) tensor input, without the batch
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | None = None
    dilation: tuple[int, ...] | None = None
    scopes: tuple[str, ...] = ()  # every module path this op runs inside
    node: str = ""  # the torch.fx node name, to cut the graph here (rfviz.probe)


@dataclass(frozen=True)
class LayerTable(Sequence):
    """Rows of :func:`trace`; index by position or by name, print as text, show as HTML."""

    rows: tuple[LayerRow, ...]
    input_shape: tuple[int, ...]
    problems: tuple[tuple[int, CannotFollow], ...] = ()  # (row index, the op not followed)

    def warn(self, up_to: int | None = None) -> None:
        """Warn (once per kind of op) about the ops rfviz could not follow, up to a row."""
        said = set()
        for index, problem in self.problems:
            if (up_to is None or index <= up_to) and problem.op not in said:
                warnings.warn(f"{problem}; fields after it are unknown", RfvizWarning,
                              stacklevel=3)
                said.add(problem.op)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.find(key)
        return self.rows[key]

    def __iter__(self) -> Iterator[LayerRow]:
        return iter(self.rows)

    def only(self, *ops: str) -> LayerTable:
        """The rows whose op is one of ``ops`` (e.g. ``"Conv2d", "MaxPool2d"``)."""
        return replace(self, rows=tuple(row for row in self.rows if row.op in ops),
                       problems=())

    def names(self) -> list[str]:
        """Every name :meth:`find` accepts: row names and the module paths they run in."""
        names = dict.fromkeys(row.name for row in self.rows)
        for row in self.rows:
            names.update(dict.fromkeys(row.scopes))
        return list(names)

    def find(self, name: str) -> LayerRow:
        """The row of ``name``: an op, or the last op inside module ``name`` (its output)."""
        exact = [row for row in self.rows if row.name == name]
        if exact:
            return exact[0]
        inside = [row for row in self.rows if name in row.scopes]
        if inside:
            return inside[-1]
        close = difflib.get_close_matches(name, self.names(), n=5, cutoff=0.5)
        hint = f"; closest: {', '.join(repr(c) for c in close)}" if close else ""
        raise ValueError(f"layer={name!r} is not in the model{hint}")

    def table(self) -> Table:
        """The rows as a plain :class:`~rfviz.table.Table` (what ``str`` and notebooks show)."""
        header = ["layer", "op", "kernel", "stride", "padding", "dilation", "output", "field",
                  "jump", "eff. padding"]
        body = []
        for row in self.rows:
            known = row.field.known
            body.append([
                row.name, row.op,
                *(by(v) if v else "" for v in (row.kernel, row.stride, row.padding,
                                                row.dilation)),
                "×".join(map(str, row.shape)),
                _size(row.field) if known else str(row.field),
                by(row.field.stride) if known else "",
                by(row.field.padding) if known and not row.field.per_unit else "",
            ])
        return Table(header, body)

    def __str__(self) -> str:
        return str(self.table())

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()

    def __repr__(self) -> str:
        return f"<LayerTable: {len(self.rows)} ops, input {tuple(self.input_shape)}>\n{self}"


def _size(field: Field) -> str:
    """The field's size; "≤ 7" where units see different spans (the largest)."""
    return f"≤ {by(field.size)}" if field.per_unit else by(field.size)
