"""From a sparse classifier to a sparse detector: the demo classifier
(mmpretrain ResNet-18, 2:4, trained a few iterations with the real Runner)
initialises the backbone of the demo detector (mmdet Faster R-CNN R18-FPN,
2:4) through ``init_cfg=dict(type='Pretrained', ...)``. The detector's first
masks are the ones the classifier's checkpoint records; the layers the
classifier kept dense are reported; a checkpoint of another depth stops the
run naming the first mismatched key."""
import glob
import os.path as osp
import uuid

import pytest
import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner

import mmnm
from mmnm.apis import (convert_checkpoint_to_sparse24, export_nm_checkpoint,
                       redirect_data_root)
from mmnm.conversion import (check_pretrained_init, checkpoint_patterns,
                             unpack_mask)
from mmnm.layers import NMSparseMixin
from mmnm.pattern import NMPattern

REPO = osp.dirname(osp.dirname(mmnm.__file__))
DEMO = osp.join(REPO, 'configs', 'demo')
CLASSIFIER = osp.join(DEMO, 'resnet18_2-4_shapes-cls-64x64.py')
DETECTOR = osp.join(
    DEMO, 'faster-rcnn_r18_fpn_2-4_nm-cls-pretrained_shapes-64x64.py')
KEPT_DENSE = 'backbone.layer1.0.conv1'  # the classifier's extra exclusion


def short_run(config: str, work_dir, data_root: str, iters: int) -> Config:
    cfg = Config.fromfile(config)
    redirect_data_root(cfg, data_root)
    cfg.work_dir = str(work_dir)
    cfg.experiment_name = uuid.uuid4().hex
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = 1000  # no validation
    cfg.default_hooks.checkpoint.interval = iters
    cfg.train_dataloader.batch_size = 4
    cfg.param_scheduler = []
    return cfg


@pytest.fixture(scope='module')
def classifier_checkpoint(tmp_path_factory):
    from mmnm.datasets import generate_shapes_cls_dataset
    root = tmp_path_factory.mktemp('shapes_cls')
    generate_shapes_cls_dataset(str(root), splits={'train': 16, 'val': 8})
    work = tmp_path_factory.mktemp('classifier')
    cfg = short_run(CLASSIFIER, work, str(root), iters=2)
    cfg.default_hooks.nm_sparsity.sparsity.exclude.append(KEPT_DENSE)
    Runner.from_cfg(cfg).train()
    return str(work / 'iter_2.pth')


@pytest.fixture(scope='module')
def det_data_root(tmp_path_factory):
    from mmnm.datasets import generate_shapes_dataset
    root = tmp_path_factory.mktemp('shapes')
    generate_shapes_dataset(str(root), splits={'train': 8, 'val': 4})
    return str(root)


class FirstMasks(Hook):
    """The masks of every N:M layer when training starts: weights
    initialised, nothing trained yet."""

    def before_train(self, runner) -> None:
        self.masks = {
            name: module.mask_for(module.weight.detach()).clone()
            for name, module in runner.model.named_modules()
            if isinstance(module, NMSparseMixin)
        }
        self.weights = {
            name: module.weight.detach().clone()
            for name, module in runner.model.named_modules()
            if isinstance(module, NMSparseMixin)
        }


def detector_cfg(tmp_path, det_data_root, checkpoint) -> Config:
    cfg = short_run(DETECTOR, tmp_path, det_data_root, iters=1)
    cfg.model.backbone.init_cfg.checkpoint = checkpoint
    return cfg


def test_detector_starts_from_the_classifier_masks(tmp_path, det_data_root,
                                                   classifier_checkpoint):
    runner = Runner.from_cfg(
        detector_cfg(tmp_path, det_data_root, classifier_checkpoint))
    first = FirstMasks()
    runner.register_hook(first, priority='LOWEST')
    runner.train()  # a train step runs from the hand-off

    classifier = torch.load(classifier_checkpoint, weights_only=False)
    pruned = classifier['nm_sparsity']['pruned']['state_dict']
    backbone = [n for n in first.masks if n.startswith('backbone.')]
    assert len(backbone) == 14  # ResNet-18's first 3 stages, stem dense
    for name in backbone:
        if name == KEPT_DENSE:
            assert name not in pruned
            continue
        recorded = unpack_mask(pruned[name]['mask'], first.masks[name].shape)
        assert torch.equal(first.masks[name], recorded), name
        assert torch.equal(first.weights[name],
                           classifier['state_dict'][f'{name}.weight']), name
    # the detector's own layers (neck, heads) start from their init
    assert any(n.startswith('neck.') for n in first.masks)

    log = open(glob.glob(osp.join(runner.log_dir, '*.log'))[0]).read()
    assert 'model.backbone.init_cfg: ' in log
    assert "13 N:M layers keep the checkpoint's masks" in log
    assert '1 were dense in the checkpoint; their first masks come from ' \
        'the weights: layer1.0.conv1' in log
    assert 'checkpoint keys not used (parts the module does not have), ' \
        'e.g. backbone.layer4.' in log


def test_an_export_hands_off_as_the_training_checkpoint(
        tmp_path, classifier_checkpoint):
    export = str(tmp_path / 'classifier_nm.pth')
    # the shipped config would make the layer the run kept dense 2:4: the
    # export would prune weights that never trained N:M
    with pytest.raises(
            ValueError,
            match=r'makes 1 layers N:M that this run did not '
            r'train so: backbone.layer1.0.conv1 \(dense in the '
            r'checkpoint, 2:4 in the config\)'):
        export_nm_checkpoint(CLASSIFIER, classifier_checkpoint, export)
    with pytest.raises(ValueError, match='backbone.layer1.0.conv1 '):
        convert_checkpoint_to_sparse24(CLASSIFIER, classifier_checkpoint,
                                       export)
    assert not osp.exists(export)
    cfg = Config.fromfile(CLASSIFIER)  # the classifier as it was trained
    cfg.default_hooks.nm_sparsity.sparsity.exclude.append(KEPT_DENSE)
    export_nm_checkpoint(cfg, classifier_checkpoint, export)
    training = checkpoint_patterns(
        torch.load(classifier_checkpoint, weights_only=False))
    exported = checkpoint_patterns(torch.load(export, weights_only=False))
    assert exported == training
    assert training['backbone.layer2.0.conv1'] == NMPattern(2, 4, 'channel')
    assert KEPT_DENSE not in training
    assert checkpoint_patterns({'state_dict': {}}) is None


def resnet_checkpoint(tmp_path, depth: int) -> str:
    from mmpretrain.models import ResNet
    path = str(tmp_path / f'resnet{depth}.pth')
    state = ResNet(depth=depth).state_dict()
    torch.save({'state_dict': {
        f'backbone.{k}': v
        for k, v in state.items()
    }}, path)
    return path


def test_a_deeper_backbone_stops_the_run_naming_the_key(
        tmp_path, det_data_root):
    cfg = detector_cfg(tmp_path, det_data_root,
                       resnet_checkpoint(tmp_path, 50))
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError) as error:
        runner.train()
    message = str(error.value)
    # Bottleneck's 1x1 conv1 against BasicBlock's 3x3: the first key
    assert "'backbone.layer1.0.conv1.weight' is (64, 64, 1, 1) in the " \
        'checkpoint, (64, 64, 3, 3) in the model' in message
    assert 'resnet50.pth does not fit ResNet' in message
    assert runner.iter == 0


def test_more_blocks_missing_files_and_missing_keys_are_errors(tmp_path):
    from mmdet.models import ResNet

    from mmnm.conversion import sparsify_model
    model = torch.nn.Module()
    model.backbone = ResNet(
        depth=18,
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(2, ))
    sparsify_model(model, pattern='2:4')
    init = dict(type='Pretrained', prefix='backbone.')
    key = 'model.backbone.init_cfg'
    # ResNet-34: layer1 has 3 blocks, ResNet-18's 2: same shapes, deeper
    with pytest.raises(
            ValueError,
            match=r"'backbone.layer1.2.conv1.weight' is in "
            'the checkpoint, not in the model'):
        check_pretrained_init(
            model, 'backbone', key,
            dict(init, checkpoint=resnet_checkpoint(tmp_path, 34)))
    with pytest.raises(
            FileNotFoundError,
            match=r'model.backbone.init_cfg.checkpoint: no such '
            r"file .*nothing.pth'.*--cfg-options model.backbone"):
        check_pretrained_init(
            model, 'backbone', key,
            dict(init, checkpoint=str(tmp_path / 'nothing.pth')))
    # ResNet-18 without its stem: missing unless allowed
    path = str(tmp_path / 'no_stem.pth')
    state = {
        f'backbone.{k}': v
        for k, v in ResNet(depth=18).state_dict().items()
        if not k.startswith(('conv1.', 'bn1.'))
    }
    torch.save({'state_dict': state}, path)
    with pytest.raises(
            ValueError, match=r"'conv1.weight' is not in the checkpoint"):
        check_pretrained_init(model, 'backbone', key,
                              dict(init, checkpoint=path))
    lines = check_pretrained_init(
        model,
        'backbone',
        key,
        dict(init, checkpoint=path),
        missing_ok=['conv1.*', 'bn1.*'])
    assert 'no mmnm N:M record: a dense checkpoint' in lines[-1]
    with pytest.raises(
            ValueError, match="prefix: no key of .* starts with "
            "'neck.'"):
        check_pretrained_init(model, 'backbone', key,
                              dict(init, checkpoint=path, prefix='neck'))
