#!/usr/bin/env bash
# Every GPU figure of sapool-mmdet in one go, for a CUDA machine one has
# for a few minutes:
#
#     tools/gpu_check.sh OUT_DIR
#
# Parts, in order (each under `timeout`, its output in OUT_DIR/NN-PART.log;
# one part failing does not stop the others):
#   env         python -m sapool_mmdet, the CUDA device, mmcv's compiled ops
#   cuda-tests  tests/test_cuda.py and the CUDA cases of tests/test_autocast.py
#   train-fp32  tools/benchmark_train.py over the SSD grid, float32
#   train-amp   the same with --amp fp16 (training only)
#   nlpool      tools/benchmark_nlpool.py (NLPool against the authors' module)
#   pooling     tools/benchmark_pooling.py (every pooling method)
#   demo-amp    tools/demo.py --amp (the demo trained in float16) and its
#               metric table; the work dir is OUT_DIR/demo-amp. Last, as the
#               longest part: a slow demo cannot starve the benchmarks.
# OUT_DIR/summary.txt lists each part's status: ok, failed (exit code, or
# timed out) or skipped (reason); it is rewritten after every part. The
# exit status is 0 when no part failed, 1 when one did, 2 when the check
# could not start.
#
# Python: $PYTHON, else .venv/bin/python, else python3. Works with mmcv's
# compiled ops or without them (mmcv-lite; sapool_mmdet then supplies the
# ops it needs). The timeouts add up to at most GPU_CHECK_BUDGET seconds
# (default 450); a part that finds too little of it left is skipped.
#
# Settings (environment variables; ARGS are appended to the part's command,
# split at spaces):
#   GPU_CHECK_DEVICE       cuda (default) or cpu. Without CUDA, the parts
#                          that need it are skipped; with cpu, the
#                          benchmarks run on the CPU (the tests use this
#                          with tiny sizes) and the CUDA-only parts (the
#                          CUDA tests, float16 training) are skipped.
#   GPU_CHECK_<PART>_TIMEOUT  seconds for ENV, CUDA_TESTS, DEMO, TRAIN (each
#                          of train-fp32 and train-amp), NLPOOL, POOLING
#   GPU_CHECK_<PART>_ARGS  extra arguments for CUDA_TESTS (pytest), DEMO,
#                          TRAIN, NLPOOL, POOLING
#   GPU_CHECK_DEMO_DATA    synthetic set of the demo (default
#                          data/synthetic_driving, rendered if missing)
# The *_ARGS variables are meant to be split at spaces:
# shellcheck disable=SC2086
set -u

usage="usage: tools/gpu_check.sh OUT_DIR (an empty or new folder)"
if [ $# -ne 1 ] || [ -z "$1" ] || [ "${1#-}" != "$1" ]; then
    echo "$usage" >&2
    exit 2
fi
if [ -e "$1" ] && { [ ! -d "$1" ] || [ -n "$(ls -A "$1")" ]; }; then
    echo "error: $1 exists and is not an empty folder; the check writes" \
        "its logs and summary into a new one (or an empty one)" >&2
    exit 2
fi
case $1 in
    /*) OUT=$1 ;;
    *) OUT=$PWD/$1 ;;
esac
cd "$(dirname "$0")/.." || exit 2
# The package of this checkout, whether or not (or wherever) it is installed.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

DEVICE=${GPU_CHECK_DEVICE:-cuda}
if [ "$DEVICE" != cuda ] && [ "$DEVICE" != cpu ]; then
    echo "error: GPU_CHECK_DEVICE must be cuda or cpu, got '$DEVICE'" >&2
    exit 2
fi
BUDGET=${GPU_CHECK_BUDGET:-450}
for value in "$BUDGET" "${GPU_CHECK_ENV_TIMEOUT:-1}" \
    "${GPU_CHECK_CUDA_TESTS_TIMEOUT:-1}" "${GPU_CHECK_DEMO_TIMEOUT:-1}" \
    "${GPU_CHECK_TRAIN_TIMEOUT:-1}" "${GPU_CHECK_NLPOOL_TIMEOUT:-1}" \
    "${GPU_CHECK_POOLING_TIMEOUT:-1}"; do
    case $value in
        '' | *[!0-9]* | 0)
            echo "error: GPU_CHECK_BUDGET and GPU_CHECK_*_TIMEOUT are" \
                "whole seconds >= 1, got '$value'" >&2
            exit 2 ;;
    esac
done
if [ -n "${PYTHON:-}" ]; then
    PY=$PYTHON
elif [ -x .venv/bin/python ]; then
    PY=.venv/bin/python
else
    PY=python3
fi
if ! command -v "$PY" > /dev/null 2>&1; then
    echo "error: no Python interpreter $PY; set PYTHON=/path/to/python" >&2
    exit 2
fi
if ! command -v timeout > /dev/null 2>&1; then
    echo "error: the check needs coreutils' timeout to bound each part" >&2
    exit 2
fi

if ! PYTHON_INFO=$("$PY" -c 'import sys, torch
cuda = torch.cuda.is_available()
print(sys.executable, "(Python", sys.version.split()[0] + "), torch",
      torch.__version__, "(CUDA", str(torch.version.cuda) + ")")
print(torch.cuda.get_device_name(0) if cuda else "none")' 2> /dev/null); then
    echo "error: $PY cannot import torch; install torch (a CUDA build on a" \
        "GPU machine) and the package (make install), or point PYTHON at" \
        "an interpreter that has them" >&2
    exit 2
fi
mkdir -p "$OUT" || exit 2
PYTHON_LINE=$(echo "$PYTHON_INFO" | sed -n 1p)
GPU_NAME=$(echo "$PYTHON_INFO" | sed -n 2p)
SSD_GRID="configs/ssd_mbv2_conv.py configs/ssd_mbv2_lip.py
configs/ssd_mbv2_nlp.py configs/ssd_mbv2_nlp_s2.py configs/ssd_r18_conv.py
configs/ssd_r18_nlp.py"

STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
CHECK_START=$(date +%s)
SUMMARY_ROWS=""
FAILED=0
PART_NUMBER=0

write_summary() {  # $1: "running" or "finished"
    local tmp="$OUT/.summary.txt.tmp"
    {
        echo "sapool-mmdet GPU check: started $STARTED, $1"
        echo "python: $PYTHON_LINE"
        echo "CUDA device: $GPU_NAME; benchmarks on: $DEVICE"
        echo "time budget: $BUDGET s, used $(($(date +%s) - CHECK_START)) s"
        echo
        printf '%-12s %-50s %8s  %s\n' part status seconds log
        printf '%s' "$SUMMARY_ROWS"
    } > "$tmp" && mv -f "$tmp" "$OUT/summary.txt"
}

record() {  # part, status, seconds, log
    SUMMARY_ROWS+=$(printf '%-12s %-50s %8s  %s' "$1" "$2" "$3" "$4")$'\n'
    echo "[gpu_check] $1: $2${3:+ in $3 s}" >&2
    write_summary running
}

# run_part PART NEEDS TIMEOUT COMMAND...; NEEDS: none, device (the
# benchmarks' device must exist) or cuda (CUDA itself, whatever the device).
run_part() {
    local part=$1 needs=$2 limit=$3
    shift 3
    PART_NUMBER=$((PART_NUMBER + 1))
    local log
    log=$(printf '%02d-%s.log' "$PART_NUMBER" "$part")
    if [ "$needs" = cuda ] && [ "$DEVICE" = cpu ]; then
        record "$part" "skipped (needs CUDA; GPU_CHECK_DEVICE=cpu)" "" "-"
        return
    fi
    if [ "$needs" != none ] && [ "$DEVICE" = cuda ] \
        && [ "$GPU_NAME" = none ]; then
        record "$part" "skipped (no CUDA device visible to torch)" "" "-"
        return
    fi
    local left=$((BUDGET - ($(date +%s) - CHECK_START)))
    if [ "$left" -lt 10 ]; then
        record "$part" "skipped (time budget of $BUDGET s spent)" "" "-"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "[gpu_check] $part: running (at most $limit s), log $OUT/$log" >&2
    local begin rc
    begin=$(date +%s)
    {
        echo "\$ $*"
        echo "(timeout $limit s, started $(date -u +%H:%M:%SZ))"
        echo
    } > "$OUT/$log"
    timeout --kill-after=10 "$limit" "$@" >> "$OUT/$log" 2>&1 < /dev/null
    rc=$?
    local seconds=$(($(date +%s) - begin))
    if [ "$rc" -eq 0 ]; then
        record "$part" ok "$seconds" "$log"
    elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        FAILED=1
        record "$part" "failed (timed out after $limit s)" "$seconds" "$log"
    else
        FAILED=1
        record "$part" "failed (exit $rc)" "$seconds" "$log"
    fi
}

environment_report() {
    echo "\$ $PY -m sapool_mmdet"
    "$PY" -m sapool_mmdet || return
    echo "\$ $PY -c '(torch, CUDA and mmcv ops)'"
    "$PY" -c 'import importlib.util, torch
print("mmcv compiled ops (mmcv._ext):",
      importlib.util.find_spec("mmcv._ext") is not None)
print("torch", torch.__version__, "CUDA", torch.version.cuda, "cuDNN",
      torch.backends.cudnn.version())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i} {p.name}, {p.total_memory / 2**30:.1f} GiB, "
          f"compute capability {p.major}.{p.minor}")' || return
    if command -v nvidia-smi > /dev/null 2>&1; then
        echo "\$ nvidia-smi"
        nvidia-smi || true
    fi
}

export -f environment_report
export PY
write_summary running
run_part env none "${GPU_CHECK_ENV_TIMEOUT:-60}" \
    bash -c environment_report
run_part cuda-tests cuda "${GPU_CHECK_CUDA_TESTS_TIMEOUT:-90}" \
    "$PY" -m pytest -q -rs -p no:cacheprovider \
    --junitxml="$OUT/cuda-tests.xml" tests/test_cuda.py \
    tests/test_autocast.py -k cuda ${GPU_CHECK_CUDA_TESTS_ARGS:-}
run_part train-fp32 device "${GPU_CHECK_TRAIN_TIMEOUT:-90}" \
    "$PY" tools/benchmark_train.py $SSD_GRID --device "$DEVICE" \
    --json "$OUT/train-fp32.json" --markdown "$OUT/train-fp32.md" \
    --plot "$OUT/train-fp32.png" ${GPU_CHECK_TRAIN_ARGS:-}
# Inference runs in float32 either way: train-fp32 has timed it.
run_part train-amp cuda "${GPU_CHECK_TRAIN_TIMEOUT:-90}" \
    "$PY" tools/benchmark_train.py $SSD_GRID --device "$DEVICE" \
    --amp fp16 --no-inference --json "$OUT/train-amp.json" \
    --markdown "$OUT/train-amp.md" --plot "$OUT/train-amp.png" \
    ${GPU_CHECK_TRAIN_ARGS:-}
run_part nlpool device "${GPU_CHECK_NLPOOL_TIMEOUT:-45}" \
    "$PY" tools/benchmark_nlpool.py --device "$DEVICE" \
    --json "$OUT/nlpool.json" ${GPU_CHECK_NLPOOL_ARGS:-}
run_part pooling device "${GPU_CHECK_POOLING_TIMEOUT:-90}" \
    "$PY" tools/benchmark_pooling.py --device "$DEVICE" \
    --min-run-time 0.2 --max-run-time 1 --json "$OUT/pooling.json" \
    --markdown "$OUT/pooling.md" ${GPU_CHECK_POOLING_ARGS:-}
run_part demo-amp cuda "${GPU_CHECK_DEMO_TIMEOUT:-150}" \
    "$PY" tools/demo.py --amp \
    --data "${GPU_CHECK_DEMO_DATA:-data/synthetic_driving}" \
    --work-dir "$OUT/demo-amp" ${GPU_CHECK_DEMO_ARGS:-}
write_summary finished
cat "$OUT/summary.txt"
exit "$FAILED"
