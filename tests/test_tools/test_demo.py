"""tools/demo.py, the main job, end to end in a few iterations: generate the
data, train Mask R-CNN 2:4, evaluate, export, evaluate the export in the
stock dense model, and convert, save and evaluate the 2:4 inference model."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch

import mmnm

REPO = osp.dirname(osp.dirname(mmnm.__file__))


def run_demo(task: str, data_root, work, iters: int, batch: int) -> str:
    """The demo's result block, after a run of ``iters`` iterations."""
    proc = subprocess.run([
        sys.executable, 'tools/demo.py', '--task', task, '--data-root',
        str(data_root), '--work-dir',
        str(work), '--cfg-options', f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={iters}',
        f'train_dataloader.batch_size={batch}'
    ],
                          cwd=REPO,
                          env=dict(os.environ, OMP_NUM_THREADS='1'),
                          capture_output=True,
                          text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout[proc.stdout.index('=== mmnm demo result ==='):]


def test_demo_trains_evaluates_exports_and_reevaluates(tmp_path):
    work = tmp_path / 'work'
    result = run_demo('ins', tmp_path / 'shapes', work, iters=2, batch=2)

    trained = re.search(r'^trained model: +(.*)$', result, re.M).group(1)
    stock = re.search(r'^training checkpoint in the stock dense model: +(.*)$',
                      result, re.M).group(1)
    assert 'coco/bbox_mAP:' in trained and 'coco/segm_mAP:' in trained
    # the stock dense model holding the training checkpoint scores exactly
    # the same, and the export holds the very same weights
    assert stock == trained
    assert 'N:M verified, the same weights as the training checkpoint' in \
        result
    assert 'sparse layers: 25 (2:4), verified N:M in every group' in result
    # the compressed 2:4 inference model was saved, reloaded and evaluated
    deployed = re.search(r'^2:4 inference model: +(coco/.*)$', result,
                         re.M).group(1)
    assert 'coco/bbox_mAP:' in deployed and 'coco/segm_mAP:' in deployed
    assert (
        work / 'mask-rcnn_r18_fpn_2-4_shapes-64x64_sparse24_fp16.pth'
    ).stat().st_size < (
        work / 'mask-rcnn_r18_fpn_2-4_shapes-64x64_nm.pth').stat().st_size / 2

    export = torch.load(work / 'mask-rcnn_r18_fpn_2-4_shapes-64x64_nm.pth')
    assert set(export) == {'meta', 'state_dict'}
    for key in export['meta']['nm_patterns']:
        weight = export['state_dict'][key]
        groups = weight.movedim(1, -1).reshape(-1, 4)
        assert bool(((groups != 0).sum(1) == 2).all()), key


def test_cls_demo_top1_is_the_same_in_every_model(tmp_path):
    """The classification demo (mmpretrain ResNet-18 2:4) a few iterations:
    mmpretrain's Accuracy of the trained model, of the training checkpoint
    and of the export in the stock dense mmpretrain model, and of the 2:4
    inference model."""
    from mmnm.apis import evaluate_checkpoint, load_config
    work = tmp_path / 'work'
    data_root = tmp_path / 'shapes_cls'
    result = run_demo('cls', data_root, work, iters=4, batch=8)

    def top1(line: str) -> float:
        match = re.search(rf'^{line}: +accuracy/top1: ([\d.]+)$', result, re.M)
        return float(match.group(1))

    trained = top1('trained model')
    assert 0 <= trained <= 100
    assert top1('training checkpoint in the stock dense model') == trained
    assert top1('2:4 inference model') == trained
    assert 'sparse layers: 19 (2:4), verified N:M in every group' in result
    assert 'the same weights as the training checkpoint' in result
    # 800 validation images of 8 balanced classes (generate_shapes_cls_dataset)
    assert len(open(data_root / 'meta' / 'val.txt').readlines()) == 800

    # the export, in the stock dense model (no NMSparsityHook), as
    # tools/test.py of mmpretrain would run it
    config = osp.join(REPO, 'configs', 'demo',
                      'resnet18_2-4_shapes-cls-64x64.py')
    cfg = load_config(config)
    for loader in ('val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(data_root)
    cfg.work_dir = str(tmp_path / 'stock')
    export = work / 'resnet18_2-4_shapes-cls-64x64_nm.pth'
    metrics = evaluate_checkpoint(cfg, str(export), stock_model=True)
    assert metrics['accuracy/top1'] == pytest.approx(trained, abs=1e-6)
