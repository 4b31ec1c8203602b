#!/usr/bin/env bash
# Compile mmnm._ext with its CUDA kernels on a machine without a GPU, in a
# separate venv, so that the in-tree mmnm/_ext*.so stays the CPU build of
# the main venv. Prints where the CUDA .so is and checks its CUDA symbols.
#
# Usage: .dev_scripts/build_cuda_ext.sh [OUT_DIR]   (default build/cuda)
# Env: VENV (.venv-cuda), TORCH_SPEC (torch==2.14.1), CUDA_HOME
#      (/usr/local/cuda), TORCH_CUDA_ARCH_LIST ("8.0;9.0"), MAX_JOBS (2).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR=$(realpath -m "${1:-build/cuda}")
VENV=${VENV:-.venv-cuda}
TORCH_SPEC=${TORCH_SPEC:-torch==2.14.1}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}  # nvcc on PATH may be a wrapper
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-8.0;9.0}"
export MAX_JOBS=${MAX_JOBS:-2}

if [[ ! -x "$VENV/bin/python" ]] || \
    ! "$VENV/bin/python" -c 'import torch, setuptools' 2>/dev/null; then
  echo "== creating $VENV ($TORCH_SPEC, a CUDA build)"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q "$TORCH_SPEC" 'setuptools<81' wheel ninja
else
  echo "== reusing $VENV"
fi
export PATH="$(realpath "$VENV")/bin:$PATH"  # its ninja: parallel compiles
"$VENV/bin/python" -c 'import torch; print("torch", torch.__version__,
  "CUDA", torch.version.cuda)'

echo "== compiling into $OUT_DIR (archs $TORCH_CUDA_ARCH_LIST)"
start=$(date +%s)
FORCE_CUDA=1 "$VENV/bin/python" setup.py build_ext \
  --build-lib "$OUT_DIR/lib" --build-temp "$OUT_DIR/temp"
echo "== compiled in $(( $(date +%s) - start )) s"

SO=$(ls "$OUT_DIR"/lib/mmnm/_ext*.so)
echo "== $SO"
symbols=$(nm -C --defined-only "$SO")
echo "-- CUDA launchers (nm -C):"
for name in nm_mask_cuda sparse24_compress_cuda sparse24_decompress_cuda; do
  grep -E " T mmnm::$name\(" <<<"$symbols" | sed 's/^[0-9a-f]* T /   /' ||
    { echo "missing mmnm::$name" >&2; exit 1; }
done
for kernel in nm_mask sparse24_compress sparse24_decompress; do
  echo "   ${kernel}_cuda_kernel: $(grep -v '\[clone' <<<"$symbols" |
    grep -cE " void mmnm::${kernel}_cuda_kernel<") instantiations"
done
echo "-- embedded GPU code:"
CUOBJDUMP=$(command -v cuobjdump || ls "$CUDA_HOME/bin/cuobjdump" \
  "$VENV"/lib/python*/site-packages/triton/backends/nvidia/bin/cuobjdump \
  2>/dev/null | head -n 1 || true)
if [[ -n "$CUOBJDUMP" ]]; then
  "$CUOBJDUMP" --list-elf "$SO" | grep -oE 'sm_[0-9a-z]+' | sort | uniq -c |
    sed 's/^ */   cubins: /'
else
  readelf -SW "$SO" | grep -E '\.nv_fatbin' || { echo "no .nv_fatbin" >&2; exit 1; }
fi
echo "-- linked CUDA libraries (ldd):"
ldd "$SO" | grep cuda || true  # torch's own libs resolve once torch is imported
echo "-- loaded in $VENV:"
"$VENV/bin/python" - "$SO" <<'PY'
import importlib.util
import sys

import torch  # noqa: F401 (loads libtorch for the extension)

spec = importlib.util.spec_from_file_location('mmnm._ext', sys.argv[1])
ext = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ext)
ops = sorted(n for n in dir(ext) if not n.startswith('_'))
print('with_cuda():', ext.with_cuda(), '| ops:', ', '.join(ops))
if not ext.with_cuda():
    sys.exit('the extension was built without its CUDA kernels')

# Smoke test against torch's CUTLASS converter, on the GPU too if any.
from torch.sparse._semi_structured_conversions import \
    sparse_semi_structured_from_dense_cutlass as reference  # noqa: E402

dense = torch.randn(64, 128)
dense = dense * (dense.abs() >= dense.abs().view(64, 32, 4).kthvalue(
    3, dim=2, keepdim=True).values.repeat_interleave(4, 1).view(64, 128))
dense = dense.half()
expected = reference(dense)
devices = ['cpu'] + (['cuda'] if torch.cuda.is_available() else [])
for device in devices:
    values, meta, num_bad = ext.sparse24_compress(dense.to(device))
    same = torch.equal(values.cpu(), expected[0]) and \
        torch.equal(meta.cpu(), expected[1]) and int(num_bad) == 0
    print(f'sparse24_compress on {device} equals torch: {same}')
    if not same:
        sys.exit(1)
PY
