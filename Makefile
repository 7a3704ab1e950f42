# The README's two commands: `make demo` (set up, train the embedded digits default, sample) and
# `make test` (set up with the test extra, run the suite; .ci/run calls it). Both are idempotent:
# a rerun reuses the environment, resumes or skips finished training and reuses finished samples.
#
# Variables (make demo VAR=value):
#   PYTHON           the interpreter that creates .venv (default python3)
#   VENV             where the virtual environment goes when none is active (default .venv)
#   TORCH            the torch requirement installed when torch is missing (default: the
#                    version CI tests; `TORCH=torch` takes the newest)
#   TORCH_INDEX_URL  an extra index for torch only, e.g. https://download.pytorch.org/whl/cpu
#                    (a CPU-only build: a smaller download); default: none, the default index
#   WORKDIR          the demo's workdir (default runs/digits)

PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
TORCH_INDEX_URL ?=
WORKDIR ?= runs/digits
TORCH_INSTALL := "$(TORCH)"$(if $(TORCH_INDEX_URL), --index-url $(TORCH_INDEX_URL))

# An active virtual environment (or conda environment) is used as it is; else .venv in the clone.
ifneq ($(VIRTUAL_ENV)$(CONDA_PREFIX),)
BIN :=
else
BIN := $(VENV)/bin/
endif
PY := $(BIN)python
ENV_READY := $(if $(BIN),$(VENV)/bin/python)

.PHONY: demo test install install-test

demo: install
	$(PY) main.py --config configs/vp_digits.py --workdir $(WORKDIR) --mode train
	$(PY) main.py --workdir $(WORKDIR) --mode sample --config.sampling.method=dpm_solver
	@echo "TensorBoard: $(BIN)tensorboard --logdir $(WORKDIR)/tensorboard"

test: install-test
	$(PY) -m pytest -n 2

install: $(ENV_READY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH_INSTALL)
	$(PY) -m pip install -e .

install-test: $(ENV_READY)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install $(TORCH_INSTALL)
	$(PY) -m pip install -e ".[test]"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
