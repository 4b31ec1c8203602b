#!/usr/bin/env bash
# Distributed training (torchrun): bash tools/dist_train.sh CONFIG NPROC [train.py options...]
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec bash "$TOOLS/dist_launch.sh" "$2" "$TOOLS/train.py" "$1" "${@:3}"
