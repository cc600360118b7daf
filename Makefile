# The two commands of the README:  `make demo`  and  `make test`.
# Both create the virtual environment .venv on first use (torch pinned here, ranges in pyproject.toml).
PYTHON ?= python3
VENV := .venv
TORCH_PIN := torch==2.14.1 torchvision==0.29.1

.PHONY: setup demo test lint bench

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet $(TORCH_PIN)
	$(VENV)/bin/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/statechange demo --output statechange-demo

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q

bench: setup
	$(VENV)/bin/python benchmarks/ordering.py
	$(VENV)/bin/python benchmarks/data.py
