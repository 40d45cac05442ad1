# Two commands on a fresh machine:  `make run` (the demo)  and  `make test`.
# Both first run `make setup`, which is idempotent.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.sslx-installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
PLUGIN_PROJECTS := $(wildcard plugins/*/pyproject.toml)
PLUGIN_ARGS = $$($(PY) -c 'import tomllib; print(" ".join("-e " + p["path"] for p in tomllib.load(open("plugins.toml", "rb"))["plugin"]))')

.PHONY: setup data espeak fashion-mnist run lint test chromium test-browser slurm test-slurm

setup: $(STAMP) data

$(STAMP): pyproject.toml plugins.toml $(PLUGIN_PROJECTS)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check "setuptools<81" wheel
	$(PY) -m pip install --quiet --disable-pip-version-check torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet --disable-pip-version-check --no-build-isolation -e ".[test]" $(PLUGIN_ARGS)
	touch $(STAMP)

# Fashion-MNIST from Debian's dataset-fashion-mnist, unless SSLX_FASHION_MNIST_DIR points at the files;
# espeak-ng for the talking digits; then `sslx data prepare all` fills the data folder ($SSLX_DATA_DIR or
# ~/.cache/sslx) once: MNIST digits, the real video clips, the spoken digit names.
data: $(STAMP) fashion-mnist espeak
	$(VENV)/bin/sslx data prepare all

espeak:
	@command -v espeak-ng >/dev/null 2>&1 && exit 0; \
	if command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q espeak-ng >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q espeak-ng >/dev/null; } || \
	  { echo "Could not install Debian's espeak-ng with apt-get." >&2; exit 1; }; \
	else \
	  echo "espeak-ng is missing: install it (it speaks the digit names of the talking-digits data)." >&2; exit 1; \
	fi

fashion-mnist:
	@if [ -n "$$SSLX_FASHION_MNIST_DIR" ] || [ -f $(FMNIST) ]; then exit 0; fi; \
	if command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q dataset-fashion-mnist >/dev/null; } || \
	  { echo "Could not install Debian's dataset-fashion-mnist with apt-get." >&2; exit 1; }; \
	else \
	  echo "Fashion-MNIST is missing: no apt-get here to install Debian's dataset-fashion-mnist." >&2; \
	  echo "Put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and" >&2; \
	  echo "t10k-labels-idx1-ubyte.gz (from https://github.com/zalandoresearch/fashion-mnist) in a folder" >&2; \
	  echo "and set SSLX_FASHION_MNIST_DIR to it." >&2; exit 1; \
	fi

run: setup
	$(VENV)/bin/sslx run experiments/moco.json

# Lint (ruff), format check and types (mypy) first: seconds, and a failure there needs no test run to be seen.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The suite on every core (pytest-xdist); each worker trains with one thread (conftest.py). The sweep's SLURM
# tests start a one-node cluster of Debian's slurm-wlm (`make slurm` installs it; they skip where it cannot run).
test: setup slurm lint
	$(PY) -m pytest -n auto --dist load

# The tests of `sslx board`: Omniboard (installed with npm on first use: about 2 minutes, once per machine) over a
# SecantusDB server, its listening address and its end with sslx board's, and the page screenshotted by headless
# Debian chromium. `make test` runs the first ones only where Omniboard is installed already.
chromium:
	@command -v chromium >/dev/null 2>&1 && exit 0; \
	if command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q chromium >/dev/null; } || \
	  { echo "Could not install Debian's chromium with apt-get." >&2; exit 1; }; \
	else \
	  echo "chromium is missing: install it (the browser test screenshots Omniboard with it headless)." >&2; exit 1; \
	fi

test-browser: setup chromium
	SSLX_TEST_INSTALL_OMNIBOARD=1 $(PY) -m pytest -m "browser or not browser" plugins/mongo/tests/test_board.py

# The sweep's SLURM tests (submitit) against a real one-node cluster that the tests start under their temporary
# folder and stop (plugins/sweep/tests/slurm_cluster.py): Debian's slurm-wlm and munge, as root.
slurm:
	@command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 && exit 0; \
	if command -v apt-get >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get install -y -q slurm-wlm munge >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && $$SUDO apt-get install -y -q slurm-wlm munge >/dev/null; } || \
	  { echo "Could not install Debian's slurm-wlm and munge with apt-get." >&2; exit 1; }; \
	else \
	  echo "SLURM is missing: install slurmctld, slurmd and munged (the sweep's SLURM tests start a cluster of them)." >&2; exit 1; \
	fi

test-slurm: setup slurm
	$(PY) -m pytest -m slurm plugins/sweep/tests
