# frcnn_edu: `make lab` opens the textbook, `make test` runs every test and lesson.
# Each target creates .venv (once) and installs the package with the tested versions.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: lab test test-lib test-slow book student bench colab-check clean-venv help

help:
	@echo "make lab    - open the lessons in JupyterLab"
	@echo "make test   - run the library tests and every lesson (nbval, quick setting)"
	@echo "make book   - the lessons as a static HTML site in build/book/ (BOOK_FLAGS=--execute re-runs them)"
	@echo "make student- write exercise copies (solutions removed) to build/student/"
	@echo "make bench  - run the CPU benchmarks in benchmarks/"
	@echo "make test-slow - the long reproductions (pre-training both shipped backbones, ~25 min)"
	@echo "make colab-check - every lesson's Colab install cell and the lesson in a Colab-like venv (build/colab-mimic/)"

$(STAMP): pyproject.toml constraints.txt
	@if [ ! -x $(BIN)/python ]; then \
	  echo ">> creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); fi
	@echo ">> installing frcnn_edu (editable) with the versions in constraints.txt"
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)
	@echo ">> environment ready: $(VENV)"

# JupyterLab refuses to run as root (containers, Colab-like VMs) unless told it may.
ROOT_FLAG := $(shell [ "$$(id -u)" = 0 ] && echo --allow-root)

lab: $(STAMP)
	@echo ">> starting JupyterLab on notebooks/"
	$(BIN)/jupyter lab notebooks/ $(ROOT_FLAG)

# FRCNN_EDU_FAST=1 puts the heavy lesson cells in their quick setting.
test: $(STAMP)
	@echo ">> running the library tests and the lessons (nbval)"
	FRCNN_EDU_FAST=1 MPLBACKEND=Agg $(BIN)/python -m pytest tests notebooks \
	  --nbval-lax --nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider --durations=25

test-lib: $(STAMP)
	MPLBACKEND=Agg $(BIN)/python -m pytest tests -p no:cacheprovider

# The long reproductions (e.g. the 11-minute pre-training of the shipped backbone).
test-slow: $(STAMP)
	FRCNN_EDU_SLOW=1 MPLBACKEND=Agg $(BIN)/python -m pytest tests -m slow -p no:cacheprovider

book: $(STAMP)
	@echo ">> rendering the saved lessons into build/book/ (BOOK_FLAGS=--execute runs them first)"
	$(BIN)/python tools/book.py build/book $(BOOK_FLAGS)

student: $(STAMP)
	@echo ">> writing student copies (solutions removed) into build/student/"
	$(BIN)/python -m frcnn_edu.student notebooks build/student

bench: $(STAMP)
	$(BIN)/python benchmarks/ops.py

# Not part of `make test`: a fresh venv shaped like Colab (its ipywidgets 7.7.1, another torch
# and numpy minor, opencv-python without contrib) runs each lesson's install cell, then the lesson
# in its quick setting; Colab's versions must stay. Needs the package index (pip).
colab-check: $(STAMP)
	$(BIN)/python tools/colab_mimic.py

clean-venv:
	rm -rf $(VENV)
