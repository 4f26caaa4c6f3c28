# Two commands for a new user: `make lab` opens the notebooks, `make test` runs every test.
# Both create .venv on first use and (re)install when requirements.txt or pyproject.toml change.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# JupyterLab settings for a class: no "Jupyter news?" toast over the lesson, no update check.
LAB_SETTINGS := $(VENV)/share/jupyter/lab/settings/overrides.json
# JupyterLab refuses root unless told (containers and cloud machines often run as root);
# it listens on 127.0.0.1 only either way. LAB_ARGS passes more options (e.g. --port=8890).
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root)
LAB_ARGS ?=

.PHONY: lab test test-one-thread notebooks bench lint clean atlas

$(STAMP): requirements.txt pyproject.toml binder/overrides.json
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	mkdir -p $(dir $(LAB_SETTINGS)) && cp binder/overrides.json $(LAB_SETTINGS)
	touch $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks --ServerApp.ip=127.0.0.1 $(ALLOW_ROOT) $(LAB_ARGS)

test: $(STAMP)
	$(PY) -m ruff check rfviz tests benchmarks
	$(PY) -m pytest

# The lessons and the float-comparing tests on one thread: the sums run in another order, and
# every stored output and every bound must still hold (CI runs this after `make test`).
test-one-thread: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q notebooks tests/test_tiling.py tests/test_probe.py tests/test_erf.py \
		tests/test_split.py tests/test_decoder_tiling.py tests/test_blend.py \
		tests/test_staged.py tests/test_swin.py

# Re-run every lesson in place, storing its outputs (they are committed: read on GitHub and
# Binder). Errors are stored as their one exception line (a cell that fails on purpose shows the
# message, no machine paths or library source). NB=notebooks/05_tile_margins.ipynb: just one.
NB ?= notebooks/*.ipynb
notebooks: $(STAMP)
	$(VENV)/bin/jupyter nbconvert --to notebook --execute --inplace \
		--ExecutePreprocessor.extra_arguments="['--InteractiveShell.xmode=Minimal']" $(NB)

bench: $(STAMP)
	$(PY) benchmarks/bench_draw.py
	$(PY) benchmarks/bench_trace.py
	$(PY) benchmarks/bench_tiling.py
	$(PY) benchmarks/bench_decoder_tiling.py
	$(PY) benchmarks/bench_atlas.py
	$(PY) benchmarks/bench_erf.py
	$(PY) benchmarks/bench_notebooks.py

# The receptive-field atlas (docs/atlas: README.md, atlas.csv, atlas.json): every torchvision
# network and timm's convolutional families, built on the meta device (nothing downloaded).
atlas: $(STAMP)
	$(PY) -m rfviz atlas --out docs/atlas

lint: $(STAMP)
	$(PY) -m ruff check rfviz tests benchmarks

clean:
	rm -rf $(VENV)
