"""N:M mask speed: mmnm's selection-network mask vs a straightforward
argsort-and-scatter mask, on the conv weights of every ResNet-50 layer.

Both run side by side on the same tensors in one process; the script prints
per-layer times, the totals and their ratio, and checks that the masks are
identical.

    python benchmarks/bench_nm_mask.py [--pattern 2:4] [--repeats 5]
"""
import argparse
import statistics
import time
from typing import Callable, List, Tuple

import torch
from torch import Tensor, nn

from mmnm.ops import nm_mask
from mmnm.pattern import NMPattern


def argsort_scatter_mask(weight: Tensor, n: int, m: int) -> Tensor:
    """The straightforward implementation: channel groups as rows (KRSC),
    a full stable argsort per row, scatter the top-n."""
    out, cin = weight.shape[:2]
    rows = weight.detach().movedim(1, -1).reshape(-1, m).abs()
    order = torch.argsort(rows, dim=1, descending=True, stable=True)
    keep = torch.zeros_like(
        rows, dtype=torch.bool).scatter_(1, order[:, :n], True)
    return keep.view(out, *weight.shape[2:], cin).movedim(-1, 1)


def resnet50_convs() -> List[Tuple[str, nn.Conv2d]]:
    from mmdet.models.backbones import ResNet
    torch.manual_seed(0)
    model = ResNet(depth=50)
    model.init_weights()
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Conv2d)]


def best_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--pattern', default='2:4')
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    nm = NMPattern.parse(args.pattern)

    print(f'{torch.get_num_threads()} threads, pattern {nm}, median of '
          f'{args.repeats}')
    print(f'{"layer":<28}{"weight":>18}{"mmnm ms":>10}{"argsort ms":>12}'
          f'{"ratio":>8}')
    ours_total = naive_total = 0.0
    for name, conv in resnet50_convs():
        weight = conv.weight.detach()
        shape = 'x'.join(map(str, weight.shape))
        if weight.shape[1] % nm.m:
            print(f'{name:<28}{shape:>18}   skipped: {weight.shape[1]} '
                  f'input channels not divisible by {nm.m}')
            continue
        if not torch.equal(
                nm_mask(weight, nm.n, nm.m),
                argsort_scatter_mask(weight, nm.n, nm.m)):
            raise AssertionError(f'{name}: masks differ')
        ours = best_time(lambda: nm_mask(weight, nm.n, nm.m), args.repeats)
        naive = best_time(lambda: argsort_scatter_mask(weight, nm.n, nm.m),
                          args.repeats)
        ours_total += ours
        naive_total += naive
        print(f'{name:<28}{shape:>18}{1e3 * ours:>10.2f}{1e3 * naive:>12.2f}'
              f'{naive / ours:>7.1f}x')
    print(f'{"total":<46}{1e3 * ours_total:>10.1f}{1e3 * naive_total:>12.1f}'
          f'{naive_total / ours_total:>7.1f}x')
    print(f'mmnm mask is {naive_total / ours_total:.2f}x faster than '
          'argsort-and-scatter (target >= 3x); masks identical')


if __name__ == '__main__':
    main()
