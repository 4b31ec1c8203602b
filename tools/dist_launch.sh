#!/usr/bin/env bash
# torchrun launcher behind dist_train.sh and dist_test.sh: NCCL on GPUs,
# gloo on CPU-only hosts (mmnm.utils.prepare_cpu_distributed).
#   bash tools/dist_launch.sh NPROC SCRIPT [SCRIPT args...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT; PYTHON picks the
# interpreter.
set -euo pipefail
NPROC=$1
SCRIPT=$2
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

PYTHONPATH="$TOOLS/..${PYTHONPATH:+:$PYTHONPATH}" \
"${PYTHON:-python}" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" "$SCRIPT" "${@:3}" --launcher pytorch
