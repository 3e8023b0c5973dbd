# The README's two commands: `make demo` (quick pipeline on the CPU) and `make test`.
# Both create .venv on first use and install everything the project needs into it.
VENV ?= .venv
PYTHON ?= python3
# CPU build of torch; on a GPU cluster set TORCH_SPEC to the CUDA build you want.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup demo test lint format clean-results

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

# The quick jobs are small: starting Python and importing torch is much of each one, so
# the demo gives every torch rule one thread and runs two jobs at once on two cores.
DEMO_THREADS := --set-threads train_gan=1 pretrain_lowshot=1 fit_learned_reg=1 recover=1

demo: setup
	$(BIN)/snakemake --cores $(CORES) $(DEMO_THREADS) --configfile configs/quick.yaml
	@$(BIN)/python -m lowshot.summary results

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint --configfile configs/test.yaml

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile rules
