"""Train an mmdet or mmseg model from its config; N:M sparse when the
config holds an ``NMSparsityHook`` with ``sparsity`` (see configs/).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm|mpi]
"""
import argparse

import mmnm  # noqa: F401  (registers mmnm's parts, safe checkpoint loading)
from mmnm.engine.optimizers import enable_amp
from mmnm.utils.launch import (add_common_args, build_runner, check_data_roots,
                               load_config)


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


def main() -> None:
    args = parse_args()
    cfg = load_config(args)
    if args.amp:
        enable_amp(cfg.optim_wrapper)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume:
        cfg.resume, cfg.load_from = True, args.resume
    check_data_roots(cfg, ('train_dataloader', 'val_dataloader'))
    build_runner(cfg).train()


if __name__ == '__main__':
    main()
