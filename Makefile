# Two entry points: `make demo` (the main job on the embedded default) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/compsrt upscale compsrt/assets/sample.png outputs/sample_x4.png --scale 4
	$(VENV)/bin/compsrt eval --scale 4 --datasets Set5

test: $(STAMP)
	$(PY) -m pytest -q

clean:
	rm -rf $(VENV) outputs
