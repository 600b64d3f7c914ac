# sapool-mmdet: `make demo` trains and evaluates the demo detector,
# `make test` runs the test suite. Both run `make install` first.
#
# Every install step writes its own stamp file under .venv, so a second run
# skips what is done, and a failing step stops make with the step's name in
# its error line (e.g. `[Makefile:40: .venv/.step-mmcv] Error 1`).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# Versions and why each is pinned: see README.md, "Pinned versions".
TORCH := torch==2.13.0
SETUPTOOLS := "setuptools>=77,<81"
NUMPY := "numpy>=1.24,<2"
MMCV := mmcv==2.1.0
MMENGINE := mmengine==0.10.7
MMDET := mmdet==3.3.0
PYCOCOTOOLS := "pycocotools>=2.0.7,<2.1"
MATPLOTLIB := "matplotlib>=3.7,<3.11"
OPENMIM := openmim==0.3.9
PYTEST := "pytest>=7,<9"
# Extra pip arguments for the torch step, e.g. the CPU wheel index on a
# machine whose default index serves CUDA builds:
#   make install TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=

DEMO_DATA := data/synthetic_driving
DEMO_CONFIG := configs/demo/ssd_mbv2_nlp.py

.PHONY: install demo test test-quick clean

install: $(VENV)/.step-package

$(VENV)/.step-venv:
	@echo "[install] creating virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@touch $@

$(VENV)/.step-torch: $(VENV)/.step-venv
	@echo "[install] torch 2.13.0 (CPU build)"
	$(PIP) install --quiet $(TORCH_PIP_ARGS) $(TORCH)
	$(PIP) install --quiet $(NUMPY) $(SETUPTOOLS) wheel
	@touch $@

$(VENV)/.step-mmcv: $(VENV)/.step-torch
	@echo "[install] mmcv 2.1.0 with compiled ops (built from source: about 7 min on 2 cores the first time, then pip's wheel cache)"
	MMCV_WITH_OPS=1 $(PIP) install --no-build-isolation $(MMCV) $(TORCH) $(NUMPY) $(MATPLOTLIB)
	@touch $@

$(VENV)/.step-mm: $(VENV)/.step-mmcv
	@echo "[install] mmengine, mmdet 3.3.0, pycocotools, matplotlib, openmim, pytest"
	$(PIP) install --quiet $(MMENGINE) $(MMDET) $(PYCOCOTOOLS) $(MATPLOTLIB) $(OPENMIM) $(PYTEST) $(TORCH) $(NUMPY) $(MMCV)
	@echo "[install] restoring the setuptools pin (openmim's openxlab downgrades it)"
	$(PIP) install --quiet $(SETUPTOOLS)
	@touch $@

$(VENV)/.step-package: $(VENV)/.step-mm setup.py
	@echo "[install] sapool_mmdet (editable)"
	$(PIP) install --quiet --no-build-isolation --no-deps -e .
	$(PY) -c "import sapool_mmdet, mmcv.ops; print('[install] ok: sapool_mmdet', sapool_mmdet.__version__)"
	@touch $@

demo: install
	$(PY) tools/demo.py --data $(DEMO_DATA) --config $(DEMO_CONFIG) --work-dir work_dirs/demo

test: install
	$(PY) -m pytest -q tests

test-quick: install
	$(PY) -m pytest -q -m "not slow" tests

clean:
	rm -rf work_dirs build *.egg-info
