#!/usr/bin/env bash
# Live Slurm test: installs Debian's Slurm and munge (root, apt-get), starts a one-node
# cluster on this host (munged, MariaDB + slurmdbd for sacct, slurmctld, slurmd with two
# fake GPUs), runs a workflow through the production profile `profiles/slurm` with the
# command users type, `snakemake --cores 8 --profile slurm ...` from the workflow's root
# (the top-level link `slurm -> profiles/slurm`), checks in sacct and the plugin's logs
# that every job went through sbatch (GPU jobs with one GPU, in the partition taken from
# SBATCH_PARTITION), lists the Slurm jobs (sbatch calls, sacct or squeue), reports the jobs
# submitted and the overhead per Slurm job and per rule job, and stops every daemon it
# started, by PID, on any exit.
#
# Usage (as root):
#   tests/slurm/live_slurm.sh                         # the pipeline, configs/test.yaml
#   tests/slurm/live_slurm.sh --toy                   # tests/slurm/toy (5 jobs, 4 Slurm jobs)
#   tests/slurm/live_slurm.sh --workflow-dir DIR --configfile FILE [TARGET ...]
# Options:
#   --workflow-dir DIR   folder holding the Snakefile (default: the repository root); it is
#                        copied to a temporary folder (git's tracked and unignored files
#                        for a git work tree) and run there, so DIR stays untouched
#   --configfile FILE    config file, relative to DIR (default: configs/test.yaml; "" for none)
#   --toy                same as --workflow-dir tests/slurm/toy --configfile ""
#   --status CMD         the plugin's status command: sacct (default, as on real clusters,
#                        with slurmdbd) or squeue (no accounting daemons)
#   --timeout SECONDS    limit for the workflow run (default 2400)
#   --ungrouped          replace the profile's `groups` by a map that names no rule: every
#                        job is its own Slurm job, as before the profile grouped jobs (to
#                        measure what grouping saves)
#   --keep               keep the temporary folder (configs, daemon logs, the run)
# Environment: SNAKEMAKE (default .venv/bin/snakemake; the run puts its folder first on
# PATH and calls `snakemake`), PYTHON (default .venv/bin/python).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
SNAKEMAKE="${SNAKEMAKE:-$REPO/.venv/bin/snakemake}"
PYTHON="${PYTHON:-$REPO/.venv/bin/python}"
PROFILE="$REPO/profiles/slurm"
# What users type in the repository root (README); the harness adds its own options after.
COMMAND=(snakemake --cores 8 --profile slurm)

WORKFLOW_DIR="$REPO"
CONFIGFILE="configs/test.yaml"
STATUS_COMMAND="sacct"
RUN_TIMEOUT=2400
KEEP=0
UNGROUPED=0
TARGETS=()

# Loopback-only ports, away from Slurm's and MariaDB's defaults so that a Slurm the host
# may already run is not disturbed.
CTLD_PORT=16817
SLURMD_PORT=16818
DBD_PORT=16819
DB_PORT=13306
PARTITION="gpu"
ACCOUNT="lowshot-ci"
GPU_RULES="train_gan,pretrain_lowshot,fit_learned_reg,recover"
PACKAGES=(slurmctld slurmd slurm-client munge)
ACCOUNTING_PACKAGES=(slurmdbd mariadb-server-core)

log() { printf '[live-slurm %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() {
    log "FAILED: $*"
    exit 1
}

while (($#)); do
    case "$1" in
    --workflow-dir) WORKFLOW_DIR="$(cd "$2" && pwd)" && shift 2 ;;
    --configfile) CONFIGFILE="$2" && shift 2 ;;
    --toy) WORKFLOW_DIR="$HERE/toy" CONFIGFILE="" && shift ;;
    --status) STATUS_COMMAND="$2" && shift 2 ;;
    --timeout) RUN_TIMEOUT="$2" && shift 2 ;;
    --keep) KEEP=1 && shift ;;
    --ungrouped) UNGROUPED=1 && shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' && exit 0 ;;
    --) shift && TARGETS+=("$@") && break ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) TARGETS+=("$1") && shift ;;
    esac
done
case "$STATUS_COMMAND" in sacct | squeue) ;; *) die "--status must be sacct or squeue" ;; esac

[[ "$(id -u)" == 0 ]] || die "must run as root (it installs packages and starts daemons)"
command -v apt-get >/dev/null || die "needs apt-get (Debian's slurm-wlm packages)"
[[ -x "$SNAKEMAKE" ]] || die "no snakemake at $SNAKEMAKE (run make setup, or set SNAKEMAKE)"
[[ -f "$WORKFLOW_DIR/Snakefile" ]] || die "no Snakefile in $WORKFLOW_DIR"

# One harness at a time on a host: the ports and /etc/slurm are shared.
exec 9>/tmp/lowshot-live-slurm.lock
flock -w 900 9 || die "another live-Slurm test holds /tmp/lowshot-live-slurm.lock"

WORK="$(mktemp -d /tmp/lowshot-slurm.XXXXXX)"
chmod 755 "$WORK"
mkdir -p "$WORK"/{state,spool,run,log,dev,mysql,etc-backup,wf}
declare -a STARTED_PIDS=() STARTED_NAMES=()
SNAKEMAKE_PID=""
ETC_LINKED=()
STATUS="failed"

# ---------------------------------------------------------------------------------------
# Cleanup: cancel the jobs, stop the daemons this script started (newest first, by PID),
# restore /etc/slurm, drop the temporary folder. Runs on every exit.
# stop_pid PID NAME [GRACE_SECONDS]: SIGTERM, then SIGKILL after the grace period.
stop_pid() {
    local pid="$1" name="$2" grace="${3:-15}" i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 2 * grace; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.5
    done
    log "$name (pid $pid) ignored SIGTERM for ${grace}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
}

# Processes that still hold a file under $WORK open (job steps whose slurmd is gone):
# descendants of the daemons above, found by what they hold, never by name.
leftover_pids() {
    find /proc/[0-9]*/fd -maxdepth 1 -lname "$WORK/*" -printf '%h\n' 2>/dev/null |
        cut -d/ -f3 | sort -u | grep -vx -e "$$" -e "$BASHPID" || true
}

cleanup() {
    local rc=$? i f
    trap - EXIT INT TERM
    set +e
    if [[ -n "$SNAKEMAKE_PID" ]]; then
        # Snakemake cancels its Slurm jobs on SIGTERM; a plugin that lost its jobs ignores
        # the signal, hence the SIGKILL after a grace period.
        stop_pid "$SNAKEMAKE_PID" snakemake 40
    fi
    if ((${#STARTED_PIDS[@]})); then
        timeout 15 scancel --full --user=root >/dev/null 2>&1
        for i in $(seq 1 60); do
            [[ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ]] && break
            sleep 0.5
        done
    fi
    if [[ "$STATUS" != "passed" ]]; then
        for f in "$WORK"/log/*; do
            [[ -s "$f" ]] || continue
            echo "----- last lines of $f"
            tail -n 25 "$f"
        done
    fi
    for ((i = ${#STARTED_PIDS[@]} - 1; i >= 0; i--)); do
        stop_pid "${STARTED_PIDS[$i]}" "${STARTED_NAMES[$i]}"
        log "stopped ${STARTED_NAMES[$i]} (pid ${STARTED_PIDS[$i]})"
    done
    for i in $(leftover_pids); do
        log "stopping leftover job process $i: $(tr '\0' ' ' </proc/"$i"/cmdline 2>/dev/null | cut -c1-80)"
        stop_pid "$i" "leftover $i" 5
    done
    for f in "${ETC_LINKED[@]}"; do
        rm -f "/etc/slurm/$f"
        [[ -e "$WORK/etc-backup/$f" ]] && mv "$WORK/etc-backup/$f" "/etc/slurm/$f"
    done
    if ((KEEP)); then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    log "live Slurm test $STATUS"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME LOGFILE COMMAND...: runs a daemon in its foreground mode in the background,
# in a session of its own (a signal to this script's process group, e.g. from `timeout`,
# must not kill it before the cleanup has cancelled the jobs), and records its PID.
# setsid does not fork here (a background job of a script is no group leader), and the
# command must exec the daemon, so $! is the daemon.
start() {
    local name="$1" logfile="$2"
    shift 2
    setsid "$@" >"$logfile" 2>&1 </dev/null &
    STARTED_PIDS+=("$!")
    STARTED_NAMES+=("$name")
    log "started $name (pid $!)"
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds, at most SECONDS.
wait_for() {
    local limit="$1" what="$2" t0=$SECONDS
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS - t0 < limit)) || die "$what not ready after ${limit}s"
        sleep 0.5
    done
    log "$what ready after $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------------------
# Packages.
install_packages() {
    local wanted=("${PACKAGES[@]}") missing=() p
    [[ "$STATUS_COMMAND" == sacct ]] && wanted+=("${ACCOUNTING_PACKAGES[@]}")
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        log "packages present: ${wanted[*]}"
        return
    fi
    local t0=$SECONDS
    log "installing ${missing[*]}"
    timeout 600 apt-get update -qq >"$WORK/log/apt.log" 2>&1 || die "apt-get update"
    DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" >>"$WORK/log/apt.log" 2>&1 ||
        die "apt-get install ${missing[*]}"
    log "installed in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------------------
# Configuration files, from the templates beside this script.
HOST="$(hostname -s)"
CPUS=2
# All memory but 1 GiB for the system; the node claims it through config_overrides.
REAL_MEMORY=$(($(awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo) - 1024))
DEF_MEM_PER_CPU=1000
MIN_JOB_AGE=300

render() {
    local accounting
    if [[ "$STATUS_COMMAND" == sacct ]]; then
        accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment"
    else
        accounting="AccountingStorageType=accounting_storage/none"
    fi
    sed -e "s|@HOST@|$HOST|g" -e "s|@WORK@|$WORK|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" \
        -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" \
        -e "s|@DB_PORT@|$DB_PORT|g" -e "s|@CPUS@|$CPUS|g" \
        -e "s|@REAL_MEMORY@|$REAL_MEMORY|g" -e "s|@DEF_MEM_PER_CPU@|$DEF_MEM_PER_CPU|g" \
        -e "s|@MIN_JOB_AGE@|$MIN_JOB_AGE|g" "$1" |
        awk -v acc="$accounting" '{ if ($0 == "@ACCOUNTING@") print acc; else print }'
}

write_configs() {
    local f
    mkdir -p /etc/slurm "$WORK/conf"
    render "$HERE/slurm.conf.in" >"$WORK/conf/slurm.conf"
    render "$HERE/gres.conf.in" >"$WORK/conf/gres.conf"
    render "$HERE/slurmdbd.conf.in" >"$WORK/conf/slurmdbd.conf"
    chmod 600 "$WORK/conf/slurmdbd.conf"
    mknod "$WORK/dev/fakegpu0" c 1 3
    mknod "$WORK/dev/fakegpu1" c 1 3
    # Jobs lose SLURM_CONF (the plugin strips SLURM_* inside jobs), so sbatch/srun there
    # read /etc/slurm: link the files in, and put back whatever was there on exit.
    for f in slurm.conf gres.conf slurmdbd.conf; do
        if [[ -e "/etc/slurm/$f" || -L "/etc/slurm/$f" ]]; then
            mv "/etc/slurm/$f" "$WORK/etc-backup/$f"
        fi
        ln -s "$WORK/conf/$f" "/etc/slurm/$f"
        ETC_LINKED+=("$f")
    done
}

# ---------------------------------------------------------------------------------------
# Daemons.
munge_works() { munge -n </dev/null | unmunge >/dev/null; }

start_munge() {
    if munge_works 2>/dev/null; then
        log "munged already running: using it"
        return
    fi
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        setpriv --reuid=munge --regid=munge --init-groups mungekey --create
    fi
    start munged "$WORK/log/munged.log" \
        setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
    wait_for 60 munged munge_works
}

start_accounting() {
    start mariadbd "$WORK/log/mariadbd.log" /usr/sbin/mariadbd --no-defaults --user=root \
        --datadir="$WORK/mysql" --socket="$WORK/run/mysql.sock" \
        --pid-file="$WORK/run/mariadbd.pid" --bind-address=127.0.0.1 --port="$DB_PORT" \
        --skip-grant-tables --skip-log-bin --innodb-buffer-pool-size=32M \
        --innodb-file-per-table=0 --innodb-doublewrite=0 --innodb-flush-log-at-trx-commit=0
    wait_for 300 mariadbd grep -q "ready for connections" "$WORK/log/mariadbd.log"
    start slurmdbd "$WORK/log/slurmdbd.out" /usr/sbin/slurmdbd -D
    wait_for 300 slurmdbd sacctmgr -n list cluster
    timeout 300 sacctmgr -i add cluster lowshot >/dev/null
    timeout 300 sacctmgr -i add account "$ACCOUNT" Description=ci Organization=lowshot >/dev/null
    timeout 300 sacctmgr -i add user root Account="$ACCOUNT" >/dev/null
    log "accounting: cluster lowshot, account $ACCOUNT for root"
}

node_state() { sinfo -h -N -n "$HOST" -o %T 2>/dev/null | head -n 1; }
node_idle() { [[ "$(node_state)" == idle ]]; }

start_slurm() {
    start slurmctld "$WORK/log/slurmctld.out" /usr/sbin/slurmctld -D -i
    wait_for 300 slurmctld bash -c 'scontrol ping | grep -q UP'
    start slurmd "$WORK/log/slurmd.out" /usr/sbin/slurmd -D
    local t0=$SECONDS
    until node_idle; do
        if ((SECONDS - t0 > 300)); then
            sinfo -N -l || true
            scontrol show node "$HOST" || true
            die "node $HOST not idle after 300s (state: $(node_state))"
        fi
        sleep 0.5
    done
    log "node $HOST idle after $((SECONDS - t0))s: $(sinfo -h -N -o '%N %P %c CPUs %m MB %G' | tr '\n' ';')"
}

# Slurm's own share of the per-job overhead: a job that runs `true`, submit to end.
probe_sbatch() {
    local id t0=$SECONDS
    id="$(sbatch --parsable -p "$PARTITION" -A "$ACCOUNT" -o /dev/null --wrap true)" ||
        die "sbatch of a probe job failed"
    until [[ -z "$(squeue -h -j "$id" -o %i 2>/dev/null)" ]]; do
        ((SECONDS - t0 < 120)) || die "probe job $id still queued after 120s"
        sleep 0.2
    done
    log "probe job $id (sbatch --wrap true): submit to gone from squeue in $((SECONDS - t0))s"
}

# ---------------------------------------------------------------------------------------
# The workflow, in a temporary copy.
copy_workflow() {
    local dest="$WORK/wf/$(basename "$WORKFLOW_DIR")"
    mkdir -p "$dest"
    if git -C "$WORKFLOW_DIR" rev-parse --show-toplevel 2>/dev/null |
        grep -qx "$WORKFLOW_DIR"; then
        # Tracked and untracked-but-not-ignored files: what a fresh clone plus the
        # working tree's new files hold, without .venv, results/ or .snakemake/.
        (cd "$WORKFLOW_DIR" && git ls-files -z -c -o --exclude-standard |
            tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -xf - -C "$dest"
    else
        cp -a "$WORKFLOW_DIR/." "$dest/"
        rm -rf "$dest/.snakemake" "$dest/results"
    fi
    # Configs name the shared data as ../shared/...: keep that path valid in the copy.
    if [[ -d "$WORKFLOW_DIR/../shared" ]]; then
        ln -s "$(cd "$WORKFLOW_DIR/../shared" && pwd)" "$WORK/wf/shared"
    fi
    echo "$dest"
}

# `--profile slurm` must find the profile in the workflow's root: the repository's own
# link (slurm -> profiles/slurm) travels with the copy and is what the run tests; another
# workflow (the toy) gets a link to this repository's profile.
link_profile() {
    local dest="$1"
    if [[ "$WORKFLOW_DIR" == "$REPO" ]]; then
        [[ -f "$dest/slurm/config.yaml" ]] ||
            die "no slurm/config.yaml in the repository's root (the link slurm -> profiles/slurm)"
        log "profile: $(basename "$dest")/slurm -> $(readlink "$dest/slurm")"
    elif [[ ! -e "$dest/slurm" ]]; then
        ln -s "$PROFILE" "$dest/slurm"
        log "profile: linked $dest/slurm -> $PROFILE"
    fi
}

# sbatch as the plugin calls it, recorded: a shim first on the run's PATH writes each call
# (the command it wraps shortened) to sbatch.log and runs the real sbatch.
write_sbatch_shim() {
    local real
    real="$(command -v sbatch)" || die "no sbatch on PATH"
    mkdir -p "$WORK/bin"
    # One write per call: the plugin submits ready jobs from several threads at once.
    cat >"$WORK/bin/sbatch" <<SHIM
#!/bin/sh
line=sbatch
for arg in "\$@"; do
    case "\$arg" in
    --wrap=*) line="\$line --wrap=<snakemake ...>" ;;
    *) line="\$line \$arg" ;;
    esac
done
printf '%s\n' "\$line" >>"$WORK/log/sbatch.log"
exec "$real" "\$@"
SHIM
    chmod 755 "$WORK/bin/sbatch"
}

run_workflow() {
    local dir="$1" args=() rc t0
    # The command as users type it (COMMAND), then this harness's options: keep every
    # Slurm log (check_jobs reads them), first status check after 5 s (not 40 s).
    args=("${TARGETS[@]}" --slurm-keep-successful-logs
        --slurm-init-seconds-before-status-checks 5)
    [[ "$STATUS_COMMAND" == squeue ]] && args+=(--slurm-status-command squeue)
    # A --groups map replaces the profile's; this one names no rule, so nothing is grouped.
    ((UNGROUPED)) && args+=(--groups none=none)
    # Last: --configfile takes every word after it.
    [[ -n "$CONFIGFILE" ]] && args+=(--configfile "$CONFIGFILE")
    write_sbatch_shim
    log "running in $dir: SBATCH_PARTITION=$PARTITION SBATCH_ACCOUNT=$ACCOUNT ${COMMAND[*]} ${args[*]}"
    t0=$SECONDS
    # In the background, so that a signal to this script runs the cleanup at once (bash
    # defers traps while a foreground command runs). `snakemake` is the one of $SNAKEMAKE's
    # environment, found on PATH as a user's shell finds it.
    (
        cd "$dir" &&
            PATH="$WORK/bin:$(dirname "$SNAKEMAKE"):$PATH" SBATCH_PARTITION="$PARTITION" \
                SBATCH_ACCOUNT="$ACCOUNT" PYTHONPATH="$dir" exec "${COMMAND[@]}" "${args[@]}"
    ) >"$WORK/log/snakemake.log" 2>&1 </dev/null &
    SNAKEMAKE_PID=$!
    while kill -0 "$SNAKEMAKE_PID" 2>/dev/null; do
        ((SECONDS - t0 < RUN_TIMEOUT)) || die "workflow still running after ${RUN_TIMEOUT}s"
        sleep 2
    done
    set +e
    wait "$SNAKEMAKE_PID"
    rc=$?
    set -e
    SNAKEMAKE_PID=""
    RUN_SECONDS=$((SECONDS - t0))
    ((rc == 0)) || die "snakemake exited with $rc after ${RUN_SECONDS}s (log: snakemake.log)"
    grep -q "^Using profiles\? slurm\b" "$WORK/log/snakemake.log" ||
        die "snakemake did not report using the profile slurm"
    log "workflow done in ${RUN_SECONDS}s"
}

# The Slurm jobs of the run: the sbatch calls, then Slurm's own list of them.
list_jobs() {
    local line
    log "sbatch calls of the run (the wrapped snakemake command shortened):"
    while IFS= read -r line; do
        echo "  $line"
    done <"$WORK/log/sbatch.log"
    if [[ "$STATUS_COMMAND" == sacct ]]; then
        log "sacct -X (every job of this cluster, the probe job first):"
        sacct -X -a -S 2000-01-01 \
            -o JobID,Comment%36,Partition,State,Elapsed,Timelimit,AllocTRES%40 | sed 's/^/  /'
    else
        log "squeue --states=all (finished jobs stay listed for MinJobAge=${MIN_JOB_AGE}s):"
        squeue --states=all -O JobID:8,Comment:38,Partition:10,State:12,TimeUsed:10,TimeLimit:12,NumCPUs:6,MinMemory:11,tres-per-job:16 |
            sed 's/^/  /'
    fi
}

check_jobs() {
    local dir="$1" args
    args=(--snakemake-log "$WORK/log/snakemake.log" --workdir "$dir"
        --partition "$PARTITION" --gpu-rules "$GPU_RULES" --wall-seconds "$RUN_SECONDS")
    if [[ "$STATUS_COMMAND" == sacct ]]; then
        sacct -X -P -n -a -S 2000-01-01 \
            -o JobID,JobName%60,Partition,Account,State,ExitCode,Submit,Start,End,AllocTRES,Timelimit,Comment%200 \
            >"$WORK/sacct.txt"
        args+=(--sacct "$WORK/sacct.txt")
    fi
    "$PYTHON" "$HERE/check_jobs.py" "${args[@]}"
}

# The toy writes what each job saw: GPU rules must have had CUDA_VISIBLE_DEVICES set by
# Slurm's GRES, CPU rules not.
check_toy_outputs() {
    local dir="$1/results/toy"
    grep -q "^train_gan .* gpus=none" "$dir/model.txt" && die "train_gan ran without a GPU"
    grep -q "^prepare .* gpus=none" "$dir/numbers.txt" || die "prepare got a GPU"
    grep -q "^recover .* gpus=none" "$dir"/recovery/*.txt && die "recover ran without a GPU"
    log "toy outputs: $(grep -h "gpus=" "$dir/model.txt" "$dir/summary.txt" | tr '\n' ';')"
}

main() {
    install_packages
    write_configs
    log "versions: $(sinfo --version); $(munged --version 2>&1 | head -n 1 | awk '{print $1}');" \
        "$("$PYTHON" -c 'import importlib.metadata as m
print("; ".join(f"{d} {m.version(d)}" for d in ("snakemake", "snakemake-executor-plugin-slurm")))')"
    local t0=$SECONDS
    start_munge
    [[ "$STATUS_COMMAND" == sacct ]] && start_accounting
    start_slurm
    log "cluster up in $((SECONDS - t0))s"
    probe_sbatch
    local dir
    dir="$(copy_workflow)"
    link_profile "$dir"
    run_workflow "$dir"
    list_jobs
    check_jobs "$dir"
    [[ "$WORKFLOW_DIR" == "$HERE/toy" ]] && check_toy_outputs "$dir"
    STATUS="passed"
}

main
