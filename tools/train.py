"""Train an mmdet or mmseg model from its config; N:M sparse when the
config holds an ``NMSparsityHook`` with ``sparsity`` (see configs/).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm|mpi]
"""
import argparse
import sys

from mmnm.apis import build_runner, check_data_roots
from mmnm.engine.optimizers import enable_amp
from mmnm.utils.cli import add_common_args, config_from_args, report_errors


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or (no value) from the latest '
        'checkpoint in the work dir')
    add_common_args(parser)
    return parser.parse_args()


@report_errors
def main() -> None:
    args = parse_args()
    cfg = config_from_args(args)
    if args.amp:
        enable_amp(cfg.optim_wrapper)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    check_data_roots(cfg, ('train_dataloader', 'val_dataloader'))
    build_runner(cfg).train()


if __name__ == '__main__':
    sys.exit(main())
