"""Every number a lesson's prose states is held by its code: a number ≥ 10 in a markdown cell
must appear in the notebook's code or in its stored outputs, so a change in the computation
fails a test instead of leaving the sentence wrong. Years, citations, powers of ten written as
``10^{-12}`` and model names (ResNet-50, vgg16, conv4_x, layer3) are not results."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
NUMBER = re.compile(r"(?<![\w.\-/])(\d+(?:\.\d+)?)(?!\w)")
NOT_RESULTS = [
    re.compile(r"\([^()]*\b(?:19|20)\d\d[a-z]?\b[^()]*\)"),  # (Luo et al., 2016, "…")
    re.compile(r"https?://\S+"),
    re.compile(r"10\^\{?-?\d+\}?"),  # 10^{-12}: an order of magnitude
    re.compile(r"\b[A-Za-z]+[-_]?\d+[A-Za-z0-9_]*\b"),  # ResNet-50, vgg16, conv4_x, layer3
]


def prose_and_held(path: Path) -> tuple[list[str], set[str]]:
    cells = json.loads(path.read_text())["cells"]
    prose = ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]
    held = []
    for cell in cells:
        if cell["cell_type"] == "code":
            held.append("".join(cell["source"]))
            for output in cell.get("outputs", []):
                held.append("".join(output.get("text", "")))
                held += ["".join(output.get("data", {}).get(kind, ""))
                         for kind in ("text/plain", "text/html", "text/markdown")]
    return prose, set(NUMBER.findall("\n".join(held)))


def stated_numbers(text: str) -> list[str]:
    for pattern in NOT_RESULTS:
        text = pattern.sub(" ", text)
    return [n for n in NUMBER.findall(text)
            if float(n) >= 10 and not re.fullmatch(r"(?:19|20)\d\d", n)]


def test_the_checker_sees_a_typed_in_number():
    assert stated_numbers("ResNet-50's layer3 field is 267 px (He et al., 2016), 10^{-12}") == [
        "267"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_number_in_the_prose_is_held_by_the_code(path):
    prose, held = prose_and_held(path)
    unheld = sorted({n for text in prose for n in stated_numbers(text) if n not in held},
                    key=float)
    assert not unheld, f"{path.name}: prose states {unheld}, which no code or output shows"
