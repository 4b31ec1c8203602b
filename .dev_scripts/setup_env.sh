#!/usr/bin/env bash
# Create (or reuse) the virtual environment at .venv with PyTorch, the
# OpenMMLab stack, mmcv 2.1.0 with its ops and mmnm itself.
#
# mmcv ships only as source; its ops take ~25 min to compile on 2 cores, so
# the wheel is built once into a cache outside the repo and reused by every
# later clone on this machine.
#
# PyTorch comes from the package index as its default (CUDA) build, which
# also runs on CPU-only machines: mmpretrain imports torchvision, and the
# index's torchvision wheels are linked against those builds. A CPU-only
# build (`+cpu`, e.g. a local wheel that pip would prefer) cannot load
# them ("operator torchvision::nms does not exist"), so it is excluded.
#
# Environment: MMNM_VENV (default <repo>/.venv), MMNM_TORCH (default
# 2.13.0) with MMNM_TORCHVISION (its torchvision, default 0.28.0),
# MMNM_WHEEL_CACHE (default ~/.cache/mmnm/wheels), PYTHON.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${MMNM_VENV:-$ROOT/.venv}
TORCH_VERSION=${MMNM_TORCH:-2.13.0}
TORCHVISION_VERSION=${MMNM_TORCHVISION:-0.28.0}
MMCV_VERSION=2.1.0
PYTHON=${PYTHON:-python3}
PY_TAG=$("$PYTHON" -c 'import sys; print(sys.implementation.cache_tag)')
PIP="$VENV/bin/python -m pip"

# Reuse the environment while its recipe (and mmnm's C++ sources, compiled
# into mmnm._ext by the editable install) is unchanged.
RECIPE=$(cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "${BASH_SOURCE[0]}" \
    $(find "$ROOT/mmnm/ops/csrc" -type f | sort) | sha1sum | cut -c1-12)
STAMP=$VENV/.mmnm-env-$TORCH_VERSION-$TORCHVISION_VERSION-$RECIPE
if [ -f "$STAMP" ]; then
    exit 0
fi

echo "[setup_env] preparing $VENV"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
$PIP install -q --upgrade pip
$PIP install -q "torch==$TORCH_VERSION,!=$TORCH_VERSION+cpu" \
    "torchvision==$TORCHVISION_VERSION" -r "$ROOT/requirements/build.txt"

# The mmcv wheel is keyed on the exact torch build it is compiled against.
TORCH_BUILD=$("$VENV/bin/python" -c 'import torch; print(torch.__version__)')
CACHE=${MMNM_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmnm/wheels}/torch-$TORCH_BUILD-$PY_TAG
if ! ls "$CACHE"/mmcv-$MMCV_VERSION-*.whl >/dev/null 2>&1; then
    echo "[setup_env] building mmcv $MMCV_VERSION with ops (once, ~25 min on 2 cores) into $CACHE"
    mkdir -p "$CACHE"
    # --no-cache-dir: pip's own wheel cache ignores which torch built it
    MMCV_WITH_OPS=1 MAX_JOBS=$(nproc) $PIP wheel -q --no-build-isolation \
        --no-cache-dir --no-deps -w "$CACHE" "mmcv==$MMCV_VERSION"
fi
# --force-reinstall: an mmcv built against another torch build is replaced
$PIP install -q --force-reinstall --no-deps "$CACHE"/mmcv-$MMCV_VERSION-*.whl
$PIP install -q -r "$ROOT/requirements/runtime.txt" \
    -r "$ROOT/requirements/tests.txt" -r "$ROOT/requirements/lint.txt"
$PIP install -q --no-build-isolation --no-deps -e "$ROOT"

"$VENV/bin/python" - <<'PY'
import mmcv, mmcv.ops, mmdet, mmengine, mmpretrain, mmseg, torch, torchvision
import mmnm
print(f'[setup_env] torch {torch.__version__}, torchvision '
      f'{torchvision.__version__}, mmengine {mmengine.__version__}, '
      f'mmcv {mmcv.__version__} (ops), mmdet {mmdet.__version__}, '
      f'mmseg {mmseg.__version__}, mmpretrain {mmpretrain.__version__}, '
      f'mmnm {mmnm.__version__}')
PY
rm -f "$VENV"/.mmnm-env-*
touch "$STAMP"
