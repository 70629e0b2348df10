# The two commands of a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and torchvision as they lie on this machine's disk (CPU use; installs without downloading)
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: install test demo clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/gmdrit train --preset quickstart --run-dir runs/demo
	@echo "run folder: runs/demo (config.yaml, metrics.jsonl, samples/, checkpoints/)"

clean:
	rm -rf $(VENV) runs *.egg-info
