"""Export a trained N:M sparse checkpoint as a plain checkpoint: masks
applied to the weights (exact zeros), no optimizer state, verified N:M layer
by layer, loadable by the stock dense model of the same config.

    python tools/model_converters/export_nm.py CONFIG CHECKPOINT OUT
    python tools/model_converters/export_nm.py CONFIG CHECKPOINT --verify-only

The config says which layers are sparse (its NMSparsityHook). With
``--verify-only`` the checkpoint's own weights are checked, e.g. an export.
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.runner import load_checkpoint

import mmnm  # noqa: F401  (registers mmnm's parts, safe checkpoint loading)
from mmnm.conversion import (check_nm_state_dict, export_state_dict,
                             save_nm_checkpoint, sparse_weight_patterns)
from mmnm.utils.launch import build_sparse_model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('out', nargs='?', help='exported checkpoint path')
    parser.add_argument('--verify-only', action='store_true')
    args = parser.parse_args()
    if not osp.isfile(args.checkpoint):
        raise SystemExit(f'checkpoint not found: {args.checkpoint}')
    if not args.verify_only and not args.out:
        parser.error('give OUT, or --verify-only')

    model = build_sparse_model(args.config)
    patterns = sparse_weight_patterns(model)
    if args.verify_only:
        state = torch.load(args.checkpoint, map_location='cpu')
        state = state.get('state_dict', state)
    else:
        load_checkpoint(
            model, args.checkpoint, map_location='cpu', strict=True)
        state = export_state_dict(model)
    try:
        if args.verify_only:
            check_nm_state_dict(state, patterns)
        else:
            save_nm_checkpoint(
                state, patterns, args.out, source=osp.abspath(args.checkpoint))
    except ValueError as err:
        print(f'{args.checkpoint}: {err}', file=sys.stderr)
        return 1
    sparse = sum(state[key].numel() for key in patterns)
    zeros = sum(int((state[key] == 0).sum()) for key in patterns)
    print(f'{len(patterns)} layers verified N:M '
          f'({", ".join(sorted({str(p) for p in patterns.values()}))}); '
          f'{zeros}/{sparse} of their weights are zero')
    if not args.verify_only:
        print(f'exported to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
