"""Export a trained N:M sparse checkpoint as a plain checkpoint: masks
applied to the weights (exact zeros), no optimizer state, verified N:M layer
by layer, loadable by the stock dense model of the same config.

    python tools/model_converters/export_nm.py CONFIG CHECKPOINT OUT
    python tools/model_converters/export_nm.py CONFIG CHECKPOINT --verify-only

The config says which layers are sparse (its NMSparsityHook). With
``--verify-only`` the checkpoint's own weights are checked, e.g. an export.
A thin command line over ``mmnm.apis.export_nm_checkpoint`` /
``verify_nm_checkpoint``.
"""
import argparse
import sys

from mmnm.apis import export_nm_checkpoint, verify_nm_checkpoint
from mmnm.utils.cli import report_errors


@report_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('out', nargs='?', help='exported checkpoint path')
    parser.add_argument('--verify-only', action='store_true')
    args = parser.parse_args()
    if not args.verify_only and not args.out:
        parser.error('give OUT, or --verify-only')

    if args.verify_only:
        summary = verify_nm_checkpoint(args.config, args.checkpoint)
    else:
        summary = export_nm_checkpoint(args.config, args.checkpoint, args.out)
    print(f'{len(summary.layers)} layers verified N:M ({summary.patterns}); '
          f'{summary.zeros}/{summary.numel} of their weights are zero')
    if not args.verify_only:
        print(f'exported to {args.out}')


if __name__ == '__main__':
    sys.exit(main())
