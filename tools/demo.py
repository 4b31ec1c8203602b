"""The main job, end to end on generated data: train a model N:M sparse with
SR-STE from scratch, evaluate it, verify its sparsity, evaluate its training
checkpoint in the stock dense model, export it as a slim N:M checkpoint,
and, for 2:4, convert that to the compressed 2:4 inference model and
evaluate it too (on a CPU through the decompress path; on sm80+ GPUs the 2:4
kernels).

    python tools/demo.py               # Mask R-CNN R18-FPN 2:4, bbox + segm
    python tools/demo.py --task det    # Faster R-CNN R18-FPN 2:4, COCO bbox
    python tools/demo.py --task seg    # FCN-R18-D8 2:4, mIoU
    python tools/demo.py --config \
        configs/demo/mask-rcnn_r18_fpn_dense_shapes-64x64.py
    python tools/demo.py --cfg-options \
        default_hooks.nm_sparsity.sparsity.pattern=4:8
"""
import argparse
import os.path as osp
import sys
from typing import Dict, List

import torch
from mmengine.config import Config, DictAction
from mmengine.runner import Runner, find_latest_checkpoint, load_checkpoint

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMOS = dict(
    ins='mask-rcnn_r18_fpn_2-4_shapes-64x64.py',
    det='faster-rcnn_r18_fpn_2-4_shapes-64x64.py',
    seg='fcn_r18-d8_2-4_shapes-64x64.py')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--task',
        choices=sorted(DEMOS),
        default='ins',
        help='which demo config to run (default: ins)')
    parser.add_argument('--config', help='a demo config; overrides --task')
    parser.add_argument('--work-dir')
    parser.add_argument(
        '--data-root', default=osp.join(REPO, 'data', 'demo', 'shapes'))
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args()
    args.config = args.config or osp.join(REPO, 'configs', 'demo',
                                          DEMOS[args.task])
    return args


def format_metrics(metrics: Dict[str, float]) -> str:
    """One line of the headline metrics (COCO's per-size ones left out)."""
    return '  '.join(
        f'{key}: {value:.4g}' for key, value in metrics.items()
        if not key.endswith(('time', '_mAP_s', '_mAP_m', '_mAP_l')))


def mib(path: str) -> str:
    return f'{osp.getsize(path) / 2**20:.1f} MiB'


def deploy_2to4(dense_cfg: Config, export: str, name: str) -> List[str]:
    """Load the export into the stock dense model, convert that to the fp16
    2:4 inference model, save it and evaluate it; the result lines."""
    from mmnm.deploy import convert_to_sparse24, save_sparse24_checkpoint
    cfg = dense_cfg.copy()
    cfg.experiment_name = f'{name}_2to4'
    runner = Runner.from_cfg(cfg)
    load_checkpoint(runner.model, export, map_location='cpu', strict=True)
    report = convert_to_sparse24(runner.model, dtype=torch.float16)
    deployed = osp.join(cfg.work_dir, f'{name}_2to4_fp16.pth')
    save_sparse24_checkpoint(runner.model, deployed)
    # evaluate what the file holds
    runner.model.load_state_dict(
        torch.load(deployed, map_location='cpu')['state_dict'], strict=True)
    metrics = runner.test()
    return [
        f'2:4 inference model: {osp.relpath(deployed, REPO)} '
        f'({mib(deployed)}); '
        f'{report.summary()}',
        f'2:4 inference model:  {format_metrics(metrics)}'
    ]


def main() -> int:
    args = parse_args()
    from mmnm.conversion import (check_nm_state_dict, export_state_dict,
                                 save_nm_checkpoint, sparse_weight_patterns,
                                 verify_nm_sparsity)
    from mmnm.datasets import generate_shapes_dataset
    from mmnm.utils.launch import (build_sparse_model, redirect_data_root,
                                   without_sparsity)

    generate_shapes_dataset(args.data_root)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    name = osp.splitext(osp.basename(args.config))[0]
    cfg.work_dir = args.work_dir or osp.join(REPO, 'work_dirs', 'demo', name)
    redirect_data_root(cfg, args.data_root)

    runner = Runner.from_cfg(cfg)
    model = runner.train()  # ends with the validation of the last iteration
    metrics = {
        key[4:]: buffer.current()
        for key, buffer in runner.message_hub.log_scalars.items()
        if key.startswith('val/')
    }

    lines = [
        '', '=== mmnm demo result ===',
        f'config: {osp.relpath(args.config, REPO)}',
        f'trained model:  {format_metrics(metrics)}'
    ]
    patterns = sparse_weight_patterns(model)
    if not patterns:
        print('\n'.join(lines + ['dense model (no N:M sparse layer)']))
        return 0
    layers = verify_nm_sparsity(model)
    numel = sum(layer.numel for layer in layers)
    zeros = sum(layer.zeros for layer in layers)
    kinds = ', '.join(sorted({str(layer.pattern) for layer in layers}))
    lines += [
        f'sparse layers: {len(layers)} ({kinds}), verified N:M in '
        f'every group; zeros: {zeros}/{numel} '
        f'({100 * zeros / numel:.2f}%)'
    ]

    # the training checkpoint, as the stock dense model of the config (and
    # so init_detector / init_model / any script) reads it
    checkpoint = find_latest_checkpoint(cfg.work_dir)
    dense_cfg = without_sparsity(cfg)
    dense_cfg.experiment_name = f'{name}_stock'
    # nothing but the files named here may be loaded: test() would load these
    dense_cfg.load_from, dense_cfg.resume = None, False
    dense_runner = Runner.from_cfg(dense_cfg)
    load_checkpoint(
        dense_runner.model, checkpoint, map_location='cpu', strict=True)
    check_nm_state_dict(dense_runner.model.state_dict(), patterns)
    stock_metrics = dense_runner.test()
    lines += [
        f'training checkpoint: {osp.relpath(checkpoint, REPO)} '
        f'({mib(checkpoint)}), loaded strictly into the stock dense '
        'model, N:M verified',
        f'training checkpoint in the stock dense model:  '
        f'{format_metrics(stock_metrics)}'
    ]

    # the slim export, made as tools/model_converters/export_nm.py makes it
    export = osp.join(cfg.work_dir, f'{name}_nm.pth')
    exported = build_sparse_model(cfg)
    load_checkpoint(exported, checkpoint, map_location='cpu', strict=True)
    save_nm_checkpoint(
        export_state_dict(exported), patterns, export, source=checkpoint)
    same = all(
        torch.equal(value,
                    dense_runner.model.state_dict()[key])
        for key, value in torch.load(export)['state_dict'].items())
    lines += [
        f'export: {osp.relpath(export, REPO)} ({mib(export)}, no '
        'optimizer or training state), N:M verified, '
        f'{"the same" if same else "OTHER"} weights as the training '
        'checkpoint'
    ]
    if {str(p) for p in patterns.values()} == {'2:4'}:
        lines += deploy_2to4(dense_cfg, export, name)
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
