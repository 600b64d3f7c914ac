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
# The exact versions we test; setup.py itself takes ranges (README.md,
# "Version ranges"). Every pip step below installs under these constraints.
CONSTRAINTS := constraints.txt
PIP_INSTALL := $(PIP) install --quiet -c $(CONSTRAINTS)
# setuptools is pinned here, not in the constraints: openmim's dependencies
# ask for an old one, so the last step puts this range back.
SETUPTOOLS := "setuptools>=77,<81"
# Compiler flags of the mmcv ops build (README.md, "Installation").
MMCV_BUILD_FLAGS ?= -O1 -g0
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

$(VENV)/.step-torch: $(VENV)/.step-venv $(CONSTRAINTS)
	@echo "[install] torch (CPU build; version from $(CONSTRAINTS))"
	$(PIP_INSTALL) $(TORCH_PIP_ARGS) torch
	$(PIP_INSTALL) numpy wheel ninja $(SETUPTOOLS)
	@touch $@

$(VENV)/.step-mmcv: $(VENV)/.step-torch
	@echo "[install] mmcv with compiled ops, built from source with CFLAGS='$(MMCV_BUILD_FLAGS)' (README: about N min on 2 cores the first time, then pip's wheel cache)"
	MMCV_WITH_OPS=1 CFLAGS="$(MMCV_BUILD_FLAGS)" CXXFLAGS="$(MMCV_BUILD_FLAGS)" \
		$(PIP_INSTALL) --no-build-isolation mmcv
	@touch $@

$(VENV)/.step-mm: $(VENV)/.step-mmcv
	@echo "[install] mmengine, mmdet, pycocotools, matplotlib, terminaltables, Pillow, openmim, pytest, onnx, onnxruntime"
	$(PIP_INSTALL) mmengine mmdet pycocotools matplotlib terminaltables Pillow openmim pytest onnx onnxruntime
	@echo "[install] restoring the setuptools pin (openmim's openxlab downgrades it)"
	$(PIP) install --quiet $(SETUPTOOLS)
	@touch $@

$(VENV)/.step-package: $(VENV)/.step-mm setup.py
	@echo "[install] sapool_mmdet (editable)"
	$(PIP_INSTALL) --no-build-isolation --no-deps -e .
	$(PY) -m sapool_mmdet
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
