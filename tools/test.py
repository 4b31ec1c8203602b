"""Evaluate a checkpoint with the metric of its mmdet or mmseg config (N:M
sparse when the config holds an ``NMSparsityHook`` with ``sparsity``).

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm|mpi]
"""
import argparse
import os.path as osp
import sys

from mmnm.apis import build_runner, check_data_roots
from mmnm.utils.cli import add_common_args, config_from_args, report_errors


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    add_common_args(parser)
    return parser.parse_args()


@report_errors
def main() -> None:
    args = parse_args()
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint not found: {args.checkpoint}')
    cfg = config_from_args(args)
    cfg.load_from = args.checkpoint
    check_data_roots(cfg, ('test_dataloader', ))
    build_runner(cfg).test()


if __name__ == '__main__':
    sys.exit(main())
