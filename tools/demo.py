"""The main job, end to end on generated data: train a model N:M sparse with
SR-STE from scratch, evaluate it, verify its sparsity, evaluate its training
checkpoint in the stock dense model, export it as a slim N:M checkpoint,
and, for 2:4, convert that to the compressed 2:4 inference model and
evaluate it too (on a CPU through the decompress path; on sm80+ GPUs the 2:4
kernels). Every step is a call of :mod:`mmnm.apis`, the same calls the
tools make.

    python tools/demo.py               # Mask R-CNN R18-FPN 2:4, bbox + segm
    python tools/demo.py --task det    # Faster R-CNN R18-FPN 2:4, COCO bbox
    python tools/demo.py --task seg    # FCN-R18-D8 2:4, mIoU
    python tools/demo.py --task cls    # ResNet-18 2:4 classifier, top-1
    python tools/demo.py --config \
        configs/demo/mask-rcnn_r18_fpn_dense_shapes-64x64.py
    python tools/demo.py --cfg-options \
        default_hooks.nm_sparsity.sparsity.pattern=4:8
"""
import argparse
import os.path as osp
import sys
from typing import Dict, Optional

import torch
from mmengine.config import DictAction
from mmengine.runner import find_latest_checkpoint

from mmnm.apis import (build_runner, config_sparsity,
                       convert_checkpoint_to_sparse24, evaluate_checkpoint,
                       export_nm_checkpoint, load_config, redirect_data_root,
                       verify_nm_checkpoint, verify_nm_sparsity,
                       without_sparsity)
from mmnm.conversion import SparsitySummary
from mmnm.datasets import generate_shapes_cls_dataset, generate_shapes_dataset
from mmnm.utils.cli import report_errors

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMOS = dict(
    ins='mask-rcnn_r18_fpn_2-4_shapes-64x64.py',
    det='faster-rcnn_r18_fpn_2-4_shapes-64x64.py',
    seg='fcn_r18-d8_2-4_shapes-64x64.py',
    cls='resnet18_2-4_shapes-cls-64x64.py')


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
        '--data-root',
        help='where the generated data goes (default: data/demo/shapes, '
        'data/demo/shapes_cls for classification)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    args = parser.parse_args()
    args.config = args.config or osp.join(REPO, 'configs', 'demo',
                                          DEMOS[args.task])
    return args


def generate_data(cfg, data_root: Optional[str]) -> str:
    """Write the generated data the config reads (classification or
    detection/segmentation shapes); return its folder."""
    if cfg.train_dataloader.dataset.type == 'ShapesClsDataset':
        root = data_root or osp.join(REPO, 'data', 'demo', 'shapes_cls')
        generate_shapes_cls_dataset(root)
    else:
        root = data_root or osp.join(REPO, 'data', 'demo', 'shapes')
        generate_shapes_dataset(root)
    return root


def format_metrics(metrics: Dict[str, float]) -> str:
    """One line of the headline metrics (COCO's per-size ones left out)."""
    return '  '.join(
        f'{key}: {value:.4g}' for key, value in metrics.items()
        if not key.endswith(('time', '_mAP_s', '_mAP_m', '_mAP_l')))


def mib(path: str) -> str:
    return f'{osp.getsize(path) / 2**20:.1f} MiB'


def same_weights(export: str, checkpoint: str) -> bool:
    """Whether every tensor of the export equals the checkpoint's."""
    exported = torch.load(export, map_location='cpu')['state_dict']
    trained = torch.load(checkpoint, map_location='cpu')['state_dict']
    return all(
        torch.equal(value, trained[key]) for key, value in exported.items())


@report_errors
def main() -> None:
    args = parse_args()
    cfg = load_config(args.config, args.cfg_options)
    name = osp.splitext(osp.basename(args.config))[0]
    cfg.work_dir = args.work_dir or osp.join(REPO, 'work_dirs', 'demo', name)
    redirect_data_root(cfg, generate_data(cfg, args.data_root))

    runner = build_runner(cfg)
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
    if config_sparsity(cfg) is None:
        print('\n'.join(lines + ['dense model (no N:M sparse layer)']))
        return
    summary = SparsitySummary(verify_nm_sparsity(model))
    lines += [
        f'sparse layers: {len(summary.layers)} ({summary.patterns}), '
        f'verified N:M in every group; zeros: {summary.zeros}/'
        f'{summary.numel} ({100 * summary.zero_ratio:.2f}%)'
    ]

    # the training checkpoint, as the stock dense model of the config (and
    # so init_detector / init_model / any script) reads it
    checkpoint = find_latest_checkpoint(cfg.work_dir)
    verify_nm_checkpoint(cfg, checkpoint)
    stock_metrics = evaluate_checkpoint(
        cfg, checkpoint, stock_model=True, experiment_name=f'{name}_stock')
    lines += [
        f'training checkpoint: {osp.relpath(checkpoint, REPO)} '
        f'({mib(checkpoint)}), loaded strictly into the stock dense '
        'model, N:M verified',
        f'training checkpoint in the stock dense model:  '
        f'{format_metrics(stock_metrics)}'
    ]

    # the slim export, as tools/model_converters/export_nm.py makes it
    export = osp.join(cfg.work_dir, f'{name}_nm.pth')
    export_nm_checkpoint(cfg, checkpoint, export)
    same = same_weights(export, checkpoint)
    lines += [
        f'export: {osp.relpath(export, REPO)} ({mib(export)}, no '
        'optimizer or training state), N:M verified, '
        f'{"the same" if same else "OTHER"} weights as the training '
        'checkpoint'
    ]
    if summary.patterns == '2:4':
        # the 2:4 inference model, as tools/deploy/convert_sparse24.py
        # makes it, evaluated from the file
        deployed = osp.join(cfg.work_dir, f'{name}_sparse24_fp16.pth')
        result = convert_checkpoint_to_sparse24(
            without_sparsity(cfg), export, deployed, 'fp16')
        deployed_metrics = evaluate_checkpoint(
            cfg, deployed, sparse24=True, experiment_name=f'{name}_sparse24')
        lines += [
            f'2:4 inference model: {osp.relpath(deployed, REPO)} '
            f'({mib(deployed)}); {result.report.summary()}',
            f'2:4 inference model:  {format_metrics(deployed_metrics)}'
        ]
    print('\n'.join(lines))


if __name__ == '__main__':
    sys.exit(main())
