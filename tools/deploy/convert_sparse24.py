"""Convert a trained N:M checkpoint (or an exported plain one) into a
compressed 2:4 inference checkpoint.

    python tools/deploy/convert_2to4.py CONFIG CHECKPOINT OUT [--dtype fp16]

CHECKPOINT is either a training checkpoint of a sparse config (its
NMSparsityHook says which layers are masked; the masks are recomputed from
the weights) or a plain checkpoint whose weights already are 2:4, e.g. from
tools/model_converters/export_nm.py (then a dense config also works). Every
Conv2d/Linear whose (masked) weight is 2:4 along input channels and whose
shape fits the kernels is stored as fp16/bf16 values + CUTLASS metadata;
the table printed says why the others stay dense. Load the result with
``mmnm.deploy.load_sparse24_model(CONFIG, OUT)``. The folder of OUT is
created if missing.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Dict, List, Mapping, Optional

DTYPES = {'fp16': 'float16', 'bf16': 'bfloat16'}


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument(
        'out', help='compressed checkpoint to write (its folder is created)')
    parser.add_argument('--dtype', choices=sorted(DTYPES), default='fp16')
    parser.add_argument(
        '--exclude',
        nargs='+',
        default=[],
        metavar='GLOB',
        help='layers kept dense, e.g. "roi_head.*"')
    parser.add_argument(
        '--min-weight-numel',
        type=int,
        default=0,
        help='keep layers with fewer weights (out x K) dense: small GEMMs '
        'run slower on the 2:4 kernels than dense')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. model.backbone.depth=101')
    return parser.parse_args(argv)


def tensor_bytes(state: Mapping, keys=None) -> int:
    """Bytes of the tensors of ``state`` (those under ``keys``)."""
    import torch
    keys = state.keys() if keys is None else keys
    return sum(state[k].numel() * state[k].element_size() for k in keys
               if isinstance(state[k], torch.Tensor))


def size_table(rows: Dict[str, tuple]) -> str:
    lines = [f'{"":<28}{"before":>14}{"after":>14}{"ratio":>8}']
    for name, (before, after) in rows.items():
        lines.append(f'{name:<28}{before:>14,}{after:>14,}'
                     f'{after / max(before, 1):>8.3f}')
    return '\n'.join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    for what in ('config', 'checkpoint'):
        path = getattr(args, what)
        if not osp.isfile(path):
            print(f'{what} not found: {path}', file=sys.stderr)
            return 1

    import torch
    from mmengine.config import Config
    from mmengine.model import revert_sync_batchnorm
    from mmengine.runner import load_checkpoint

    from mmnm.deploy import convert_to_sparse24, save_sparse24_checkpoint
    from mmnm.utils.launch import (build_model, build_sparse_model,
                                   config_sparsity)

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    sparse = config_sparsity(cfg) is not None
    model = build_sparse_model(cfg) if sparse else build_model(cfg)
    model = revert_sync_batchnorm(model).eval()
    try:
        load_checkpoint(
            model,
            args.checkpoint,
            map_location='cpu',
            strict=True,
            logger='silent')
    except Exception as err:  # noqa: B902 (unreadable file, wrong keys...)
        print(
            f'{args.checkpoint}: does not load into the model of '
            f'{args.config}: {type(err).__name__}: {err}',
            file=sys.stderr)
        return 1
    print(f'{args.checkpoint}: loaded into the '
          f'{"N:M sparse" if sparse else "dense"} model of {args.config}')

    before = {k: v for k, v in model.state_dict().items()}
    weight_keys = [
        f'{name}.weight' for name, m in model.named_modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    ]
    dtype = getattr(torch, DTYPES[args.dtype])
    try:
        report = convert_to_sparse24(
            model,
            dtype,
            exclude=args.exclude,
            min_weight_numel=args.min_weight_numel,
            logger=None)
    except ValueError as err:
        print(f'{args.checkpoint}: {err}', file=sys.stderr)
        return 1
    print(report.table())

    meta = dict(
        config=osp.abspath(args.config),
        source=osp.abspath(args.checkpoint),
        dtype=str(dtype))
    try:
        os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
        save_sparse24_checkpoint(model, args.out, meta)
    except OSError as err:
        print(
            f'{args.out}: cannot write the compressed checkpoint: {err}',
            file=sys.stderr)
        return 1
    after = model.state_dict()
    converted = [layer.name for layer in report.sparse_layers]
    rows = {
        'Conv/Linear weights':
        (tensor_bytes(before, weight_keys),
         tensor_bytes(before,
                      [k for k in weight_keys if k[:-7] not in converted]) +
         tensor_bytes(after, [
             f'{n}.weight_{part}' for n in converted
             for part in ('values', 'meta')
         ])),
        '  of the 2:4 layers':
        (tensor_bytes(before, [f'{n}.weight' for n in converted]),
         tensor_bytes(after, [
             f'{n}.weight_{part}' for n in converted
             for part in ('values', 'meta')
         ])),
        'state_dict tensors': (tensor_bytes(before), tensor_bytes(after)),
        'file': (osp.getsize(args.checkpoint), osp.getsize(args.out)),
    }
    print(f'sizes in bytes ({args.checkpoint} -> {args.out}):')
    print(size_table(rows))
    print(f'saved {len(converted)} 2:4 layers ({args.dtype}) to {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
