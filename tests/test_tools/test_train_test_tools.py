"""tools/train.py, tools/test.py, the export and report tools and
tools/dist_train.sh on the demo configs: train, resume, evaluate (mIoU, COCO
bbox and segm), export into the stock dense model, and train with two gloo
processes on CPU."""
import glob
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope

import mmnm
from mmnm.conversion import decode_nm_checkpoint
from mmnm.engine.optimizers import enable_amp

REPO = osp.dirname(osp.dirname(mmnm.__file__))
TESTS = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(REPO, 'configs', 'demo', 'fcn_r18-d8_2-4_shapes-64x64.py')
MASK_RCNN = osp.join(REPO, 'configs', 'demo',
                     'mask-rcnn_r18_fpn_2-4_shapes-64x64.py')
CLASSIFIER = osp.join(REPO, 'configs', 'demo',
                      'resnet18_2-4_shapes-cls-64x64.py')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    from mmnm.datasets import generate_shapes_dataset
    root = tmp_path_factory.mktemp('shapes')
    generate_shapes_dataset(str(root), splits={'train': 8, 'val': 4})
    return str(root)


@pytest.fixture(scope='module')
def cls_data_root(tmp_path_factory):
    from mmnm.datasets import generate_shapes_cls_dataset
    root = tmp_path_factory.mktemp('shapes_cls')
    generate_shapes_cls_dataset(str(root), splits={'train': 8, 'val': 8})
    return str(root)


def small(data_root: str, iters: int, config: str = CONFIG) -> list:
    """--cfg-options for a few-iteration run of ``config`` on the small
    data."""
    options = [
        f'train_cfg.max_iters={iters}', f'train_cfg.val_interval={iters}',
        'default_hooks.checkpoint.interval=1',
        'default_hooks.logger.interval=1',
        'default_hooks.nm_sparsity.interval=1'
    ]
    for loader in ('train', 'val', 'test'):
        options += [
            f'{loader}_dataloader.dataset.data_root={data_root}',
            f'{loader}_dataloader.batch_size=2'
        ]
    if 'rcnn' in config:  # the COCO metric reads the annotation file
        ann_file = osp.join(data_root, 'annotations', 'instances_val.json')
        options += [
            f'val_evaluator.ann_file={ann_file}',
            f'test_evaluator.ann_file={ann_file}'
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


def group_nonzeros(weight: torch.Tensor, m: int = 4) -> torch.Tensor:
    """Non-zeros per group of m input channels at each (k, r, s)."""
    out, cin = weight.shape[:2]
    return (weight.movedim(1, -1).reshape(-1, cin // m, m) != 0).sum(-1)


@pytest.mark.parametrize(
    'config,metric', [
        (CONFIG, 'mIoU'),
        (MASK_RCNN, 'coco/segm_mAP'),
        (CLASSIFIER, 'accuracy/top1'),
    ],
    ids=['fcn', 'mask-rcnn', 'resnet18-cls'])
def test_train_resume_test_export(request, tmp_path, config, metric):
    data_root = request.getfixturevalue('cls_data_root' if config ==
                                        CLASSIFIER else 'data_root')
    work = str(tmp_path / 'work')
    train = [sys.executable, 'tools/train.py', config, '--work-dir', work]
    out = run(train + small(data_root, 2, config) +
              [f'default_hooks.checkpoint.save_best={metric}'])
    assert 'N:M sparsity of the model' in out and 'sparsity/sad' in out
    assert osp.isfile(osp.join(work, 'iter_2.pth'))
    # every checkpoint the run writes holds exactly N:M weights: the best
    best = glob.glob(osp.join(work, 'best_*.pth'))
    assert len(best) == 1, os.listdir(work)
    state = torch.load(best[0])['state_dict']
    assert bool((group_nonzeros(state['backbone.layer1.0.conv1.weight'])
                 <= 2).all())

    # the stock inference API, in a process that never builds a runner
    images = sorted(
        glob.glob(osp.join(data_root, 'images', 'val', '*')) +
        glob.glob(osp.join(data_root, 'val', '*', '*.png')))
    out = run([
        sys.executable,
        osp.join(TESTS, 'stock_api_check.py'), config,
        osp.join(work, 'iter_2.pth')
    ] + images[:2])
    assert out.strip().endswith('OK')

    out = run(train + ['--resume'] + small(data_root, 3, config))
    assert 'resumed' in out.lower() and 'Iter(train) [3/3]' in out
    checkpoint = torch.load(osp.join(work, 'iter_3.pth'))
    assert checkpoint['meta']['iter'] == 3 and 'nm_sparsity' in checkpoint

    out = run([
        sys.executable, 'tools/test.py', config,
        osp.join(work, 'iter_3.pth'), '--work-dir', work
    ] + small(data_root, 3, config))
    assert f'{metric}:' in out and 'N:M sparsity of the model' in out

    # export, then load strictly into the stock dense model of the config
    exported = osp.join(work, 'exported.pth')
    out = run([
        sys.executable, 'tools/model_converters/export_nm.py', config,
        osp.join(work, 'iter_3.pth'), exported
    ])
    assert 'verified N:M (2:4)' in out
    export = torch.load(exported)
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    dense = MODELS.build(cfg.model)
    dense.load_state_dict(export['state_dict'], strict=True)
    sparse_keys = set(export['meta']['nm_patterns'])
    assert 'backbone.layer1.0.conv1.weight' in sparse_keys
    for key, value in dense.state_dict().items():
        if key in sparse_keys:
            assert bool((group_nonzeros(value) == 2).all()), key
        else:  # everything else exactly as trained
            assert torch.equal(value, checkpoint['state_dict'][key]), key

    # the sparsity report: per-layer table and a plot from the logged SAD
    run_dir = osp.dirname(
        osp.dirname(
            glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json'))[0]))
    png = osp.join(work, 'report.png')
    out = run([
        sys.executable, 'tools/analysis/sparsity_report.py', config,
        osp.join(work, 'iter_3.pth'), run_dir, '--out', png
    ])
    assert 'backbone.layer1.0.conv1' in out and '50.0%' in out
    assert open(png, 'rb').read(8) == b'\x89PNG\r\n\x1a\n'


def test_test_tool_names_a_missing_checkpoint(tmp_path):
    proc = subprocess.run(
        [sys.executable, 'tools/test.py', CONFIG,
         str(tmp_path / 'no.pth')],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300)
    assert proc.returncode != 0
    assert 'checkpoint not found' in proc.stderr and 'no.pth' in proc.stderr


def test_missing_dataset_path_is_named(tmp_path):
    missing = str(tmp_path / 'no_data')
    proc = subprocess.run([
        sys.executable, 'tools/train.py', CONFIG, '--work-dir',
        str(tmp_path), '--cfg-options',
        f'train_dataloader.dataset.data_root={missing}'
    ],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode != 0
    assert 'train_dataloader.dataset.data_root' in proc.stderr
    assert missing in proc.stderr


def test_dist_train_two_gloo_processes_hold_identical_masks(
        tmp_path, data_root):
    # the demo config plus a test hook that saves each rank's masks (lists
    # replace the base's: its imports, mmnm.datasets included, kept)
    base = Config.fromfile(CONFIG)
    hooks = [hook.to_dict() for hook in base.get('custom_hooks', [])]
    imports = base.custom_imports.imports + ['rank_masks_hook']
    config = tmp_path / 'dist_config.py'
    config.write_text(
        f'_base_ = {CONFIG!r}\n'
        f'custom_imports = dict(imports={imports!r}, '
        'allow_failed_imports=False)\n'
        f"custom_hooks = {hooks + [dict(type='SaveRankMasksHook')]!r}\n")
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
    work = tmp_path / 'dist'
    out = run(
        [
            'bash', 'tools/dist_train.sh',
            str(config), '2', '--work-dir',
            str(work)
        ] + small(data_root, 2),
        PYTHON=sys.executable,
        PORT=str(port),
        PYTHONPATH=os.pathsep.join(
            filter(None, [TESTS, os.environ.get('PYTHONPATH')])))
    assert 'Distributed training: True' in out

    rank0, rank1 = (torch.load(work / f'masks_rank{r}.pth') for r in (0, 1))
    # the masks each training forward used are the same on both ranks
    assert len(rank0['per_iter']) == len(rank1['per_iter']) == 2
    for step, (masks0,
               masks1) in enumerate(zip(rank0['per_iter'], rank1['per_iter'])):
        assert len(masks0) == 25 and set(masks0) == set(masks1)
        for name, mask in masks0.items():
            assert torch.equal(mask, masks1[name]), (step, name)
    # and the final ones are the 2:4 masks of the saved weights: the 2
    # largest |w| of each group of 4 input channels
    checkpoint = torch.load(work / 'iter_2.pth')
    decode_nm_checkpoint(checkpoint, 'iter_2.pth')  # the dense weights
    state = checkpoint['state_dict']
    for name, mask in rank0['final'].items():
        assert torch.equal(mask, rank1['final'][name]), name
        weight = state[f'{name}.weight']
        groups = weight.movedim(1, -1).reshape(-1, 4).abs()
        expected = torch.zeros_like(groups).scatter_(
            1,
            groups.topk(2, dim=1).indices, 1)
        got = mask.movedim(1, -1).reshape(-1, 4).to(expected.dtype)
        assert torch.equal(got, expected), name


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
