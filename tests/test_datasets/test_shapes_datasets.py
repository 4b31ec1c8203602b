"""The shapes data's datasets: ``ShapesCocoDataset`` in mmdet's,
``ShapesSegDataset`` in mmseg's and ``ShapesClsDataset`` in mmpretrain's
``DATASETS``, with the class names and palettes of
``mmnm/datasets/shapes.py`` and ``shapes_cls_data.py``, are where every demo
config gets them from; the metrics read them from the dataset. ``import
mmnm`` imports none of mmdet, mmseg and mmpretrain."""
import glob
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.evaluator import Evaluator
from mmengine.registry import init_default_scope
from mmengine.runner import Runner
from mmengine.structures import InstanceData, PixelData

import mmnm
from mmnm.datasets import (CLASSES, SEG_CLASSES, SEG_PALETTE,
                           generate_shapes_dataset, shapes_metainfo)

REPO = osp.dirname(osp.dirname(mmnm.__file__))
DEMO = osp.join(REPO, 'configs', 'demo')
CONFIGS = sorted(
    osp.basename(path) for path in glob.glob(osp.join(DEMO, '*.py'))
    if 'shapes-cls' not in path)
CLS_CONFIGS = sorted(
    osp.basename(path)
    for path in glob.glob(osp.join(DEMO, '*shapes-cls*.py')))
SPLITS = {'train': 6, 'val': 8}
DET_PALETTE = [tuple(p) for p in SEG_PALETTE[1:]]
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('shapes'))
    generate_shapes_dataset(root, splits=SPLITS)
    return root


def demo_config(name: str, data_root: str) -> Config:
    cfg = Config.fromfile(osp.join(DEMO, name))
    for key in LOADERS:
        cfg[key].dataset.data_root = data_root
    if 'ann_file' in cfg.val_evaluator:
        cfg.val_evaluator.ann_file = osp.join(data_root, 'annotations',
                                              'instances_val.json')
    init_default_scope(cfg.default_scope)
    return cfg


def test_shapes_metainfo():
    assert SEG_CLASSES == ('background', ) + CLASSES
    assert len(SEG_PALETTE) == len(SEG_CLASSES)
    assert shapes_metainfo('det') == dict(classes=CLASSES, palette=DET_PALETTE)
    assert shapes_metainfo('seg') == dict(
        classes=SEG_CLASSES, palette=SEG_PALETTE)
    shapes_metainfo('seg')['palette'][0][0] = 1  # a copy
    assert SEG_PALETTE[0] == [0, 0, 0]
    with pytest.raises(ValueError, match='ins'):
        shapes_metainfo('ins')


def test_registered_datasets_hold_the_shapes_metainfo():
    from mmdet.datasets import CocoDataset
    from mmdet.registry import DATASETS as MMDET_DATASETS
    from mmseg.datasets import BaseSegDataset
    from mmseg.registry import DATASETS as MMSEG_DATASETS

    from mmnm.datasets import ShapesCocoDataset, ShapesSegDataset
    assert MMDET_DATASETS.get('ShapesCocoDataset') is ShapesCocoDataset
    assert MMSEG_DATASETS.get('ShapesSegDataset') is ShapesSegDataset
    assert issubclass(ShapesCocoDataset, CocoDataset)
    assert issubclass(ShapesSegDataset, BaseSegDataset)
    assert ShapesCocoDataset.METAINFO == dict(
        classes=CLASSES, palette=DET_PALETTE)
    assert ShapesSegDataset.METAINFO == dict(
        classes=SEG_CLASSES, palette=SEG_PALETTE)


def test_import_mmnm_leaves_mmdet_and_mmseg_out():
    code = '\n'.join([
        'import sys',
        'import mmnm',
        "loaded = {'mmdet', 'mmseg', 'mmpretrain'} & set(sys.modules)",
        "assert not loaded, f'import mmnm imported {loaded}'",
        '# without mmdet and mmseg, mmnm.datasets still imports',
        'class NotInstalled:',
        '    def find_spec(self, name, path=None, target=None):',
        "        if name in ('mmdet', 'mmseg', 'mmpretrain'):",
        "            raise ModuleNotFoundError(f'No module named {name!r}',",
        '                                      name=name)',
        'sys.meta_path.insert(0, NotInstalled())',
        'import mmnm.datasets as datasets',
        "assert not hasattr(datasets, 'ShapesCocoDataset')",
        "assert not hasattr(datasets, 'ShapesSegDataset')",
        "assert not hasattr(datasets, 'ShapesClsDataset')",
        "assert 'ShapesCocoDataset' not in datasets.__all__",
        "assert datasets.shapes_metainfo('det')['classes'] == "
        'datasets.CLASSES',
    ])
    proc = subprocess.run([sys.executable, '-c', code],
                          cwd=REPO,
                          capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize('name', CONFIGS)
def test_demo_config_datasets_report_the_shapes_classes(name, data_root):
    text = open(osp.join(DEMO, name)).read()
    for class_name in CLASSES:  # nothing typed again
        assert repr(class_name) not in text, class_name
    cfg = demo_config(name, data_root)
    imports = cfg.custom_imports.imports
    assert 'mmnm.datasets' in imports, imports
    assert ('mmnm' in imports) == ('dense' not in name), imports
    assert cfg.custom_imports.allow_failed_imports is False

    is_seg = cfg.default_scope == 'mmseg'
    for key in LOADERS:
        dataset_cfg = cfg[key].dataset
        assert 'metainfo' not in dataset_cfg, key
        assert dataset_cfg.type == ('ShapesSegDataset'
                                    if is_seg else 'ShapesCocoDataset')
        # as the runner builds it
        dataset = Runner.build_dataloader(cfg[key]).dataset
        split = 'train' if key == 'train_dataloader' else 'val'
        assert len(dataset) == SPLITS[split], key
        if is_seg:
            assert dataset.metainfo['classes'] == SEG_CLASSES
            assert dataset.metainfo['palette'] == SEG_PALETTE
            assert dataset.metainfo['reduce_zero_label'] is False
            assert dataset.metainfo['label_map'] is None
            info = dataset.get_data_info(0)
            assert info['img_path'].endswith(f'images/{split}/00000.png')
            assert info['seg_map_path'].endswith(f'seg_maps/{split}/00000.png')
        else:
            assert dataset.metainfo['classes'] == CLASSES
            assert dataset.metainfo['palette'] == DET_PALETTE
            assert dataset.cat_ids == [1, 2, 3]


def test_det_metric_reads_the_classes_from_the_dataset(data_root):
    """The ground truth as the prediction: COCO bbox mAP 1 (CocoMetric maps
    the class names of the dataset's metainfo to the annotation file's
    category ids)."""
    cfg = demo_config('faster-rcnn_r18_fpn_dense_shapes-64x64.py', data_root)
    dataset = Runner.build_dataloader(cfg.val_dataloader).dataset
    evaluator = Evaluator(cfg.val_evaluator)
    evaluator.dataset_meta = dataset.metainfo  # as the ValLoop does
    assert evaluator.metrics[0].dataset_meta['classes'] == CLASSES
    for index in range(len(dataset)):
        sample = dataset[index]['data_samples']
        gt = sample.gt_instances
        sample.pred_instances = InstanceData(
            bboxes=gt.bboxes.tensor,
            scores=torch.ones(len(gt)),
            labels=gt.labels)
        evaluator.process([sample])
    metrics = evaluator.evaluate(len(dataset))
    assert metrics['coco/bbox_mAP'] == pytest.approx(1.0)


def test_seg_metric_reads_the_classes_from_the_dataset(data_root):
    """The ground truth as the prediction: mIoU 100 over the 4 classes of
    the dataset's metainfo."""
    cfg = demo_config('fcn_r18-d8_2-4_shapes-64x64.py', data_root)
    dataset = Runner.build_dataloader(cfg.val_dataloader).dataset
    evaluator = Evaluator(cfg.val_evaluator)
    evaluator.dataset_meta = dataset.metainfo
    metric = evaluator.metrics[0]
    assert metric.dataset_meta['classes'] == SEG_CLASSES
    for index in range(len(dataset)):
        sample = dataset[index]['data_samples']
        assert set(sample.gt_sem_seg.data.unique().tolist()) <= {0, 1, 2, 3}
        sample.pred_sem_seg = PixelData(data=sample.gt_sem_seg.data.clone())
        evaluator.process([sample])
    metrics = evaluator.evaluate(len(dataset))
    assert metrics['mIoU'] == pytest.approx(100.0)


def test_cls_data_is_balanced_deterministic_and_reused(tmp_path):
    from mmnm.datasets import CLS_CLASSES, generate_shapes_cls_dataset
    first, second = str(tmp_path / 'a'), str(tmp_path / 'b')
    splits = {'train': 16, 'val': 8}
    ann_files = generate_shapes_cls_dataset(first, splits=splits)
    generate_shapes_cls_dataset(second, splits=splits)
    lines = open(ann_files['train']).read().split('\n')[:-1]
    assert len(lines) == 16
    labels = [int(line.split()[1]) for line in lines]
    assert sorted(labels) == sorted(list(range(8)) * 2)  # balanced
    for line in lines:
        path, label = line.split()
        assert path.split('/')[0] == CLS_CLASSES[int(label)]
        a = open(osp.join(first, 'train', path), 'rb').read()
        assert a == open(osp.join(second, 'train', path), 'rb').read()
    # a complete split is not written again; another size is
    stamp = osp.getmtime(ann_files['val'])
    generate_shapes_cls_dataset(first, splits=splits)
    assert osp.getmtime(ann_files['val']) == stamp
    generate_shapes_cls_dataset(first, splits={'train': 16, 'val': 16})
    assert len(open(ann_files['val']).readlines()) == 16


@pytest.mark.parametrize('name', CLS_CONFIGS)
def test_cls_demo_configs_read_the_classes_from_the_dataset(name, tmp_path):
    from mmpretrain.registry import DATASETS as MMPRETRAIN_DATASETS

    from mmnm.datasets import (CLS_CLASSES, ShapesClsDataset,
                               generate_shapes_cls_dataset)
    assert MMPRETRAIN_DATASETS.get('ShapesClsDataset') is ShapesClsDataset
    root = str(tmp_path)
    generate_shapes_cls_dataset(root, splits={'train': 16, 'val': 8})
    cfg = Config.fromfile(osp.join(DEMO, name))
    for class_name in CLS_CLASSES:  # nothing typed again
        assert repr(class_name) not in open(osp.join(DEMO, name)).read()
    assert cfg.model.head.num_classes == len(CLS_CLASSES)
    init_default_scope(cfg.default_scope)
    for key in LOADERS:
        cfg[key].dataset.data_root = root
        dataset = Runner.build_dataloader(cfg[key]).dataset
        assert dataset.metainfo['classes'] == CLS_CLASSES
        assert len(dataset) == (16 if key == 'train_dataloader' else 8)
        info = dataset.get_data_info(1)
        assert info['gt_label'] == 1
        assert info['img_path'].endswith(f'{CLS_CLASSES[1]}/00001.png')
