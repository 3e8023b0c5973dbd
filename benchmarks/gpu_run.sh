#!/usr/bin/env bash
# One run of everything that needs a GPU, for a machine with no network and nothing of
# this project installed but torch and the scientific stack (a borrowed GPU machine, an
# offline cluster node): a preflight check of the Python packages, the GPU test suite
# (tests/gpu), start-up, recovery and training benchmarks, then the paper grid with
# profiles/gpu-node and its stage report. Run from the repository root:
#
#   make wheelhouse gpudata        # here, with network: .whl/ (CPython 3.12) and .gpudata/
#   bash benchmarks/gpu_run.sh     # there: writes everything under ${OUT:-gpu_out}
#
# For maintainers with a borrowed GPU machine (the workplace's `run` tool; 64 MiB travel,
# 10 minutes a command, 8 files of $OUT come back): after `make wheelhouse gpudata` here,
#
#   run(command="bash benchmarks/gpu_run.sh", carry=[".whl", ".gpudata"], timeout_s=600)
#
# then give the machine back. The repository (~1 MB), .whl (~14 MB) and .gpudata (46 MB)
# together stay under the 64 MiB (about 59 MiB). What comes back, under $OUT: gpu_run.log (every step's
# output), steps.json (each step's exit code and seconds), grid.json (grid_report's
# figures), gpu_tests.json (the GPU suite's measured figures) and results.tar.gz
# (results/ without its .h5 files, reference/ and Snakemake's log). Two checks stop the
# run, since every later step would fail too: the preflight (benchmarks/preflight.py:
# which of the Python packages the pipeline imports are missing; it prints them and the
# `make wheelhouse WHEEL_EXTRA='...'` that carries them) and the GPU suite (tests/gpu,
# `make test-gpu`; with GPU_RUN_DEVICE=cuda no CUDA is a failure there, not a skip).
# Otherwise the script never stops at a failed step; each runs under its own `timeout`
# and the grid gets whatever time the other steps left of TOTAL_BUDGET.
#
# Settings (environment):
#   OUT              output folder (default gpu_out)
#   GPU_DATA         folder with celeba-test-faces-64.zip, list_eval_partition.txt and
#                    identity_CelebA.txt (default .gpudata; `make gpudata` fills it)
#   GPU_RUN_WHEELS   wheelhouse to install (default .whl; skipped when it holds no wheels)
#   GPU_RUN_SITE     where the wheels go (default /tmp/site)
#   GPU_RUN_PYTHON   the interpreter (default python3: the one that has torch)
#   GPU_RUN_CONFIG   the grid's config file (default config.yaml, the paper's grid)
#   GPU_RUN_DEVICE   cuda (default) or cpu: `--config device=...` and the benchmarks' --device
#   GPU_RUN_QUICK    1: tiny benchmark sizes, to test this script on a CPU
#   GPU_RUN_CORES    snakemake --cores (default: the profile's, all)
#   GPU_RUN_RECOVERY_ARGS  more options for benchmarks/recovery.py
#   GPU_RUN_PARTS    which parts run: "bench grid" (default), "bench" (start-up, recovery
#                    and training benchmarks only) or "grid" (the grid and its report only)
#   TOTAL_BUDGET     seconds for the whole script (default 540, inside a 600 s command)
#
# Tested on a CPU, in a scratch worktree, against a wheelhouse for its Python:
#   make wheelhouse WHEEL_PYTHON=3.11 && make gpudata
#   GPU_RUN_DEVICE=cpu GPU_RUN_QUICK=1 GPU_RUN_CONFIG=configs/test.yaml OUT=/tmp/gpurun \
#       bash benchmarks/gpu_run.sh
set -u -o pipefail

# Per-step budgets (seconds). The grid takes TOTAL_BUDGET less what the steps before it
# used and what the reports and packing after it may need.
TOTAL_BUDGET=${TOTAL_BUDGET:-540}
T_INSTALL=${T_INSTALL:-40}
T_PREFLIGHT=${T_PREFLIGHT:-30}
# The GPU suite: under 2 minutes on one card, plus Python's and torch's start-up.
T_GPU_TESTS=${T_GPU_TESTS:-170}
T_SMI=${T_SMI:-15}
T_STARTUP=${T_STARTUP:-90}
T_RECOVERY=${T_RECOVERY:-90}
T_TRAINING=${T_TRAINING:-60}
T_GRID_MIN=${T_GRID_MIN:-30}
T_REPORT=${T_REPORT:-20}
T_PACK=${T_PACK:-15}

OUT=${OUT:-gpu_out}
GPU_DATA=${GPU_DATA:-.gpudata}
WHEELS=${GPU_RUN_WHEELS:-.whl}
SITE=${GPU_RUN_SITE:-/tmp/site}
PY=${GPU_RUN_PYTHON:-python3}
CONFIG=${GPU_RUN_CONFIG:-config.yaml}
DEVICE=${GPU_RUN_DEVICE:-cuda}
QUICK=${GPU_RUN_QUICK:-0}
PARTS=" ${GPU_RUN_PARTS:-bench grid} "

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
LOG=$OUT/gpu_run.log
STEPS=$OUT/steps.tsv
SCRATCH=$(mktemp -d /tmp/gpu_run.XXXXXX)
: >"$LOG"
printf 'step\trc\tseconds\n' >"$STEPS"
export PYTHONUNBUFFERED=1
# Fewer progress-bar updates in the log (tqdm reads its defaults from TQDM_* variables).
export TQDM_MININTERVAL=${TQDM_MININTERVAL:-10}
T0=$(date +%s.%N)

now() { date +%s.%N; }
elapsed() { awk -v a="$T0" -v b="$(now)" 'BEGIN { printf "%d", b - a }'; }

# step NAME BUDGET COMMAND...: run COMMAND under `timeout`, its output to the screen and
# appended to the log, its exit code and seconds to steps.tsv (and to LAST_RC). Never
# fails itself.
LAST_RC=0
step() {
    local name=$1 budget=$2
    shift 2
    local start rc seconds
    printf '\n===== %s (budget %s s, at %s s): %s\n' "$name" "$budget" "$(elapsed)" "$(printf '%q ' "$@")" | tee -a "$LOG"
    start=$(now)
    timeout -k 10 "$budget" "$@" 2>&1 | tee -a "$LOG"
    rc=${PIPESTATUS[0]}
    seconds=$(awk -v a="$start" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    [ "$rc" = 124 ] && echo "!!!!! $name: stopped at its budget of $budget s" | tee -a "$LOG"
    printf '%s\t%s\t%s\n' "$name" "$rc" "$seconds" >>"$STEPS"
    printf '===== %s: exit %s after %s s\n' "$name" "$rc" "$seconds" | tee -a "$LOG"
    LAST_RC=$rc
    return 0
}

# summary: the steps' table at the end of the log, and steps.json; removes the scratch.
DEVICE_NAME=${GPU_RUN_DEVICE:-cuda}
GRID_SECONDS=0
summary() {
    {
        printf '\n===== summary (%s s in all; device: %s)\n' "$(elapsed)" "$DEVICE_NAME"
        column -t -s $'\t' "$STEPS" 2>/dev/null || cat "$STEPS"
    } | tee -a "$LOG"
    "$PY" - "$STEPS" "$OUT/steps.json" "$DEVICE_NAME" "$GRID_SECONDS" "$(elapsed)" <<'PYEOF'
import csv, json, sys
steps, target, device, grid, total = sys.argv[1:]
rows = [
    {"step": r["step"], "rc": int(r["rc"]), "seconds": float(r["seconds"])}
    for r in csv.DictReader(open(steps), delimiter="\t")
]
summary = {"device": device, "grid_seconds": float(grid), "total_seconds": float(total), "steps": rows}
json.dump(summary, open(target, "w"), indent=1)
PYEOF
    rm -f "$STEPS"
    rm -rf "$SCRATCH"
    echo "files in $OUT: $(ls "$OUT" | tr '\n' ' ')"
}

# stop_if_failed WHY: after a step whose failure dooms every later one, end the run there
# (the summary and steps.json still written).
stop_if_failed() {
    [ "$LAST_RC" = 0 ] && return 0
    echo "!!!!! stopping the run: $1" | tee -a "$LOG"
    summary
    exit 1
}

# ---- install: the wheels into $SITE, lowshot from this checkout -------------------------
install_wheels() {
    set -e
    "$PY" --version
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$SITE" "$WHEELS"/*.whl
        echo "installed $(ls "$WHEELS"/*.whl | wc -l) wheels into $SITE"
    else
        echo "no wheels in $WHEELS: using the interpreter's own snakemake"
    fi
    # benchmarks/startup.py gives its children PYTHONPATH=<checkout> only, and runs
    # <interpreter's folder>/snakemake: a .pth file and a link make the wheels visible there
    # too (a throwaway machine; skipped where the interpreter's folders are not writable).
    local purelib bindir
    purelib=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    bindir=$(dirname "$("$PY" -c 'import sys; print(sys.executable)')")
    if [ -d "$SITE" ] && [ -w "$purelib" ]; then
        echo "$SITE" >"$purelib/zz_gpu_run_wheels.pth" && echo "wrote $purelib/zz_gpu_run_wheels.pth"
    fi
    if [ -x "$SITE/bin/snakemake" ] && [ ! -e "$bindir/snakemake" ] && [ -w "$bindir" ]; then
        ln -s "$SITE/bin/snakemake" "$bindir/snakemake" && echo "linked $bindir/snakemake"
    fi
    "$PY" -m snakemake --version
    "$PY" - <<'EOF'
import jsonschema, snakemake, torch, lowshot, lowshot.config
print("snakemake", snakemake.__version__, snakemake.__file__)
print("lowshot", lowshot.__file__, "| jsonschema", jsonschema.__version__)
print("torch", torch.__version__, "| cuda available:", torch.cuda.is_available())
EOF
}
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
export -f install_wheels
export WHEELS SITE PY
step install "$T_INSTALL" bash -c install_wheels

# ---- preflight: every Python package the pipeline and the GPU suite import --------------
step preflight "$T_PREFLIGHT" "$PY" benchmarks/preflight.py --extra workflow --also pytest
stop_if_failed "Python packages are missing (listed above); every later step needs them"

# ---- the device -------------------------------------------------------------------------
GPU_NAME=""
GPU_MEM_MB=""
if command -v nvidia-smi >/dev/null; then
    step nvidia-smi "$T_SMI" nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    GPU_NAME=$(timeout 10 nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
    GPU_MEM_MB=$(timeout 10 nvidia-smi --query-gpu=memory.total --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -dc 0-9)
else
    step nvidia-smi "$T_SMI" bash -c 'echo "no nvidia-smi on this machine"; exit 127'
fi
if [ "$DEVICE" = cpu ]; then
    DEVICE_NAME="cpu ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) cores)"
else
    DEVICE_NAME=${GPU_NAME:-$DEVICE}
fi
echo "device: $DEVICE_NAME; GPU memory: ${GPU_MEM_MB:-unknown} MiB" | tee -a "$LOG"

# The data: absolute paths into $GPU_DATA, as a second config file over $CONFIG.
DATA_DIR=$(cd "$GPU_DATA" 2>/dev/null && pwd) || DATA_DIR=$PWD/$GPU_DATA
for f in celeba-test-faces-64.zip list_eval_partition.txt identity_CelebA.txt; do
    [ -f "$DATA_DIR/$f" ] || echo "!!!!! missing $DATA_DIR/$f (make gpudata)" | tee -a "$LOG"
done
DATA_CONFIG=$SCRATCH/data.yaml
cat >"$DATA_CONFIG" <<EOF
data:
  source: $DATA_DIR/celeba-test-faces-64.zip
  partition_file: $DATA_DIR/list_eval_partition.txt
  identity_file: $DATA_DIR/identity_CelebA.txt
EOF
# startup.py's Snakefile parse resolves configs/test.yaml's ../shared/data/celeba/* against
# --data-root: a folder whose ../shared/data/celeba is $GPU_DATA.
mkdir -p "$SCRATCH/root/checkout" "$SCRATCH/root/shared/data"
ln -s "$DATA_DIR" "$SCRATCH/root/shared/data/celeba"

# ---- the GPU suite (make test-gpu): the CUDA paths checked before anything is timed -----
# With the device cuda, no CUDA is a failure (LOWSHOT_REQUIRE_GPU=1), not a skip.
REQUIRE_GPU=0
[ "$DEVICE" = cuda ] && REQUIRE_GPU=1
step gpu_tests "$T_GPU_TESTS" env LOWSHOT_REQUIRE_GPU=$REQUIRE_GPU LOWSHOT_GPU_DATA="$DATA_DIR" \
    LOWSHOT_GPU_FIGURES="$OUT/gpu_tests.json" \
    "$PY" -m pytest -q -m gpu tests/gpu -p no:cacheprovider -rs
stop_if_failed "the GPU suite failed (above): the CUDA paths are not right yet"

# ---- benchmarks -------------------------------------------------------------------------
if [ "$QUICK" = 1 ]; then
    STARTUP_ARGS=(--repeats 1)
    RECOVERY_ARGS=(--images 2 4 --joint-path gemm vmap --bf16-psnr --repeats 1 --steps 2
        --loop-images 2 --psnr-steps 5)
    TRAINING_ARGS=(--width 8 --gan-batch 4 --shots 5 --losses mmd --warmup 1 --windows 1
        --window-steps 2)
else
    STARTUP_ARGS=(--repeats 2)
    # --steps 10: CUDA graphs replay the steps after the first 3.
    RECOVERY_ARGS=(--images 50 500 --joint-path gemm vmap --bf16-psnr --cuda-graphs --repeats 3
        --steps 10)
    # The paper's sizes: width 64, GAN batch 64 with 5 critic steps (config.yaml), every S.
    TRAINING_ARGS=(--shots 5 10 15 25 50 100 --warmup 3 --windows 3 --window-steps 10
        --cuda-graphs)
fi
PARSE_ARGS=(--data-root "$SCRATCH/root/checkout")
if [[ $PARTS == *" bench "* ]]; then
    step startup "$T_STARTUP" "$PY" benchmarks/startup.py "${STARTUP_ARGS[@]}" "${PARSE_ARGS[@]}"
    # shellcheck disable=SC2086 # GPU_RUN_RECOVERY_ARGS: words on purpose
    step recovery "$T_RECOVERY" "$PY" benchmarks/recovery.py --device "$DEVICE" \
        "${RECOVERY_ARGS[@]}" ${GPU_RUN_RECOVERY_ARGS:-}
    step training "$T_TRAINING" "$PY" benchmarks/training.py --device "$DEVICE" "${TRAINING_ARGS[@]}"
fi

# ---- the grid ---------------------------------------------------------------------------
if [[ $PARTS == *" grid "* ]]; then
    GRID_ARGS=(--profile profiles/gpu-node --configfile "$CONFIG" "$DATA_CONFIG"
        --config "device=$DEVICE" --scheduler greedy)
    [ -n "$GPU_MEM_MB" ] && [ "$DEVICE" = cuda ] && GRID_ARGS+=(--resources "gpu_mem_mb=$GPU_MEM_MB")
    [ -n "${GPU_RUN_CORES:-}" ] && GRID_ARGS+=(--cores "$GPU_RUN_CORES")
    T_GRID=$((TOTAL_BUDGET - $(elapsed) - 2 * T_REPORT - T_PACK))
    [ "$T_GRID" -lt "$T_GRID_MIN" ] && T_GRID=$T_GRID_MIN
    GRID_START=$(now)
    step grid "$T_GRID" "$PY" -m snakemake "${GRID_ARGS[@]}"
    GRID_SECONDS=$(awk -v a="$GRID_START" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    echo "grid wall time: $GRID_SECONDS s" | tee -a "$LOG"

    # The grid's report: its stage table, then reference/ from it.
    REPORT_ARGS=(--results results --wall-seconds "$GRID_SECONDS" --config "$CONFIG")
    step grid_report "$T_REPORT" "$PY" benchmarks/grid_report.py "${REPORT_ARGS[@]}" \
        --json "$OUT/grid.json"
    step reference "$T_REPORT" "$PY" benchmarks/grid_report.py "${REPORT_ARGS[@]}" \
        --reference reference --device "$DEVICE_NAME" --overwrite
fi

# ---- pack: at most 8 files come back ----------------------------------------------------
pack() {
    local list=$SCRATCH/pack.txt
    : >"$list"
    [ -d results ] && find results -type f ! -name '*.h5' ! -path 'results/checkpoints/*' >>"$list"
    [ -d reference ] && find reference -type f >>"$list"
    [ -d .snakemake/log ] && find .snakemake/log -type f >>"$list"
    tar -czf "$OUT/results.tar.gz" -T "$list"
    echo "$OUT/results.tar.gz: $(wc -l <"$list") files, $(du -h "$OUT/results.tar.gz" | cut -f1)"
}
export -f pack
export SCRATCH OUT
step pack "$T_PACK" bash -c pack

# ---- summary ----------------------------------------------------------------------------
summary
