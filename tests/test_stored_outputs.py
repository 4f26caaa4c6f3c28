"""What the committed notebooks show a reader on GitHub or Binder before anything runs."""

import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_stored_error_is_its_message_only(path):
    # `make notebooks` stores errors in IPython's Minimal mode: no machine paths, no library
    # source; only cells tagged raises-exception may hold one.
    for cell in json.loads(path.read_text())["cells"]:
        for output in cell.get("outputs", []):
            if output["output_type"] == "error":
                assert "raises-exception" in cell["metadata"].get("tags", [])
                assert len(output["traceback"]) == 1, output["traceback"]
                assert "/" not in output["traceback"][0].split(":", 1)[0]
