# Two entry points: `make demo` and `make test`. Both set up what they need and are idempotent.
SHELL := /bin/bash
PY := .venv/bin/python
PIP := .venv/bin/pip
STAMP := .venv/.installed
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

.PHONY: demo test lint setup data clean gpu-check

setup: $(STAMP)

# torch/torchvision are capped by constraints.txt to the builds on this machine's local disk.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q -c constraints.txt -e '.[test]'
	touch $(STAMP)

data: $(FMNIST)

$(FMNIST):
	@bash scripts/ensure-fashion-mnist.sh

lint: setup
	.venv/bin/ruff check platform tests

test: setup data lint
	RAY_AUTH_MODE=disabled RAY_ENABLE_UV_RUN_RUNTIME_ENV=0 $(PY) -m pytest -q -x -n 2 --dist loadfile --durations=15 tests

demo: setup data
	RAY_AUTH_MODE=disabled .venv/bin/streamssl demo --out runs/demo

gpu-check: setup
	RAY_AUTH_MODE=disabled .venv/bin/streamssl bench gpu

clean:
	rm -rf runs .pytest_cache
