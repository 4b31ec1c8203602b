#!/usr/bin/env bash
# Every check that needs a GPU, in one run of a few minutes, offline:
#   1. environment (GPU, torch, cuSPARSELt)
#   2. Python packages mmnm needs (installed from wheels if missing)
#   3. benchmarks/bench_sparse24_inference.py (dense vs 2:4 table): first,
#      as it does not need mmnm._ext (its GEMMs are PyTorch's kernels), so
#      that a slow or failed build cannot cost it
#   4. mmnm._ext built in place with its CUDA kernels (FORCE_CUDA=1)
#   5. .dev_scripts/gpu_checks/check_amp_sr_ste.py (AMP loss scaling of SR-STE)
#   6. benchmarks/bench_nm_mask.py --device cuda (mask kernel GB/s against
#      the device's copy bandwidth and nominal peak)
#   7. benchmarks/bench_train_cost.py: ResNet-50 training step, dense vs 2:4
#      SR-STE, AMP, batch 32, 224x224, channels_last
#   8. the CUDA tests (tests/**/test_*.py, -k cuda): last, with the time left
# Each step runs under a time limit and is timed; a failed step does not
# stop the later ones; the summary at the end lists them, and the exit
# status is non-zero if any failed. Logs (OUT defaults to
# work_dirs/gpu_checks): every step's output in $OUT/all.log, the result
# steps' (bench, amp_sr_ste, mask, train, tests) also in $OUT/<step>.log,
# and $OUT/summary.txt: 7 files, as the device tool returns at most 8.
#
# Time: the defaults fit one command of the device tool (at most 600 s)
# inside a 15-minute GPU lease, with room for starting the machine: the
# whole run stops after TOTAL_TIMEOUT (540 s = 9 min; each step's limit is
# cut to what is left, a step with under 15 s left is skipped and counts
# as failed). Step limits: env 30, wheels 60, deps 60, bench 180,
# build 240, ext 30, amp 60, mask 60, train 120, tests 150 s; the
# benchmarks run 5 rounds by default (BENCH_ARGS, TRAIN_ARGS) to stay
# within their limits.
#
#   bash .dev_scripts/gpu_checks/run_gpu_checks.sh
#
# Offline machines lacking mmengine/mmcv: first, on a machine with the
# package index and a pip, write the wheels into .whl/ (pure Python:
# mmengine and its small dependencies, mmcv-lite, i.e. mmcv without its
# compiled ops; mmdet's Faster R-CNN and the N:M deformable convs need
# those and are then skipped; git ignores .whl/, so the device tool must
# carry it):
#
#   bash .dev_scripts/gpu_checks/run_gpu_checks.sh --prepare-wheels [.whl] [3.12]
#
# and carry .whl/ along; this script installs them into a temporary folder.
#
# Environment: PYTHON (python3), OUT, MMNM_WHEELS (<repo>/.whl),
# TORCH_CUDA_ARCH_LIST (the GPU's), MAX_JOBS (nproc), BENCH_ARGS
# ("--rounds 5"), TRAIN_ARGS ("--model-rounds 5"), TOTAL_TIMEOUT (540),
# STEP_TIMEOUT_BUILD/TESTS/AMP/MASK/TRAIN/BENCH (240/150/60/60/120/180 s).
set -euo pipefail
# Python's output reaches the logs as it is printed, also from a step that
# its time limit ends (block-buffered into the pipe, it would be lost)
export PYTHONUNBUFFERED=1

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
PYTHON=${PYTHON:-python3}

# pure-Python packages mmnm imports that a bare CUDA image may lack
# (mmcv-lite: mmcv's Python part, imported as mmcv, without compiled ops)
WHEEL_PACKAGES=(mmengine==0.10.7 mmcv-lite==2.1.0 addict termcolor yapf
                platformdirs)

prepare_wheels() {
    local dest=${1:-$ROOT/.whl} pyver=${2:-3.12}
    local venv_python=${VENV_PYTHON:-$ROOT/.venv/bin/python}
    mkdir -p "$dest"
    # one version of each package: pip refuses two at install
    rm -f "$dest"/*.whl
    "$venv_python" -m pip download -q --no-deps --only-binary=:all: \
        --python-version "$pyver" --implementation cp --abi none \
        --platform any -d "$dest" "${WHEEL_PACKAGES[@]}"
    ls -l "$dest"
}

if [ "${1:-}" = --prepare-wheels ]; then
    prepare_wheels "${2:-}" "${3:-}"
    exit 0
fi

OUT=${OUT:-$ROOT/work_dirs/gpu_checks}
mkdir -p "$OUT"
: >"$OUT/all.log"
# steps whose output also gets a log of its own (the device tool returns
# at most 8 files from $OUT: these, all.log and summary.txt)
OWN_LOGS=" bench amp_sr_ste mask train tests "
SUMMARY=()
FAILED=0
DEADLINE=$(( $(date +%s) + ${TOTAL_TIMEOUT:-540} ))

# step NAME TIMEOUT COMMAND...: run, log to $OUT/all.log (and, for the
# steps in OWN_LOGS, to $OUT/NAME.log), time, record; TIMEOUT is cut to the
# time left before DEADLINE
step() {
    local name=$1 limit=$2 start rc shown left
    shift 2
    shown="$*"
    left=$(( DEADLINE - $(date +%s) ))
    if [ "$left" -lt 15 ]; then
        echo "=== [$name] skipped: ${left}s left of TOTAL_TIMEOUT" |
            tee -a "$OUT/all.log"
        SUMMARY+=("SKIP  $name  (TOTAL_TIMEOUT reached)")
        FAILED=1
        return 0
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo
    echo "=== [$name] ${shown%%$'\n'*} (limit ${limit}s)"
    start=$(date +%s)
    local logs=("$OUT/all.log") log="$OUT/all.log"
    if [[ $OWN_LOGS == *" $name "* ]]; then
        log="$OUT/$name.log"
        : >"$log"
        logs+=("$log")
    fi
    echo "=== [$name] ${shown%%$'\n'*} (limit ${limit}s)" >>"$OUT/all.log"
    set +e
    timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 \
        | tee -a "${logs[@]}"
    rc=${PIPESTATUS[0]}
    set -e
    local took=$(( $(date +%s) - start ))
    if [ "$rc" -eq 0 ]; then
        SUMMARY+=("PASS  $name  ${took}s")
    else
        # 124: ended by TERM at the limit; 137: killed 10 s after it
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            echo "[$name] timed out after ${limit}s" | tee -a "$OUT/all.log"
        fi
        SUMMARY+=("FAIL  $name  ${took}s  (exit $rc, log $log)")
        FAILED=1
    fi
    echo "=== [$name] exit $rc in ${took}s" | tee -a "$OUT/all.log"
    return 0
}

step env 30 bash -c "nvidia-smi || true; \"$PYTHON\" - <<'PY'
import sys, torch
print('python', sys.version.split()[0], '| torch', torch.__version__,
      '| CUDA', torch.version.cuda)
assert torch.cuda.is_available(), 'torch sees no CUDA device'
cap = torch.cuda.get_device_capability()
print('device', torch.cuda.get_device_name(), 'capability', cap)
sparselt = getattr(torch.backends, 'cusparselt', None)
print('cuSPARSELt', sparselt.is_available() if sparselt else None,
      sparselt.version() if sparselt and sparselt.is_available() else '')
print('2:4 ops:', {op: hasattr(torch, op) for op in (
    '_cslt_compress', '_cslt_sparse_mm', '_cslt_sparse_mm_search',
    '_sparse_semi_structured_mm', '_sparse_semi_structured_addmm')})
PY"

deps_ok() {
    timeout 60 "$PYTHON" -c 'import mmengine, mmcv.cnn' >/dev/null 2>&1
}
WHEELS=${MMNM_WHEELS:-$ROOT/.whl}
if ! deps_ok; then
    if ls "$WHEELS"/*.whl >/dev/null 2>&1; then
        SITE=$(mktemp -d /tmp/mmnm-site.XXXXXX)
        step wheels 60 "$PYTHON" -m pip install -q --no-index --no-deps \
            --no-compile --target "$SITE" "$WHEELS"/*.whl
        export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    else
        echo "mmengine/mmcv are not importable and $WHEELS holds no wheels:"
        echo "run '$0 --prepare-wheels' where the package index is reachable"
        echo "and carry .whl/ here (or set MMNM_WHEELS)."
    fi
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
step deps 60 "$PYTHON" -c "
import mmengine, mmcv, mmnm
print('mmengine', mmengine.__version__, '| mmcv', mmcv.__version__,
      '| mmnm', mmnm.__version__, 'from', mmnm.__file__)
try:
    import mmcv.ops, mmdet
    print('mmdet', mmdet.__version__, 'with mmcv ops')
except ImportError as err:
    print('no mmdet/mmcv ops (Faster R-CNN checks skipped):', err)
"

# the inference benchmark needs no mmnm._ext (PyTorch's 2:4 kernels; the
# compression has a PyTorch path): before the build, so it runs whatever
# the build takes
# shellcheck disable=SC2086
step bench "${STEP_TIMEOUT_BENCH:-180}" "$PYTHON" \
    benchmarks/bench_sparse24_inference.py ${BENCH_ARGS:---rounds 5}

if [ -z "${TORCH_CUDA_ARCH_LIST:-}" ]; then
    TORCH_CUDA_ARCH_LIST=$(timeout 60 "$PYTHON" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null || echo "8.0;9.0")
    export TORCH_CUDA_ARCH_LIST
fi
if [ -z "${CUDA_HOME:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
    export CUDA_HOME=/usr/local/cuda
fi
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
# the Python's own bin folder first: its ninja (parallel compiles; without
# it, setuptools compiles one file after another)
PYTHON_BIN=$(timeout 60 "$PYTHON" -c \
    'import os, sys; print(os.path.dirname(sys.executable))' 2>/dev/null || :)
if [ -n "$PYTHON_BIN" ]; then export PATH="$PYTHON_BIN:$PATH"; fi
step build "${STEP_TIMEOUT_BUILD:-240}" bash -c \
    'echo "nvcc: $(command -v nvcc) | ninja: $(command -v ninja) | CUDA_HOME=${CUDA_HOME:-} | archs $TORCH_CUDA_ARCH_LIST | $MAX_JOBS jobs"
     exec env FORCE_CUDA=1 "$0" setup.py build_ext --inplace' "$PYTHON"
step ext 30 "$PYTHON" -c "
from mmnm.ops import ext_status
from mmnm.ops.ext_loader import ext_has_cuda
print(ext_status())
assert ext_has_cuda(), 'mmnm._ext has no CUDA kernels (see the build in all.log)'
"

step amp_sr_ste "${STEP_TIMEOUT_AMP:-60}" \
    "$PYTHON" .dev_scripts/gpu_checks/check_amp_sr_ste.py

step mask "${STEP_TIMEOUT_MASK:-60}" "$PYTHON" benchmarks/bench_nm_mask.py \
    --device cuda --repeats 5

# --sgd plain: PyTorch's default SGD on both sides (foreach on CUDA), what
# mmdet configs get; the SR-STE term is never fused on CUDA (CPU kernel)
# shellcheck disable=SC2086
step train "${STEP_TIMEOUT_TRAIN:-120}" "$PYTHON" \
    benchmarks/bench_train_cost.py --sections resnet --device cuda --amp \
    --channels-last --batch 32 --sgd plain ${TRAIN_ARGS:---model-rounds 5}

mapfile -t CUDA_TESTS < <(grep -rl --include='test_*.py' -i 'cuda' tests | sort)
echo "CUDA test files: ${CUDA_TESTS[*]}" | tee -a "$OUT/all.log"
step tests "${STEP_TIMEOUT_TESTS:-150}" "$PYTHON" -m pytest -q -rs \
    -p no:cacheprovider -k cuda "${CUDA_TESTS[@]}"

echo
echo "=== summary (logs in $OUT)"
printf '%s\n' "${SUMMARY[@]}" | tee "$OUT/summary.txt"
exit "$FAILED"
