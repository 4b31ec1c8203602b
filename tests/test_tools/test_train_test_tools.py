"""tools/train.py, tools/test.py and tools/dist_train.sh on the demo config:
train, resume, evaluate, and train with two gloo processes on CPU."""
import glob
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch

import mmnm
from mmnm.engine.optimizers import enable_amp

REPO = osp.dirname(osp.dirname(mmnm.__file__))
CONFIG = osp.join(REPO, 'configs', 'demo', 'fcn_r18-d8_2-4_shapes-64x64.py')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    from mmnm.datasets import generate_shapes_dataset
    root = tmp_path_factory.mktemp('shapes')
    generate_shapes_dataset(str(root), splits={'train': 8, 'val': 4})
    return str(root)


def small(data_root: str, iters: int) -> list:
    """--cfg-options for a few-iteration run on the small data."""
    options = [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1', 'custom_hooks.0.interval=1'
    ]
    for loader in ('train', 'val', 'test'):
        options += [
            f'{loader}_dataloader.dataset.data_root={data_root}',
            f'{loader}_dataloader.batch_size=2'
        ]
    return ['--cfg-options'] + options


def run(args: list, **env) -> str:
    proc = subprocess.run(
        args,
        cwd=REPO,
        env=dict(os.environ, OMP_NUM_THREADS='1', **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:]
    return proc.stdout


def test_train_resume_test(tmp_path, data_root):
    work = str(tmp_path / 'work')
    train = [sys.executable, 'tools/train.py', CONFIG, '--work-dir', work]
    out = run(train + small(data_root, 2))
    assert 'N:M sparsity of the model' in out and 'sparsity/sad' in out
    assert osp.isfile(osp.join(work, 'iter_2.pth'))

    out = run(train + ['--resume'] + small(data_root, 3))
    assert 'resumed' in out.lower() and 'Iter(train) [3/3]' in out
    checkpoint = torch.load(osp.join(work, 'iter_3.pth'))
    assert checkpoint['meta']['iter'] == 3 and 'nm_sparsity' in checkpoint

    out = run([sys.executable, 'tools/test.py', CONFIG,
               osp.join(work, 'iter_3.pth'), '--work-dir', work] +
              small(data_root, 3))
    assert 'mIoU' in out and 'N:M sparsity of the model' in out

    # the sparsity report: per-layer table and a plot from the logged SAD
    run_dir = osp.dirname(osp.dirname(
        glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))[0]))
    png = osp.join(work, 'report.png')
    out = run([sys.executable, 'tools/analysis/sparsity_report.py', CONFIG,
               osp.join(work, 'iter_3.pth'), run_dir, '--out', png])
    assert 'backbone.layer1.0.conv1' in out and '50.0%' in out
    assert open(png, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


def test_test_tool_names_a_missing_checkpoint(tmp_path):
    proc = subprocess.run(
        [sys.executable, 'tools/test.py', CONFIG, str(tmp_path / 'no.pth')],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert 'checkpoint not found' in proc.stderr and 'no.pth' in proc.stderr


def test_missing_dataset_path_is_named(tmp_path):
    missing = str(tmp_path / 'no_data')
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', CONFIG, '--work-dir',
         str(tmp_path), '--cfg-options',
         f'train_dataloader.dataset.data_root={missing}'],
        cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert 'train_dataloader.dataset.data_root' in proc.stderr
    assert missing in proc.stderr


def test_dist_train_two_gloo_processes(tmp_path, data_root):
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    work = str(tmp_path / 'dist')
    out = run(['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', work]
              + small(data_root, 2),
              PYTHON=sys.executable, PORT=str(port))
    assert 'Distributed training: True' in out
    assert osp.isfile(osp.join(work, 'iter_2.pth'))


@pytest.mark.parametrize('kind,amp_kind', [
    ('SRSTEOptimWrapper', 'AmpSRSTEOptimWrapper'),
    ('OptimWrapper', 'AmpOptimWrapper'),
])
def test_enable_amp_maps_wrapper_types(kind, amp_kind):
    cfg = dict(type=kind, lambda_w=1e-4, optimizer=dict(type='SGD', lr=0.1))
    assert enable_amp(cfg)['type'] == amp_kind
    assert cfg['loss_scale'] == 'dynamic' and cfg['lambda_w'] == 1e-4
    with pytest.raises(ValueError, match='ZeroRedundancyOptimizer'):
        enable_amp(dict(type='ZeroRedundancyOptimizer'))
