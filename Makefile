# Two commands on a fresh clone: `make demo` and `make test`. Both create .venv when missing and
# install from this repo's own files. Without an accelerator driver on the machine, torch is
# pinned to its CPU build (constraints/cpu.txt) so pip never pulls a multi-GB CUDA build.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.anyware-installed
ACCEL_DRIVER := $(shell command -v nvidia-smi rocm-smi npu-smi cnmon xpu-smi 2>/dev/null | head -n 1)
CONSTRAINTS  ?= $(if $(ACCEL_DRIVER),,constraints/cpu.txt)
PIP_FLAGS    := --disable-pip-version-check -q $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
PYTEST_ARGS  ?=
LINT_DIRS    := $(wildcard src tests benchmarks examples)

.PHONY: demo test lint typecheck pytest install clean browser-deps

$(STAMP): pyproject.toml constraints/cpu.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -e '.[dev]'
	@touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/anyware demo

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_DIRS)
	$(BIN)/ruff format --check $(LINT_DIRS)

typecheck: $(STAMP)
	$(BIN)/mypy

# Browser tests drive Debian's chromium through Playwright; install it when missing and we may.
browser-deps:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -q && apt-get install -y -q chromium; fi

pytest: $(STAMP) browser-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
