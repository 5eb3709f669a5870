# Two commands for a fresh machine: `make run` (the main job) and `make test` (the whole test suite).
# Each creates .venv and installs the pinned stack (about 2 minutes and 7 GB: torch 2.9.1 is the CUDA-12 build
# that the openmmtorch 1.5 wheel is linked against; it runs on the CPU too).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(STAMP)

# The main job: the embedded aspirin SAKE model, 10 ps of Langevin MD at 300 K on the best platform.
run: $(STAMP)
	$(BIN)/attnforce md --model default --structure default --time-ps 10 --temperature 300 --dcd out/aspirin.dcd

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench.md_throughput

clean:
	rm -rf $(VENV) out
