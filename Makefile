# The two commands of a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch and torchvision as they lie on this machine's disk (CPU use; installs without downloading)
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

DEMO_REFERENCES := n07749192_11931.jpg n07749192_1680.jpg n07749192_5101.jpg n07749192_681.jpg n07749192_8310.jpg

.PHONY: install test test-fast lint demo pretrained-onnx clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

test: install lint
	$(PY) -m pytest -q

# the quick loop while working: every test but the slow, multi-process and browser ones (pyproject's markers)
test-fast: install
	$(PY) -m pytest -q -m "not slow and not distributed and not browser"

# ruff: the lint rules and the format of pyproject.toml's [tool.ruff]
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

SAMPLE := gmdrit_cli/sample_data/apple2orange
DEMO_APPLE := $(SAMPLE)/testA/n07740461_10011.jpg

# The pretrained GM-DRIT model inside the package translates an apple (5 random attributes, then the
# attributes of 5 test oranges) and morphs between two random draws; then a one-minute GM-DRIT training
# on the embedded sample shows the training loop (an earlier runs/demo/train, perhaps resumed since, is moved aside
# to runs/demo/train.prev-DATE, never deleted).
demo: install
	$(VENV)/bin/gmdrit translate $(DEMO_APPLE) --domain orange --samples 5 --seed 0 --out runs/demo/translations
	$(VENV)/bin/gmdrit translate $(DEMO_APPLE) --domain orange \
		$(foreach f,$(DEMO_REFERENCES),--reference $(SAMPLE)/testB/$(f)) --out runs/demo/translations-reference
	$(VENV)/bin/gmdrit interpolate $(DEMO_APPLE) --domain orange --steps 8 --seed 0 --out runs/demo/interpolations
	@if [ -e runs/demo/train ]; then prev=runs/demo/train.prev-$$(date +%Y%m%d-%H%M%S); mv runs/demo/train $$prev; echo "the earlier demo training moved to $$prev (delete it when done)"; fi
	$(VENV)/bin/gmdrit train --preset demo_gmdrit --run-dir runs/demo/train
	@echo "translations (pretrained model): runs/demo/translations/n07740461_10011_to_orange_grid.png (input, then 5 samples)"
	@echo "reference-guided: runs/demo/translations-reference/ (the attributes of 5 test oranges)"
	@echo "interpolation: runs/demo/interpolations/n07740461_10011_to_orange_random.gif (and .png, the strip)"
	@echo "training run: runs/demo/train (config.yaml, metrics.jsonl, samples/iter_*.png, checkpoints/)"

# The int8 ONNX copy of the pretrained model that `gmdrit translate` without --run/--checkpoint runs on onnxruntime
# (no torch): make it again whenever gmdrit_cli/pretrained/apple2orange/model.safetensors changes. Its onnx.json
# records that file's SHA-256; until the copy is made again, translate uses torch (tests/test_onnx_default.py fails).
pretrained-onnx: install
	$(VENV)/bin/gmdrit export gmdrit_cli/pretrained/apple2orange --format onnx --int8 --force \
		--out gmdrit_cli/pretrained/apple2orange-onnx

# build artefacts only: runs/ holds the user's trainings (checkpoints, evals, exports), which no make target deletes
clean:
	rm -rf $(VENV) *.egg-info
