"""ResNet-50 training step, dense vs 2:4 SR-STE, measured side by side.

One step = forward + backward + optimizer step (SGD momentum), batch 2,
224x224, mmdet's ResNet-50. The sparse model has every conv but the 3-channel
stem 2:4 and trains with SRSTEOptimWrapper, so its masks are recomputed every
step as in real training. Dense and sparse steps alternate so that machine
noise hits both alike; the script prints the medians and their ratio.

    python benchmarks/bench_train_step.py [--rounds 20] [--batch 2]
"""
import argparse
import copy
import statistics
import time

import torch
from mmengine.optim import OptimWrapper

from mmnm.conversion import sparsify_model
from mmnm.engine import SRSTEOptimWrapper


def make_step(model, wrapper, images):

    def step() -> float:
        start = time.perf_counter()
        with wrapper.optim_context(model):
            loss = sum(out.mean() for out in model(images))
        wrapper.update_params(loss)
        return time.perf_counter() - start

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=20)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--pattern', default='2:4')
    args = parser.parse_args()

    from mmdet.models.backbones import ResNet
    torch.manual_seed(0)
    dense = ResNet(depth=50)
    dense.init_weights()
    sparse = copy.deepcopy(dense)
    report = sparsify_model(sparse, args.pattern)
    print(f'sparse model: {len(report.sparse_layers)}/{len(report.layers)} '
          f'convs {args.pattern}; {torch.get_num_threads()} threads')

    def sgd(model):
        return torch.optim.SGD(
            model.parameters(), lr=1e-3, momentum=0.9, weight_decay=1e-4)

    images = torch.randn(args.batch, 3, args.size, args.size)
    steps = {
        'dense':
        make_step(dense, OptimWrapper(sgd(dense)), images),
        f'{args.pattern} SR-STE':
        make_step(sparse, SRSTEOptimWrapper(optimizer=sgd(sparse)), images),
    }
    for step in steps.values():  # warm-up
        step()
        step()
    times = {name: [] for name in steps}
    for _ in range(args.rounds):
        for name, step in steps.items():
            times[name].append(step())
    medians = {name: statistics.median(t) for name, t in times.items()}
    (dense_name, dense_t), (sparse_name, sparse_t) = medians.items()
    # each round's two steps ran back to back: their ratio shares its noise
    paired = statistics.median(
        s / d for d, s in zip(times[dense_name], times[sparse_name]))
    print(f'batch {args.batch}, {args.size}x{args.size}, median of '
          f'{args.rounds} alternating rounds (forward+backward+step)')
    print(f'{dense_name:>14}: {1e3 * dense_t:8.1f} ms')
    print(f'{sparse_name:>14}: {1e3 * sparse_t:8.1f} ms')
    print(f'sparse/dense ratio: {sparse_t / dense_t:.3f} of medians, '
          f'{paired:.3f} median of paired rounds (target <= 1.10)')


if __name__ == '__main__':
    main()
