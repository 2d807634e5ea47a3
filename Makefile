# Every target uses the virtual environment in .venv/; `make install` creates it for the analysis,
# `make install-train` adds what training needs (torch).
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
DATA   ?= ../shared/data
OUTPUT ?= output
# The shipped file's members (MODEL_CARD.md): ResNet-18 seeds trained then fine-tuned with
# glasses, and seeds trained with glasses from the first epoch.
FT_SEEDS      ?= 1
GLASSES_SEEDS ?= 0 1
# The multitask member (mask and emotion heads) is the glasses seed 0 fine-tuned on three sets,
# trained on with synthetic masks, then twice more (plain and class-weighted): the mean of the
# last two networks' weights, its heads read from each face and its mirror image.
MEMBERS        = --run runs/ft-seed1 --run runs/g30-seed1 --run runs/mtw-seed0,runs/mtc-seed0 --mirror-heads emotion,mask
VERSION        = resnet18x3-mtsoup-80px

.DEFAULT_GOAL := help
.PHONY: help install install-train test lint format demo train evaluate export bench report nightly clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(PY):
	python3.11 -m venv $(VENV) || python3 -m venv $(VENV)

install: $(PY)  ## create .venv/ for the analysis and reports, with the dev tools (no torch)
	$(PIP) install --upgrade pip
	$(PIP) install -e '.[dev]'

# torch is a CUDA build, some 5 GB of the training install's 6.8 GB (the analysis install is
# 1.5 GB): only training and export need it, so it comes on request.
install-train: install  ## add the train extra (torch, torchvision) to .venv/ for make train
	$(PIP) install -e '.[train,dev]'

test:  ## run the test suite (unit + end-to-end on generated and, when present, shared clips)
	$(PY) -m pytest -q

lint:  ## ruff format check + ruff lint
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format:  ## rewrite files with ruff format and apply safe lint fixes
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

demo:  ## analyse the shipped demo clip end to end and print the tables
	$(PY) -m jobs.demo

train:  ## train the shipped model as it was trained (config/train.yaml; seeds in FT_SEEDS, GLASSES_SEEDS) and export their average
	@$(PY) -c 'import torch' 2>/dev/null || { echo "error: training needs torch: run make install-train" >&2; exit 2; }
	for seed in $(FT_SEEDS); do \
	  $(PY) -m jobs.train --config config/train.yaml --seed $$seed --data $(DATA)/UTKFace-dev.tar.gz --run-dir runs/seed$$seed || exit 1; \
	  $(PY) -m jobs.train --config config/train.yaml --seed $$seed --data $(DATA)/UTKFace-dev.tar.gz --run-dir runs/ft-seed$$seed --init runs/seed$$seed/final.pt || exit 1; \
	done
	for seed in $(GLASSES_SEEDS); do \
	  $(PY) -m jobs.train --config config/train.yaml --variant glasses --seed $$seed --data $(DATA)/UTKFace-dev.tar.gz --run-dir runs/g30-seed$$seed || exit 1; \
	done
	$(PY) -m jobs.train --config config/train.yaml --variant multitask --init runs/g30-seed0/final.pt --data $(DATA)/UTKFace-dev.tar.gz --data $(DATA)/fer2013-dev.tar.gz --data $(DATA)/masks-dev.tar.gz --run-dir runs/mt-seed0 || exit 1
	$(PY) -m jobs.train --config config/train.yaml --variant multitask_masks --init runs/mt-seed0/final.pt --data $(DATA)/UTKFace-dev.tar.gz --data $(DATA)/fer2013-dev.tar.gz --data $(DATA)/masks-dev.tar.gz --run-dir runs/mtm-seed0 || exit 1
	$(PY) -m jobs.train --config config/train.yaml --variant multitask_masks --init runs/mtm-seed0/final.pt --data $(DATA)/UTKFace-dev.tar.gz --data $(DATA)/fer2013-dev.tar.gz --data $(DATA)/masks-dev.tar.gz --run-dir runs/mtc-seed0 || exit 1
	$(PY) -m jobs.train --config config/train.yaml --variant multitask_weighted --init runs/mtm-seed0/final.pt --data $(DATA)/UTKFace-dev.tar.gz --data $(DATA)/fer2013-dev.tar.gz --data $(DATA)/masks-dev.tar.gz --run-dir runs/mtw-seed0 || exit 1
	$(PY) -m jobs.export $(MEMBERS) --half-weights --data $(DATA)/UTKFace-dev.tar.gz --out model/weights/age_gender.onnx --int8-out model/weights/age_gender.int8.onnx --version $(VERSION)-$$(date +%Y%m%d)

evaluate:  ## evaluate the shipped ONNX model on the validation split of UTKFace-dev
	$(PY) -m jobs.evaluate --model model/weights/age_gender.onnx --data $(DATA)/UTKFace-dev.tar.gz --split val

bench:  ## throughput of decoding and of the pipeline on a generated busy 1080p minute, then the decoding gate on a generated 8-minute kiosk day (rendered once, ~13 min)
	$(PY) -m jobs.bench
	$(PY) -m jobs.bench --kiosk-day 8

report:  ## run every report over $(OUTPUT)/ and print them
	$(PY) -m jobs.report --data $(OUTPUT)

nightly:  ## analyse the days since the last nightly run (first: yesterday) under $(INPUT) into $(OUTPUT)/ and report them
	@test -n "$(INPUT)" || { echo "usage: make nightly INPUT=recordings/ [OUTPUT=output/] [CONFIG=site.yaml]"; exit 2; }
	$(PY) -m jobs.nightly --input $(INPUT) --output $(OUTPUT) $(if $(CONFIG),--config $(CONFIG))

clean:  ## remove caches, build artefacts and demo output (keeps .venv/)
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache output demo-output
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
