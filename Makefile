# The README's two commands: `make demo` (quick pipeline on the CPU) and `make test`.
# Both create .venv on first use and install everything the project needs into it.
VENV ?= .venv
PYTHON ?= python3
# CPU build of torch; on a GPU cluster set TORCH_SPEC to the CUDA build you want.
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
CORES ?= 2

.PHONY: setup demo test test-gpu lint format clean-results wheelhouse gpudata

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

# The GPU suite (tests/gpu, marker gpu): plain `pytest` collects it and, without CUDA,
# skips it with one line saying why; where CUDA is visible it runs there too (sized to
# take under two minutes on one card; not yet run on one). This target runs only it;
# benchmarks/gpu_run.sh runs it first, with LOWSHOT_REQUIRE_GPU=1 (no CUDA is then a
# failure, not a skip).
test-gpu: setup
	$(BIN)/python -m pytest -q -m gpu tests/gpu

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint --configfile configs/test.yaml

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile rules

# Wheels for a machine that cannot reach a package index (an offline compute node, a
# borrowed GPU machine): snakemake and its plugins, jsonschema, and all they need, at the
# versions installed in $(VENV), built for CPython $(WHEEL_PYTHON) on x86-64 Linux.
# WHEEL_EXCLUDE: what the target machine already has (its torch image); they are left out.
# WHEEL_EXTRA: what a target lacks (benchmarks/preflight.py, gpu_run.sh's first check,
# prints the list): carried too, and taken out of WHEEL_EXCLUDE, e.g.
#   make wheelhouse WHEEL_EXTRA="h5py scikit-image" WHEEL_MAX_MIB=40
# pytest: for the GPU suite (tests/gpu), which benchmarks/gpu_run.sh runs first.
# Install there: pip install --no-index --no-deps --target DIR $(WHEEL_DIR)/*.whl
WHEEL_DIR ?= .whl
WHEEL_PYTHON ?= 3.12
WHEEL_PACKAGES ?= snakemake snakemake-executor-plugin-slurm jsonschema pytest
WHEEL_EXTRA ?=
WHEEL_EXCLUDE ?= torch numpy pandas h5py matplotlib seaborn scipy pillow pyyaml tqdm
# Left out as well, though snakemake lists it: pulp (16 MB, CBC solver binaries for six
# platforms) serves only its ILP job scheduler, and without it snakemake warns and uses its
# greedy scheduler (`--scheduler greedy` says so). Set WHEEL_OMIT= to carry it.
WHEEL_OMIT ?= pulp
WHEEL_PLATFORMS ?= manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 \
	manylinux2014_x86_64 manylinux1_x86_64
WHEEL_MAX_MIB ?= 20

wheelhouse: setup
	rm -rf $(WHEEL_DIR)
	$(BIN)/python benchmarks/wheelhouse.py --dest $(WHEEL_DIR) --python-version $(WHEEL_PYTHON) \
		$(addprefix --platform ,$(WHEEL_PLATFORMS)) --max-mib $(WHEEL_MAX_MIB) \
		--exclude $(filter-out $(WHEEL_EXTRA),$(WHEEL_EXCLUDE)) $(WHEEL_OMIT) \
		-- $(WHEEL_PACKAGES) $(WHEEL_EXTRA)
	@du -sh $(WHEEL_DIR)

# The faces benchmarks/gpu_run.sh reads on a machine without ../shared (a borrowed GPU
# machine gets only the repository and the folders its call carries): the faces zip and
# the label files cut down to its images, in $(GPU_DATA).
CELEBA ?= ../shared/data/celeba
GPU_DATA ?= .gpudata

gpudata: setup
	$(BIN)/python benchmarks/gpudata.py --celeba $(CELEBA) --dest $(GPU_DATA)
