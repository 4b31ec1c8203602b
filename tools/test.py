"""Evaluate a checkpoint with the metric of its mmdet or mmseg config (N:M
sparse when the config holds an ``NMSparsityHook`` with ``sparsity``).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm|mpi]
"""
import argparse
import os.path as osp

import mmnm  # noqa: F401  (registers mmnm's parts, safe checkpoint loading)
from mmnm.utils.launch import (add_common_args, build_runner, check_data_roots,
                               load_config)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    add_common_args(parser)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint not found: {args.checkpoint}')
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    check_data_roots(cfg, ('test_dataloader', ))
    build_runner(cfg).test()


if __name__ == '__main__':
    main()
