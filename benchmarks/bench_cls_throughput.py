"""Classification training throughput, dense vs N:M, side by side in one run.

The model of an mmpretrain config, built dense (its ``NMSparsityHook``
removed, its optim wrapper a plain ``OptimWrapper``) and N:M at each pattern
asked for (the hook's ``sparsity`` with that pattern, ``SRSTEOptimWrapper``),
runs ``model.train_step`` (data preprocessor, forward, loss, backward,
optimizer step with the SR-STE term) on one batch of random images, in
alternating rounds. Printed: images/s of each, the ratio of the medians
against dense, and what one epoch of ``--epoch-images`` images takes at
that rate, so that a user sees what sparsity costs per epoch.

    python benchmarks/bench_cls_throughput.py            # ResNet-50, 224 px
    python benchmarks/bench_cls_throughput.py --patterns 2:4,1:4,4:8 \
        --batch 32 --device cuda
    python benchmarks/bench_cls_throughput.py --tiny     # seconds; CI
"""
import argparse
import copy
from typing import Callable, Dict

import torch
from bench_train_cost import ratios, side_by_side
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from mmnm.apis import (build_model, config_sparsity, load_config,
                       without_sparsity)
from mmnm.conversion import sparsify_model

CONFIG = 'configs/classification/resnet50_2-4_8xb32-120e_in1k.py'
TINY_CONFIG = 'configs/demo/resnet18_2-4_shapes-cls-64x64.py'


def random_batch(batch: int, size: int, classes: int) -> dict:
    """uint8 images and labels, as a dataloader hands them over."""
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(0)
    return dict(
        inputs=[
            torch.randint(
                0, 256, (3, size, size), generator=gen, dtype=torch.uint8)
            for _ in range(batch)
        ],
        data_samples=[
            DataSample().set_gt_label(int(label))
            for label in torch.randint(0, classes, (batch, ), generator=gen)
        ])


def training_steps(config: str, patterns, batch: int, size: int,
                   device: str) -> Dict[str, Callable[[], None]]:
    """One ``train_step`` per model: ``dense`` and each pattern."""
    cfg = load_config(config)
    sparsity = config_sparsity(cfg)
    if sparsity is None:
        raise ValueError(f'{config}: no NMSparsityHook; give an N:M config')
    dense_cfg = without_sparsity(cfg)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(0)
    dense = build_model(dense_cfg).to(device).train()
    data = random_batch(batch, size, cfg.model.head.num_classes)
    models = {'dense': (dense, dict(cfg.optim_wrapper, type='OptimWrapper'))}
    for pattern in patterns:
        model = copy.deepcopy(dense)
        sparsify_model(model, **dict(sparsity, pattern=pattern))
        models[pattern] = (model, cfg.optim_wrapper)

    def step(model, wrapper) -> Callable[[], None]:
        return lambda: model.train_step(copy.copy(data), wrapper)

    steps = {
        name: step(model, build_optim_wrapper(model, wrapper_cfg))
        for name, (model, wrapper_cfg) in models.items()
    }
    for fn in steps.values():  # warm-up: allocations, thread pools
        fn()
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=CONFIG)
    parser.add_argument(
        '--patterns',
        default='2:4,1:4',
        help='comma-separated N:M patterns to compare with dense')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--epoch-images',
        type=int,
        default=1281167,
        help='images per epoch (default: ImageNet-1k train)')
    parser.add_argument(
        '--tiny',
        action='store_true',
        help='the demo ResNet-18 at 64x64, batch 2, 2 rounds: checks that '
        'the script runs (CI), measures nothing')
    args = parser.parse_args()
    if args.tiny:
        args.config, args.batch, args.size, args.rounds = \
            TINY_CONFIG, 2, 64, 2
    patterns = args.patterns.split(',')
    steps = training_steps(args.config, patterns, args.batch, args.size,
                           args.device)
    times = side_by_side(steps, args.rounds, 1)
    print(f'{args.config}: train_step, batch {args.batch}, {args.size}x'
          f'{args.size}, {args.device}, {torch.get_num_threads()} threads; '
          f'medians of {args.rounds} alternating rounds')
    print(f'{"model":<8} {"images/s":>9} {"step ms":>9} {"x dense":>8} '
          f'{"paired":>7} {"epoch h":>8}')
    dense = times['dense']
    for name, values in times.items():
        _, step, ratio, paired = ratios({'dense': dense, 'other': values})
        rate = args.batch / step
        print(f'{name:<8} {rate:9.2f} {1e3 * step:9.1f} {ratio:8.3f} '
              f'{paired:7.3f} {args.epoch_images / rate / 3600:8.2f}')


if __name__ == '__main__':
    main()
