"""The tools' shared config handling: moving a config to another data root."""
import os.path as osp

from mmengine.config import Config

import mmnm
from mmnm.apis import check_data_roots, redirect_data_root

DEMO = osp.join(osp.dirname(osp.dirname(mmnm.__file__)), 'configs', 'demo')


def test_redirect_moves_loaders_and_coco_annotations(tmp_path):
    cfg = Config.fromfile(
        osp.join(DEMO, 'mask-rcnn_r18_fpn_2-4_shapes-64x64.py'))
    assert cfg.val_evaluator.ann_file.startswith(cfg.data_root)
    redirect_data_root(cfg, str(tmp_path))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert cfg[key].dataset.data_root == str(tmp_path)
    for key in ('val_evaluator', 'test_evaluator'):
        assert cfg[key].ann_file == osp.join(
            str(tmp_path), 'annotations', 'instances_val.json')
    check_data_roots(cfg)  # the new root exists: no error


def test_redirect_leaves_evaluators_without_annotation_files(tmp_path):
    cfg = Config.fromfile(osp.join(DEMO, 'fcn_r18-d8_2-4_shapes-64x64.py'))
    redirect_data_root(cfg, str(tmp_path))
    assert cfg.val_dataloader.dataset.data_root == str(tmp_path)
    assert 'ann_file' not in cfg.val_evaluator


def test_redirect_moves_every_evaluator_of_a_list(tmp_path):
    cfg = Config.fromfile(
        osp.join(DEMO, 'faster-rcnn_r18_fpn_2-4_shapes-64x64.py'))
    cfg.test_evaluator = [cfg.val_evaluator.copy(), dict(type='VOCMetric')]
    redirect_data_root(cfg, str(tmp_path))
    assert cfg.test_evaluator[0]['ann_file'].startswith(str(tmp_path))
    assert 'ann_file' not in cfg.test_evaluator[1]
