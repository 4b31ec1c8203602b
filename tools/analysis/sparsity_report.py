"""Sparsity report of a run: the per-layer table of a checkpoint and a PNG
plot of SAD and sparsity over training from the run's logged scalars.

    python tools/analysis/sparsity_report.py CONFIG CHECKPOINT RUN_DIR \
        [--out report.png]

RUN_DIR is the timestamped folder that mmengine writes under the work dir
(it holds vis_data/scalars.json).
"""
import argparse
import json
import os.path as osp
import sys
from typing import Dict, List

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from mmnm.apis import init_nm_model, measure_sparsity  # noqa: E402
from mmnm.conversion import SparsitySummary  # noqa: E402
from mmnm.utils.cli import report_errors  # noqa: E402

SERIES = ('sparsity/sad_norm', 'sparsity/sad_total_norm',
          'sparsity/zero_ratio')


def read_scalars(run_dir: str) -> Dict[str, List[tuple]]:
    """``{key: [(step, value), ...]}`` of the sparsity scalars."""
    path = osp.join(run_dir, 'vis_data', 'scalars.json')
    if not osp.isfile(path):
        raise FileNotFoundError(f'no logged scalars at {path}')
    series = {key: [] for key in SERIES}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            for key in SERIES:
                if key in row:
                    series[key].append((row['step'], row[key]))
    if not any(series.values()):
        raise ValueError(f'{path} holds no sparsity/* scalars: was '
                         'an NMSparsityHook in the config?')
    return series


def plot(series: Dict[str, List[tuple]], out: str) -> None:
    fig, (sad_ax, zero_ax) = plt.subplots(1, 2, figsize=(10, 4))
    for key in SERIES[:2]:
        if series[key]:
            steps, values = zip(*series[key])
            sad_ax.plot(steps, values, label=key.split('/')[1])
    sad_ax.set(
        xlabel='iteration',
        ylabel='flipped mask share',
        title='Sparse Architecture Divergence')
    sad_ax.legend()
    if series[SERIES[2]]:
        steps, values = zip(*series[SERIES[2]])
        zero_ax.plot(steps, values)
    zero_ax.set(
        xlabel='iteration',
        ylabel='share of zero weights',
        title='Sparsity of the sparse layers')
    fig.tight_layout()
    fig.savefig(out, dpi=100)


@report_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('run_dir')
    parser.add_argument('--out', default='sparsity_report.png')
    args = parser.parse_args()

    layers = measure_sparsity(init_nm_model(args.config, args.checkpoint))
    series = read_scalars(args.run_dir)
    print(f'{"layer":<48}{"N:M":>6}{"weights":>12}{"zeros":>8}')
    for layer in layers:
        print(f'{layer.name:<48}{str(layer.pattern):>6}{layer.numel:>12}'
              f'{layer.zeros / layer.numel:>8.1%}')
    print(SparsitySummary(layers).line())
    plot(series, args.out)
    print(f'plot written to {args.out}')


if __name__ == '__main__':
    sys.exit(main())
