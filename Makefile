# Entry points: `make demo` (the main job on the embedded default), `make test`, and `make docker-test`
# (builds the CPU engine-builder image and an engine in it; root, buildah and mmdebstrap: see docs/deploy.md).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-serving.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -r requirements-serving.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/compsrt pipeline --out outputs/pipeline

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) outputs

# Docker images and on-device runs (need a Docker engine and an NVIDIA GPU; see docs/deploy.md).
.PHONY: docker-desktop docker-jetson docker-engine
docker-desktop:
	docker/run.sh build-desktop
docker-jetson:
	docker/run.sh build-jetson
docker-engine:
	docker/run.sh engine --onnx $(ONNX)

# The CPU engine-builder image built with buildah and run: an engine built in it must equal the host's build.
# Needs root, buildah and mmdebstrap (Debian 12; .ci/run installs them); no Docker engine, no GPU.
.PHONY: docker-test
docker-test: $(STAMP)
	PYTHON=$(PY) docker/cpu_image_check.sh
