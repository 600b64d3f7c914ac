# sapool-mmdet: `make demo` trains and evaluates the demo detector,
# `make test` runs the test suite. Both run `make install` first.
#
# Every install step writes its own stamp file under $(VENV), so a second run
# skips what is done, and a failing step stops make with the step's name in
# its error line (e.g. `[Makefile:60: .venv/.step-mmcv-lite] Error 1`).
#
# MMCV=lite (the default) installs mmcv-lite, mmcv without compiled ops:
# nothing is compiled, and sapool_mmdet runs the ops our detectors need (NMS,
# RoIAlign, modulated deformable conv) on torchvision or plain PyTorch
# (docs/installation.md). MMCV=full builds mmcv's compiled ops instead.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The exact versions we test; setup.py itself takes ranges
# (docs/installation.md, "Version ranges"). Every pip step below installs
# under these constraints.
CONSTRAINTS := constraints.txt
PIP_INSTALL := $(PIP) install --quiet -c $(CONSTRAINTS)
# setuptools is pinned here, not in the constraints: openmim's dependencies
# ask for an old one, so the last step puts this range back.
SETUPTOOLS := "setuptools>=77,<81"
# lite: mmcv-lite (pure Python, seconds); full: mmcv built with its ops.
MMCV ?= lite
# Compiler flags of the mmcv ops build (docs/installation.md).
MMCV_BUILD_FLAGS ?= -O1 -g0
# MMCV=full builds the mmcv wheel once into this folder (one per torch
# version: the compiled ops link against torch) and installs it from there.
TORCH_VERSION := $(shell sed -n 's/^torch==//p' $(CONSTRAINTS))
MMCV_WHEELS ?= $(HOME)/.cache/sapool-mmdet/mmcv-wheels/torch-$(TORCH_VERSION)
# Extra pip arguments for the torch step, e.g. the CPU wheel index on a
# machine whose default index serves CUDA builds:
#   make install TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
TORCH_PIP_ARGS ?=

ifeq ($(filter $(MMCV),lite full),)
$(error MMCV=$(MMCV): use MMCV=lite (mmcv-lite, no compiler, the default) or MMCV=full (mmcv built with its compiled ops))
endif

DEMO_DATA := data/synthetic_driving
DEMO_CONFIG := configs/demo/ssd_mbv2_nlp.py

.PHONY: install demo test test-quick gpu-check clean

install: $(VENV)/.step-package

$(VENV)/.step-venv:
	@echo "[install] creating virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@touch $@

$(VENV)/.step-torch: $(VENV)/.step-venv $(CONSTRAINTS)
	@echo "[install] torch (CPU build; version from $(CONSTRAINTS))"
	$(PIP_INSTALL) $(TORCH_PIP_ARGS) torch
	$(PIP_INSTALL) numpy $(SETUPTOOLS)
	@touch $@

# mmcv-lite and mmcv install the same `mmcv` package: each step removes the
# other distribution first and forgets the other step's stamp.
$(VENV)/.step-mmcv-lite: $(VENV)/.step-torch
	@echo "[install] mmcv-lite (no compiled ops; sapool_mmdet runs NMS, RoIAlign and the deformable conv)"
	$(PIP) uninstall --quiet --yes mmcv
	$(PIP_INSTALL) mmcv-lite
	@rm -f $(VENV)/.step-mmcv-full $(VENV)/.step-package
	@touch $@

$(VENV)/.step-mmcv-full: $(VENV)/.step-torch
	@echo "[install] mmcv with compiled ops, built from source with CFLAGS='$(MMCV_BUILD_FLAGS)' (about 7 min on 2 cores the first time, docs/installation.md; then the wheel in $(MMCV_WHEELS))"
	$(PIP_INSTALL) wheel ninja
	ls $(MMCV_WHEELS)/mmcv-*.whl >/dev/null 2>&1 || \
		MMCV_WITH_OPS=1 CFLAGS="$(MMCV_BUILD_FLAGS)" CXXFLAGS="$(MMCV_BUILD_FLAGS)" \
		$(PIP) wheel --quiet -c $(CONSTRAINTS) --no-deps --no-build-isolation \
		--wheel-dir $(MMCV_WHEELS) mmcv
	$(PIP) uninstall --quiet --yes mmcv-lite
	$(PIP_INSTALL) --find-links $(MMCV_WHEELS) mmcv
	@rm -f $(VENV)/.step-mmcv-lite $(VENV)/.step-package
	@touch $@

$(VENV)/.step-mm: $(VENV)/.step-mmcv-$(MMCV)
	@echo "[install] mmengine, mmdet, pycocotools, matplotlib, terminaltables, Pillow, openmim, pytest, onnx, onnxruntime"
	$(PIP_INSTALL) mmengine mmdet pycocotools matplotlib terminaltables Pillow openmim pytest onnx onnxruntime
	@echo "[install] restoring the setuptools pin (openmim's openxlab downgrades it)"
	$(PIP) install --quiet $(SETUPTOOLS)
	@touch $@

$(VENV)/.step-package: $(VENV)/.step-mm $(VENV)/.step-mmcv-$(MMCV) setup.py
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

# Every GPU figure in one bounded run (docs/gpu.md). No `install` here: on a
# GPU machine it would put the CPU torch in place of the machine's own.
GPU_CHECK_OUT ?= work_dirs/gpu_check_$(shell date -u +%Y%m%d-%H%M%S)
gpu-check:
	tools/gpu_check.sh $(GPU_CHECK_OUT)

clean:
	rm -rf work_dirs build *.egg-info
