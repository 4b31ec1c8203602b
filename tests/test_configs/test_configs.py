"""Every config under configs/ loads, builds its model with the expected
sparse and dense layers, and trains one iteration on tiny generated data
with the optim wrapper it configures."""
import fnmatch
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import MODELS, init_default_scope

import mmnm
from mmnm.apis import config_sparsity
from mmnm.conversion import sparsify_model
from mmnm.layers import NMSparseMixin
from mmnm.ops import group_view
from mmnm.pattern import NMPattern

CONFIGS = osp.join(osp.dirname(osp.dirname(mmnm.__file__)), 'configs')
ALL = sorted(
    osp.relpath(path, CONFIGS)
    for path in glob.glob(osp.join(CONFIGS, '**', '*.py'), recursive=True))
SIZE = 64


def hook_sparsity(cfg: Config):
    return config_sparsity(cfg)


def expected_pattern(name: str):
    """The pattern a config's file name promises (None for dense)."""
    if 'dense' in name:
        return None
    for tag in ('2-4', '4-8', '1-4', '2-8', '1-16'):
        if f'_{tag}' in name:
            return NMPattern.parse(tag.replace('-', ':'))
    raise AssertionError(f'{name}: no pattern in the file name')


def det_batch(with_mask: bool, num_classes: int):
    from mmdet.testing import demo_mm_inputs
    return demo_mm_inputs(
        batch_size=1,
        image_shapes=(3, SIZE, SIZE),
        num_items=[2],
        num_classes=num_classes,
        with_mask=with_mask)


def seg_batch(num_classes: int, batch_size: int = 2):
    """Batch of 2: ASPP's image pooling trains BatchNorm on 1x1 maps."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(0)
    images, samples = [], []
    for _ in range(batch_size):
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, num_classes, (1, SIZE, SIZE), generator=gen))
        sample.set_metainfo(
            dict(
                img_shape=(SIZE, SIZE),
                ori_shape=(SIZE, SIZE),
                pad_shape=(SIZE, SIZE)))
        samples.append(sample)
        images.append(
            torch.randint(
                0, 256, (3, SIZE, SIZE), generator=gen, dtype=torch.uint8))
    return dict(inputs=images, data_samples=samples)


def cls_batch(num_classes: int, batch_size: int = 2):
    """Two images with their class labels."""
    from mmpretrain.structures import DataSample
    gen = torch.Generator().manual_seed(0)
    return dict(
        inputs=[
            torch.randint(
                0, 256, (3, SIZE, SIZE), generator=gen, dtype=torch.uint8)
            for _ in range(batch_size)
        ],
        data_samples=[
            DataSample().set_gt_label(int(label)) for label in torch.randint(
                0, num_classes, (batch_size, ), generator=gen)
        ])


def test_configs_found():
    assert 'faster_rcnn_r50_2-4.py' in ALL
    families = {osp.dirname(name) for name in ALL}
    assert {
        'faster_rcnn', 'mask_rcnn', 'segmentation', 'classification', 'demo'
    } <= families
    # the reference recipe's patterns, for both ResNets
    for depth in (18, 50):
        for tag in ('dense', '2-4', '4-8', '1-4', '2-8', '1-16'):
            assert f'classification/resnet{depth}_{tag}_8xb32-120e_in1k.py' \
                in ALL


@pytest.mark.parametrize('name', ALL)
def test_config_builds_and_trains_one_iteration(name):
    cfg = Config.fromfile(osp.join(CONFIGS, name))
    assert open(osp.join(CONFIGS, name)).readline().startswith('#'), \
        'the first lines say what the config trains'
    assert 'torchvision://' not in cfg.pretty_text
    assert 'http' not in str(cfg.model.get('pretrained'))
    pattern = expected_pattern(name)
    sparsity = hook_sparsity(cfg)
    assert (sparsity is None) == (pattern is None)

    # a backbone initialised from an N:M classifier names a local file that
    # a config of this repository trains (it is checked on training runs)
    init = (cfg.model.get('backbone') or {}).get('init_cfg') or {}
    if init.get('type') == 'Pretrained':
        assert init.checkpoint.startswith('work_dirs/') and \
            init.prefix == 'backbone.'
        classifier = init.checkpoint.split('/')[-2]
        assert any(
            osp.basename(other) == f'{classifier}.py' and Config.fromfile(
                osp.join(CONFIGS, other)).default_scope == 'mmpretrain'
            for other in ALL), init.checkpoint
        assert expected_pattern(classifier) == pattern
        cfg.model.backbone.init_cfg = None  # no trained classifier here
    init_default_scope(cfg.get('default_scope'))
    is_seg = cfg.default_scope == 'mmseg'
    is_cls = cfg.default_scope == 'mmpretrain'
    if is_seg:
        cfg.model.data_preprocessor.size = (SIZE, SIZE)
    if is_cls:  # as the Runner does: the top-level preprocessor
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    model.init_weights()
    if sparsity is not None:
        assert cfg.optim_wrapper.type == 'SRSTEOptimWrapper'
        report = sparsify_model(model, **sparsity)
        decisions = {layer.name: layer for layer in report.layers}
        backbone = [d for d in report.layers if d.name.startswith('backbone.')]
        assert backbone[0].shape[1] == 3 and backbone[0].pattern is None
        assert sum(d.pattern == pattern for d in backbone) > \
            len(backbone) // 2
        for excluded in sparsity['exclude']:
            matched = fnmatch.filter(decisions, excluded)
            assert matched, excluded
            assert all(decisions[n].pattern is None for n in matched)

    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    if is_seg:
        data = seg_batch(cfg.model.decode_head.num_classes)
    elif is_cls:
        data = cls_batch(cfg.model.head.num_classes)
    else:
        head = cfg.model.roi_head.bbox_head if 'roi_head' in cfg.model \
            else cfg.model.bbox_head
        data = det_batch(
            with_mask='mask' in name, num_classes=head.num_classes)
    model.train()
    log_vars = model.train_step(data, wrapper)
    assert torch.isfinite(log_vars['loss'])
    for layer in model.modules():
        if isinstance(layer, NMSparseMixin) and layer.weight.requires_grad:
            kept = group_view(layer.mask, layer.nm.m,
                              layer.nm.orientation).sum(2)
            assert bool((kept == layer.nm.n).all()), layer.nm_name


def _without_scope(node):
    if isinstance(node, dict):
        return {
            k: _without_scope(v)
            for k, v in node.items() if k != '_scope_'
        }
    if isinstance(node, (list, tuple)):
        return [_without_scope(v) for v in node]
    return node


@pytest.mark.parametrize('depth', [18, 50])
def test_resnet_classification_follows_the_reference_recipe(depth):
    """The SR-STE reference ImageNet recipe, on the stock mmpretrain
    model of that depth."""
    pytest.importorskip('mmpretrain')
    import mmpretrain
    for tag in ('dense', '2-4', '1-16'):
        cfg = Config.fromfile(
            osp.join(CONFIGS, 'classification',
                     f'resnet{depth}_{tag}_8xb32-120e_in1k.py'))
        stock = Config.fromfile(
            osp.join(
                osp.dirname(mmpretrain.__file__), '.mim', 'configs', 'resnet',
                f'resnet{depth}_8xb32_in1k.py'))
        assert _without_scope(cfg.model.to_dict()) == _without_scope(
            stock.model.to_dict())
        assert cfg.model.head.loss.type == 'CrossEntropyLoss'  # no smoothing
        optimizer = cfg.optim_wrapper.optimizer
        assert (optimizer.type, optimizer.lr, optimizer.momentum,
                optimizer.weight_decay) == ('SGD', 0.1, 0.9, 5e-5)
        assert cfg.train_dataloader.batch_size * 8 == 256
        assert cfg.train_cfg.max_epochs == 120
        warmup, cosine = cfg.param_scheduler
        assert (warmup.type, warmup.begin, warmup.end) == ('LinearLR', 0, 5)
        assert (cosine.type, cosine.begin, cosine.end, cosine.T_max,
                cosine.eta_min) == ('CosineAnnealingLR', 5, 120, 115, 0.0)
        if tag != 'dense':
            assert hook_sparsity(cfg)['exclude'] == ['head.fc']
