"""The main job: generate the shapes demo data, train a model N:M sparse
with SR-STE from scratch, evaluate it and verify its sparsity.

    python tools/demo.py                      # FCN-R18, 2:4, mIoU
    python tools/demo.py --cfg-options custom_hooks.0.sparsity.pattern=4:8
    python tools/demo.py --config configs/demo/fcn_r18-d8_dense_shapes-64x64.py
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = osp.join(REPO, 'configs', 'demo',
                          'fcn_r18-d8_2-4_shapes-64x64.py')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--work-dir', default=None)
    parser.add_argument('--data-root', default=osp.join(REPO, 'data', 'demo',
                                                        'shapes'))
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    from mmnm.conversion import measure_sparsity, verify_nm_sparsity
    from mmnm.datasets import generate_shapes_dataset

    generate_shapes_dataset(args.data_root)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.work_dir = args.work_dir or osp.join(
        REPO, 'work_dirs', 'demo',
        osp.splitext(osp.basename(args.config))[0])
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = args.data_root

    runner = Runner.from_cfg(cfg)
    runner.train()  # ends with the validation of the last iteration

    print('\n=== mmnm demo result ===')
    print(f'config: {osp.relpath(args.config, REPO)}')
    for key, buffer in runner.message_hub.log_scalars.items():
        if key.startswith('val/') and not key.endswith('time'):
            print(f'{key[4:]}: {buffer.current():.2f}')
    if not measure_sparsity(runner.model):
        print('dense model (no N:M sparse layer)')
        return 0
    layers = verify_nm_sparsity(runner.model)
    numel = sum(layer.numel for layer in layers)
    zeros = sum(layer.zeros for layer in layers)
    patterns = sorted({str(layer.pattern) for layer in layers})
    print(f'sparse layers: {len(layers)} ({", ".join(patterns)}), verified '
          f'N:M in every group')
    print(f'zeros in sparse layers: {zeros}/{numel} '
          f'({100 * zeros / numel:.2f}%)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
