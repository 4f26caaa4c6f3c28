# Two commands for a new user: `make lab` opens the notebooks, `make test` runs every test.
# Both create .venv on first use and (re)install when requirements.txt or pyproject.toml change.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: lab test bench lint clean

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

test: $(STAMP)
	$(PY) -m ruff check rfviz tests benchmarks
	$(PY) -m pytest

bench: $(STAMP)
	$(PY) benchmarks/bench_draw.py
	$(PY) benchmarks/bench_trace.py
	$(PY) benchmarks/bench_tiling.py
	$(PY) benchmarks/bench_erf.py
	$(PY) benchmarks/bench_notebooks.py

lint: $(STAMP)
	$(PY) -m ruff check rfviz tests benchmarks

clean:
	rm -rf $(VENV)
