"""Convert a trained N:M checkpoint (or an exported plain one) into a
compressed 2:4 inference checkpoint.

    python tools/deploy/convert_sparse24.py CONFIG CHECKPOINT OUT \
        [--dtype fp16|bf16] [--exclude GLOB ...] [--min-weight-numel N]

CHECKPOINT is either a training checkpoint of a sparse config (its
NMSparsityHook says which layers are masked; the masks are recomputed from
the weights) or a plain checkpoint whose weights already are 2:4, e.g. from
tools/model_converters/export_nm.py (then a dense config also works). Every
Conv2d/Linear whose (masked) weight is 2:4 along input channels and whose
shape fits the kernels is stored as fp16/bf16 values + CUTLASS metadata;
the table printed says why the others stay dense. Load the result with
``mmnm.apis.load_sparse24_model(CONFIG, OUT)``. The folder of OUT is
created if missing. A thin command line over
``mmnm.apis.convert_checkpoint_to_sparse24``.
"""
import argparse
import sys
from typing import List, Optional

from mmengine.config import DictAction

from mmnm.apis import SPARSE24_DTYPES, convert_checkpoint_to_sparse24
from mmnm.utils.cli import report_errors


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument(
        'out', help='compressed checkpoint to write (its folder is created)')
    parser.add_argument(
        '--dtype', choices=sorted(SPARSE24_DTYPES), default='fp16')
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


@report_errors
def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    result = convert_checkpoint_to_sparse24(
        args.config,
        args.checkpoint,
        args.out,
        args.dtype,
        exclude=args.exclude,
        min_weight_numel=args.min_weight_numel,
        cfg_options=args.cfg_options)
    print(f'{args.checkpoint}: loaded into the '
          f'{"N:M sparse" if result.sparse_config else "dense"} model of '
          f'{args.config}')
    print(result.report.table())
    print(f'sizes in bytes ({args.checkpoint} -> {args.out}):')
    print(result.size_table())
    print(f'saved {len(result.report.sparse_layers)} 2:4 layers '
          f'({args.dtype}) to {args.out}')


if __name__ == '__main__':
    sys.exit(main())
