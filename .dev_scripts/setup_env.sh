#!/usr/bin/env bash
# Create (or reuse) the virtual environment at .venv with PyTorch, the
# OpenMMLab stack, mmcv 2.1.0 with its ops and mmnm itself.
#
# mmcv ships only as source; its ops take ~25 min to compile on 2 cores, so
# the wheel is built once into a cache outside the repo and reused by every
# later clone on this machine.
#
# Environment: MMNM_VENV (default <repo>/.venv), MMNM_TORCH (default
# 2.13.0), MMNM_WHEEL_CACHE (default ~/.cache/mmnm/wheels), PYTHON.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMNM_VENV:-$ROOT/.venv}
TORCH_VERSION=${MMNM_TORCH:-2.13.0}
MMCV_VERSION=2.1.0
PYTHON=${PYTHON:-python3}
PY_TAG=$("$PYTHON" -c 'import sys; print(sys.implementation.cache_tag)')
CACHE=${MMNM_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmnm/wheels}/torch-$TORCH_VERSION-$PY_TAG
PIP="$VENV/bin/python -m pip"

# Reuse the environment while its recipe (and mmnm's C++ sources, compiled
# into mmnm._ext by the editable install) is unchanged.
RECIPE=$(cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "${BASH_SOURCE[0]}" \
    $(find "$ROOT/mmnm/ops/csrc" -type f | sort) | sha1sum | cut -c1-12)
STAMP=$VENV/.mmnm-env-$TORCH_VERSION-$RECIPE
if [ -f "$STAMP" ]; then
    exit 0
fi

echo "[setup_env] preparing $VENV"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
$PIP install -q --upgrade pip
$PIP install -q "torch==$TORCH_VERSION" -r "$ROOT/requirements/build.txt"

if ! ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl >/dev/null 2>&1; then
    echo "[setup_env] building mmcv $MMCV_VERSION with ops (once, ~25 min on 2 cores) into $CACHE"
    mkdir -p "$CACHE"
    MMCV_WITH_OPS=1 MAX_JOBS=$(nproc) $PIP wheel -q --no-build-isolation \
        --no-deps -w "$CACHE" "mmcv==$MMCV_VERSION"
fi
$PIP install -q "$CACHE"/mmcv-$MMCV_VERSION-*.whl
$PIP install -q -r "$ROOT/requirements/runtime.txt" \
    -r "$ROOT/requirements/tests.txt" -r "$ROOT/requirements/lint.txt"
$PIP install -q --no-build-isolation --no-deps -e "$ROOT"

"$VENV/bin/python" - <<'PY'
import mmcv, mmcv.ops, mmdet, mmengine, mmseg, torch
import mmnm
print(f'[setup_env] torch {torch.__version__}, mmengine {mmengine.__version__}, '
      f'mmcv {mmcv.__version__} (ops), mmdet {mmdet.__version__}, '
      f'mmseg {mmseg.__version__}, mmnm {mmnm.__version__}')
PY
rm -f "$VENV"/.mmnm-env-*
touch "$STAMP"
