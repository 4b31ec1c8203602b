"""sparsify_model on real mmdet/mmseg models built from the stock configs
shipped in their wheels, and NMSparsityHook driven by mmseg's own
tools/train.py and tools/test.py through ``custom_imports`` alone.

No network: every config drops pretrained weights."""
import copy
import glob
import os
import os.path as osp
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from mmnm.conversion import sparsify_model
from mmnm.layers import NMSparseMixin, SparseConv, SparseLinear
from mmnm.pattern import NMPattern

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CFG = osp.join(REPO, 'configs', 'demo', 'fcn_r18-d8_2-4_shapes-64x64.py')

mmdet = pytest.importorskip('mmdet')
mmseg = pytest.importorskip('mmseg')

FRCNN_EXCLUDE = ['roi_head.bbox_head.fc_cls', 'roi_head.bbox_head.fc_reg']

#: whole models run faster on one intra-op thread on a busy 2-core machine
pytestmark = pytest.mark.usefixtures('one_thread')


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def load_cfg(tmp_dir, name: str, body: str):
    from mmengine.config import Config
    path = osp.join(str(tmp_dir), f'{name}.py')
    with open(path, 'w') as f:
        f.write(textwrap.dedent(body))
    return Config.fromfile(path)


def expected_sparse(model: nn.Module, exclude=(), m: int = 4):
    """Independent eligibility rule for channel-orientation N:M: exactly
    nn.Conv2d/nn.Linear, ungrouped, input channels divisible by M, not
    excluded."""
    names = set()
    for name, mod in model.named_modules():
        if name in exclude or type(mod) not in (nn.Conv2d, nn.Linear):
            continue
        if getattr(mod, 'groups', 1) != 1:
            continue
        if mod.weight.shape[1] % m:
            continue
        names.add(name)
    return names


def weighted_names(model: nn.Module):
    return {
        name
        for name, mod in model.named_modules()
        if isinstance(mod, (nn.modules.conv._ConvNd, nn.Linear))
    }


def assert_exact_nm(layer: NMSparseMixin) -> None:
    """Exactly N True per group of M consecutive input channels."""
    assert layer.mask is not None, layer.nm_name
    mask = layer.mask
    assert mask.shape == layer.weight.shape
    n, m = layer.nm.n, layer.nm.m
    groups = mask.unflatten(1, (mask.shape[1] // m, m)).sum(2)
    assert bool((groups == n).all()), layer.nm_name


def check_report(model, report, expected, dense_notes):
    sparse = {
        name
        for name, mod in model.named_modules()
        if isinstance(mod, NMSparseMixin)
    }
    assert sparse == expected
    assert {layer.name for layer in report.sparse_layers} == expected
    for name in expected:
        mod = model.get_submodule(name)
        assert type(mod) in (SparseConv, SparseLinear), name
        assert mod.nm == NMPattern(2, 4), name
        assert mod.nm_name == name
    by_name = {layer.name: layer for layer in report.layers}
    for name, note in dense_notes.items():
        assert by_name[name].pattern is None, name
        assert note in by_name[name].note, (name, by_name[name].note)
        assert not isinstance(model.get_submodule(name), NMSparseMixin)


# --------------------------------------------------------------------------
# Faster R-CNN R50-FPN (mmdet)
# --------------------------------------------------------------------------
@pytest.fixture(scope='module')
def frcnn(tmp_path_factory):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = load_cfg(
        tmp_path_factory.mktemp('frcnn'), 'frcnn', """\
        _base_ = 'mmdet::faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py'
        model = dict(backbone=dict(init_cfg=None))
        """)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    names_before = weighted_names(model)
    expected = expected_sparse(model, FRCNN_EXCLUDE)
    dense_state = {k: v.clone() for k, v in model.state_dict().items()}
    params_before = dict(model.named_parameters())
    report = sparsify_model(model, '2:4', exclude=FRCNN_EXCLUDE)
    return dict(
        cfg=cfg,
        model=model,
        report=report,
        expected=expected,
        names_before=names_before,
        dense_state=dense_state,
        params_before=params_before)


def test_frcnn_layer_decisions(frcnn):
    model, report, expected = \
        frcnn['model'], frcnn['report'], frcnn['expected']
    # the rule above, spelled out for the layers the brief names
    listed = {
        'rpn_head.rpn_conv', 'rpn_head.rpn_cls', 'rpn_head.rpn_reg',
        'roi_head.bbox_head.shared_fcs.0', 'roi_head.bbox_head.shared_fcs.1'
    }
    listed |= {f'neck.lateral_convs.{i}.conv' for i in range(4)}
    listed |= {f'neck.fpn_convs.{i}.conv' for i in range(4)}
    backbone = {
        name
        for name in frcnn['names_before']
        if name.startswith('backbone.') and name != 'backbone.conv1'
    }
    assert len(backbone) == 52  # 16 bottlenecks x 3 + 4 downsample convs
    assert expected == listed | backbone
    check_report(
        model, report, expected, {
            'backbone.conv1': '3 not divisible',
            'roi_head.bbox_head.fc_cls':
            "excluded by 'roi_head.bbox_head.fc_cls'",
            'roi_head.bbox_head.fc_reg':
            "excluded by 'roi_head.bbox_head.fc_reg'",
        })
    assert {layer.name for layer in report.layers} == frcnn['names_before']
    assert isinstance(model.roi_head.bbox_head.shared_fcs[0], SparseLinear)
    assert isinstance(model.rpn_head.rpn_cls, SparseConv)
    table = report.table()
    assert f'{len(expected)}/{len(frcnn["names_before"])} weighted' \
        in table
    for name in frcnn['names_before']:
        assert name in table


def test_frcnn_parameters_and_state_dict(frcnn):
    model = frcnn['model']
    dense_state = frcnn['dense_state']
    # parameters shared, not copied; names unchanged
    after = dict(model.named_parameters())
    assert after.keys() == frcnn['params_before'].keys()
    assert all(after[k] is v for k, v in frcnn['params_before'].items())
    assert list(model.state_dict()) == list(dense_state)
    # a dense Faster R-CNN checkpoint loads strict into the sparse model
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    perturbed = {
        k: v + 1 if v.is_floating_point() else v
        for k, v in dense_state.items()
    }
    result = model.load_state_dict(perturbed, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    torch.testing.assert_close(model.rpn_head.rpn_conv.weight,
                               perturbed['rpn_head.rpn_conv.weight'])
    assert model.rpn_head.rpn_conv.weight is \
        frcnn['params_before']['rpn_head.rpn_conv.weight']
    model.load_state_dict(saved, strict=True)


def test_frcnn_sparse_state_dict_loads_into_dense_model(frcnn):
    from mmdet.registry import MODELS
    cfg = copy.deepcopy(frcnn['cfg'].model)
    dense = MODELS.build(cfg)
    dense.load_state_dict(frcnn['model'].state_dict(), strict=True)
    assert not any(isinstance(m, NMSparseMixin) for m in dense.modules())


def test_frcnn_train_step(frcnn):
    from mmdet.testing import demo_mm_inputs
    model = frcnn['model']
    model.train()
    packed = demo_mm_inputs(
        batch_size=1, image_shapes=(3, 64, 64), num_items=[2], num_classes=80)
    data = model.data_preprocessor(packed, True)
    losses = model(**data, mode='loss')
    assert {'loss_rpn_cls', 'loss_rpn_bbox', 'loss_cls', 'loss_bbox'} <= \
        set(losses)
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    layers = [mod for mod in model.modules() if isinstance(mod, NMSparseMixin)]
    assert len(layers) == len(frcnn['expected'])
    trainable = 0
    for layer in layers:
        assert_exact_nm(layer)
        # frozen_stages=1: the stem and layer1 do not train
        frozen = layer.nm_name.startswith('backbone.layer1.')
        assert layer.weight.requires_grad is not frozen, layer.nm_name
        if not frozen:
            assert layer.weight.grad is not None, layer.nm_name
            assert layer.weight.grad.abs().sum() > 0, layer.nm_name
            trainable += 1
    assert trainable == len(layers) - 10  # 3 bottlenecks x 3 + downsample
    # the excluded classifier got gradients as a plain dense layer
    assert model.roi_head.bbox_head.fc_cls.weight.grad is not None
    model.zero_grad(set_to_none=True)


# --------------------------------------------------------------------------
# FCN R18-D8 and DeepLabV3+ R18 (mmseg)
# --------------------------------------------------------------------------
SEG_CONFIGS = {
    'fcn':
    'mmseg::fcn/fcn_r18-d8_4xb2-80k_cityscapes-512x1024.py',
    'deeplabv3plus':
    'mmseg::deeplabv3plus/'
    'deeplabv3plus_r18-d8_4xb2-80k_cityscapes-512x1024.py',
}


def build_seg(tmp_dir, kind: str):
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    cfg = load_cfg(
        tmp_dir, kind, f"""\
        _base_ = '{SEG_CONFIGS[kind]}'
        norm_cfg = dict(type='BN', requires_grad=True)
        model = dict(
            pretrained=None,
            data_preprocessor=dict(size=(64, 64)),
            backbone=dict(norm_cfg=norm_cfg, init_cfg=None),
            decode_head=dict(num_classes=4, norm_cfg=norm_cfg),
            auxiliary_head=dict(num_classes=4, norm_cfg=norm_cfg))
        """)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    assert not any('Sync' in type(m).__name__ for m in model.modules())
    return model


def seg_batch(batch_size=2, size=64, num_classes=4):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for _ in range(batch_size):
        inputs.append(
            torch.randint(
                0, 256, (3, size, size), generator=gen, dtype=torch.uint8))
        sample = SegDataSample()
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, num_classes, (1, size, size), generator=gen))
        sample.set_metainfo(
            dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                pad_shape=(size, size)))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def seg_train_step(model):
    model.train()
    data = model.data_preprocessor(seg_batch(), True)
    losses = model(**data, mode='loss')
    assert {'decode.loss_ce', 'aux.loss_ce'} <= set(losses)
    loss, _ = model.parse_losses(losses)
    assert torch.isfinite(loss)
    loss.backward()
    for layer in model.modules():
        if isinstance(layer, NMSparseMixin):
            assert_exact_nm(layer)
            assert layer.weight.grad is not None, layer.nm_name


@pytest.mark.parametrize('kind', ['fcn', 'deeplabv3plus'])
def test_seg_model_sparsify_and_train_step(tmp_path, kind):
    model = build_seg(tmp_path, kind)
    names = weighted_names(model)
    expected = expected_sparse(model)
    keys = list(model.state_dict())
    report = sparsify_model(model, '2:4')
    assert {layer.name for layer in report.layers} == names
    dense_notes = {'backbone.stem.0': '3 not divisible'}
    if kind == 'deeplabv3plus':
        depthwise = {
            name
            for name in names if name.endswith('depthwise_conv.conv')
        }
        # 3 ASPP branches with dilation > 1 and 2 separable bottlenecks
        assert len(depthwise) == 5
        for name in depthwise:
            assert model.get_submodule(name).groups > 1
            dense_notes[name] = 'grouped'
        pointwise = {n.replace('depthwise', 'pointwise') for n in depthwise}
        assert pointwise <= expected
        assert 'decode_head.c1_bottleneck.conv' in expected
    check_report(model, report, expected, dense_notes)
    assert 'decode_head.conv_seg' in expected
    assert 'auxiliary_head.conv_seg' in expected
    assert isinstance(model.decode_head.conv_seg, SparseConv)
    assert list(model.state_dict()) == keys
    seg_train_step(model)


def test_seg_conv_seg_excluded(tmp_path):
    model = build_seg(tmp_path, 'fcn')
    exclude = ['decode_head.conv_seg', 'auxiliary_head.conv_seg']
    expected = expected_sparse(model, exclude)
    report = sparsify_model(model, '2:4', exclude=exclude)
    check_report(model, report, expected,
                 {name: f'excluded by {name!r}'
                  for name in exclude})
    assert type(model.decode_head.conv_seg) is nn.Conv2d


# --------------------------------------------------------------------------
# NMSparsityHook through mmseg's stock tools/train.py and tools/test.py
# --------------------------------------------------------------------------
def mmseg_tool(name: str) -> str:
    path = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', name)
    if not osp.isfile(path):
        pytest.skip(f'mmseg wheel ships no tools/{name}')
    return path


def run_tool(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1')
    env.pop('RANK', None)
    env.pop('WORLD_SIZE', None)
    return subprocess.run(
        [sys.executable] + args,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300)


def data_root_options(data_root):
    return [
        f'{loader}.dataset.data_root={data_root}'
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    from mmnm.datasets import generate_shapes_dataset
    root = tmp_path_factory.mktemp('stock_tools')
    data_root = str(root / 'data')
    generate_shapes_dataset(data_root, splits={'train': 4, 'val': 2})
    work_dir = str(root / 'work_dir')
    proc = run_tool(
        [
            mmseg_tool('train.py'), DEMO_CFG, '--work-dir', work_dir,
            '--cfg-options', 'train_cfg.max_iters=2',
            'train_cfg.val_interval=2', 'default_hooks.logger.interval=1',
            'default_hooks.nm_sparsity.interval=1',
            'train_dataloader.batch_size=2', 'val_dataloader.batch_size=2'
        ] + data_root_options(data_root),
        cwd=str(root))
    return dict(proc=proc, root=root, data_root=data_root, work_dir=work_dir)


def test_stock_mmseg_train_py(trained):
    proc = trained['proc']
    assert proc.returncode == 0, proc.stdout[-5000:]
    logs = glob.glob(osp.join(trained['work_dir'], '*', '*.log'))
    assert len(logs) == 1, logs
    with open(logs[0]) as f:
        log = f.read()
    assert 'N:M sparsity of the model' in log
    assert 'sparsity/sad' in log
    assert 'mIoU' in log
    # both logged iterations carry the sparsity scalars
    assert log.count('sparsity/sad_total:') == 2
    assert 'sparsity/zero_ratio: 0.5000' in log
    # the 1x1 classifiers stay dense, the rest of FCN is 2:4
    assert "excluded by 'decode_head.conv_seg'" in log
    assert osp.isfile(osp.join(trained['work_dir'], 'iter_2.pth'))
    ckpt = torch.load(
        osp.join(trained['work_dir'], 'iter_2.pth'),
        map_location='cpu',
        weights_only=True)
    assert 'nm_sparsity' in ckpt


def test_stock_mmseg_test_py(trained):
    assert trained['proc'].returncode == 0, 'training failed'
    work_dir = trained['work_dir']
    proc = run_tool(
        [
            mmseg_tool('test.py'), DEMO_CFG,
            osp.join(work_dir, 'iter_2.pth'), '--work-dir',
            str(trained['root'] / 'test_dir'), '--cfg-options',
            'test_dataloader.batch_size=2'
        ] + data_root_options(trained['data_root']),
        cwd=str(trained['root']))
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert 'mIoU' in proc.stdout
    # evaluated sparse, not dense
    assert 'N:M sparsity of the model' in proc.stdout


def mmdet_tool(name: str) -> str:
    path = osp.join(osp.dirname(mmdet.__file__), '.mim', 'tools', name)
    if not osp.isfile(path):
        pytest.skip(f'mmdet wheel ships no tools/{name}')
    return path


def test_stock_mmseg_amp_flag_on_an_sr_ste_config_stops_at_once(tmp_path):
    """mmseg's --amp accepts only OptimWrapper: on an SR-STE config it stops
    before anything is built, naming the wrapper."""
    proc = run_tool([
        mmseg_tool('train.py'), DEMO_CFG, '--amp', '--work-dir',
        str(tmp_path)
    ],
                    cwd=str(tmp_path))
    assert proc.returncode != 0
    assert 'SRSTEOptimWrapper' in proc.stdout
    assert not glob.glob(osp.join(str(tmp_path), '*.pth'))


def test_stock_mmdet_amp_flag_on_an_sr_ste_config_stops_the_run(
        tmp_path, monkeypatch):
    """mmdet's --amp silently replaces the wrapper type by AmpOptimWrapper,
    which has no SR-STE term: the run stops at start, saying what to use.
    mmdet's own tools/train.py, run in this process so that AmpOptimWrapper
    can be built without a GPU."""
    import runpy

    from mmnm.datasets import generate_shapes_dataset
    generate_shapes_dataset(
        str(tmp_path / 'data'), splits={
            'train': 2,
            'val': 1
        })
    monkeypatch.setattr(
        'mmengine.optim.optimizer.amp_optimizer_wrapper.is_cuda_available',
        lambda: True)
    config = osp.join(REPO, 'configs', 'demo',
                      'faster-rcnn_r18_fpn_2-4_shapes-64x64.py')
    ann = str(tmp_path / 'data' / 'annotations' / 'instances_val.json')
    monkeypatch.setattr(sys, 'argv', [
        'train.py', config, '--amp', '--work-dir',
        str(tmp_path / 'work'), '--cfg-options',
        f'val_evaluator.ann_file={ann}'
    ] + data_root_options(str(tmp_path / 'data')))
    with pytest.raises(
            RuntimeError,
            match=r'optim_wrapper \(AmpOptimWrapper'
            r"\) adds no SR-STE term.*type='AmpSRSTEOptimWrapper'"):
        runpy.run_path(mmdet_tool('train.py'), run_name='__main__')
    assert not glob.glob(str(tmp_path / 'work' / '*.pth'))
