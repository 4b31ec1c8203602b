#!/usr/bin/env bash
# Distributed testing (torchrun): bash tools/dist_test.sh CONFIG CHECKPOINT NPROC [test.py options...]
TOOLS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
exec bash "$TOOLS/dist_launch.sh" "$3" "$TOOLS/test.py" "$1" "$2" "${@:4}"
