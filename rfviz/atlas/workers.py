"""The whole atlas: every network's rows, shared among worker processes, and ``--only``'s
merge of some networks' new rows into the old ones."""

from __future__ import annotations

import fnmatch
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence

import torch

from .networks import catalogue
from .rows import network_rows, reference_rows

__all__ = ["generate", "merge"]


def generate(only: str | None = None, processes: int | None = None,
             progress: Callable[[str, float], None] | None = None) -> list[dict]:
    """Rows of every network whose name matches the pattern ``only`` (fnmatch, e.g.
    ``"resnet*"`` or ``"timm/*"``; all if None), in catalogue order, plus the reference rows.
    Networks are shared among ``processes`` worker processes (default: the CPUs, at most 2);
    ``progress(name, seconds)`` is called as each network is done."""
    networks = [n for n in catalogue() if only is None or fnmatch.fnmatchcase(n.name, only)]
    if only is not None and not networks:
        raise ValueError(f"--only {only!r} matches no network: the pattern matches network "
                         "names, e.g. 'resnet*', 'fcn_*', 'timm/*' (see docs/atlas)")
    processes = processes or min(2, os.cpu_count() or 1)
    results: dict[str, list[dict]] = {}
    if processes > 1 and len(networks) > 1:
        with multiprocessing.get_context("fork").Pool(processes, _worker_init) as pool:
            done = pool.imap_unordered(_timed_rows, [n.name for n in networks])
            for name, rows, seconds in done:
                results[name] = rows
                if progress:
                    progress(name, seconds)
    else:
        for network in networks:
            name, results[network.name], seconds = _timed_rows(network.name)
            if progress:
                progress(name, seconds)
    rows = [row for network in networks for row in results[network.name]]
    return rows + (reference_rows() if only is None else [])


def _worker_init() -> None:
    torch.set_num_threads(1)


def _timed_rows(name: str) -> tuple[str, list[dict], float]:
    start = time.perf_counter()
    rows = network_rows(name)
    return name, rows, time.perf_counter() - start


def merge(old: Sequence[dict], new: Sequence[dict], only: str) -> list[dict]:
    """``old`` with the rows of the networks matching ``only`` replaced by ``new``'s, in
    catalogue order (``--only`` regenerates part of the atlas)."""
    order = {n.name: i for i, n in enumerate(catalogue())}
    kept = [r for r in old if not fnmatch.fnmatchcase(r["model"], only)
            or r["group"] == "reference"]
    rows = kept + list(new)
    return sorted(rows, key=lambda r: (r["group"] == "reference", order.get(r["model"], 0)))


# --- files ------------------------------------------------------------------------------------
