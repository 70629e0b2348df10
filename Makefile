# The two commands of a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and torchvision as they lie on this machine's disk (CPU use; installs without downloading)
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

DEMO_REFERENCES := n07749192_11931.jpg n07749192_1680.jpg n07749192_5101.jpg n07749192_681.jpg n07749192_8310.jpg

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
	$(VENV)/bin/gmdrit translate gmdrit_cli/sample_data/apple2orange/testA/n07740461_10011.jpg --domain orange \
		--samples 5 --seed 0 --run runs/demo --out runs/demo/translations
	$(VENV)/bin/gmdrit translate gmdrit_cli/sample_data/apple2orange/testA/n07740461_10011.jpg --domain orange \
		$(foreach f,$(DEMO_REFERENCES),--reference gmdrit_cli/sample_data/apple2orange/testB/$(f)) \
		--seed 0 --run runs/demo --out runs/demo/translations-reference
	$(VENV)/bin/gmdrit interpolate gmdrit_cli/sample_data/apple2orange/testA/n07740461_10011.jpg --domain orange \
		--steps 8 --seed 0 --run runs/demo --out runs/demo/interpolations
	@echo "run folder: runs/demo (config.yaml, metrics.jsonl, samples/, checkpoints/)"
	@echo "translations: runs/demo/translations/ (n07740461_10011_to_orange_1..5.png and _grid.png: input, then the 5 samples)"
	@echo "reference-guided: runs/demo/translations-reference/ (the attribute of 5 test oranges each)"
	@echo "interpolation: runs/demo/interpolations/n07740461_10011_to_orange_random.gif (and .png, the strip)"

clean:
	rm -rf $(VENV) runs *.egg-info
