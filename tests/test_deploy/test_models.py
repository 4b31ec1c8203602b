"""Real mmdet models converted to 2:4 inference against their masked dense
selves: a ResNet-50 backbone and the Faster R-CNN of
configs/faster_rcnn_r50_2-4.py, small inputs, CPU (the dense GEMM path
behind the same lowering the GPU kernels use)."""
import copy
import os.path as osp

import pytest
import torch
from deploy_helpers import kernel_eligible, relative_error
from mmengine.config import Config
from torch import nn

import mmnm
from mmnm.apis import build_model, config_sparsity
from mmnm.conversion import sparsify_model
from mmnm.deploy import Sparse24Conv2d, Sparse24Linear, convert_to_sparse24
from mmnm.layers import NMSparseMixin

mmdet = pytest.importorskip('mmdet')

REPO = osp.dirname(osp.dirname(mmnm.__file__))
FRCNN = osp.join(REPO, 'configs', 'faster_rcnn_r50_2-4.py')
#: relative error of a whole network in fp16 / bf16 against fp32
TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 6e-2}

#: whole models run faster on one intra-op thread on a busy 2-core machine
pytestmark = pytest.mark.usefixtures('one_thread')


def sparse24_names(model: nn.Module):
    return {
        name
        for name, m in model.named_modules()
        if isinstance(m, (Sparse24Conv2d, Sparse24Linear))
    }


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, x: torch.Tensor) -> None:
    """Running statistics from one batch, so that eval-mode activations
    keep their scale through 50 layers of random weights."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # cumulative average: this batch's stats
    model.train()  # mmdet's ResNet.train returns None
    model(x)
    model.eval()


@pytest.fixture(scope='module')
def resnet50():
    from mmdet.models.backbones import ResNet
    torch.manual_seed(0)
    model = ResNet(depth=50, init_cfg=None)
    expected = {
        name
        for name, m in model.named_modules() if kernel_eligible(m)
    }
    sparsify_model(model, '2:4')
    calibrate_batchnorm(model, torch.randn(4, 3, 64, 64))
    return model, expected


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_resnet50_backbone(resnet50, dtype):
    masked, expected = resnet50
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = masked(x)
    model = copy.deepcopy(masked)
    report = convert_to_sparse24(model, dtype, logger=None)
    assert expected == sparse24_names(model)
    assert {layer.name for layer in report.sparse_layers} == expected
    assert len(expected) == 52  # every conv but the 3-channel stem
    assert 'reduction size 3' in \
        {d.name: d for d in report.layers}['conv1'].note
    with torch.no_grad():
        outputs = model(x)
    assert len(outputs) == len(reference) == 4
    for out, ref in zip(outputs, reference):
        assert out.dtype == torch.float32 and out.shape == ref.shape
        assert relative_error(out, ref) < TOLERANCE[dtype]


@pytest.fixture(scope='module')
def faster_rcnn():
    """The masked model of the 2:4 config, its converted copy, the dense
    layers the config's exclusions and the kernel rules predict, and an
    input."""
    from mmdet.testing import demo_mm_inputs
    cfg = Config.fromfile(FRCNN)
    cfg.model.test_cfg.rpn.max_per_img = 50
    cfg.model.test_cfg.rcnn.update(score_thr=0.0, max_per_img=20)
    torch.manual_seed(0)
    dense = build_model(cfg).eval()
    sparsity = config_sparsity(cfg)
    expected = {
        name
        for name, m in dense.named_modules()
        if kernel_eligible(m) and name not in sparsity['exclude']
    }
    masked = dense
    sparsify_model(masked, **sparsity)
    converted = copy.deepcopy(masked)
    report = convert_to_sparse24(converted, torch.float16, logger=None)
    data = demo_mm_inputs(
        batch_size=1, image_shapes=(3, 64, 64), num_items=[2], num_classes=80)
    data = masked.data_preprocessor(data, False)
    return masked, converted, report, expected, data


def test_faster_rcnn_layers(faster_rcnn):
    masked, converted, report, expected, _ = faster_rcnn
    assert sparse24_names(converted) == expected
    assert len(expected) == 66
    assert not any(isinstance(m, NMSparseMixin) for m in converted.modules())
    notes = {
        layer.name: layer.note
        for layer in report.layers if layer.pattern is None
    }
    assert set(notes) == {
        'backbone.conv1', 'rpn_head.rpn_cls', 'rpn_head.rpn_reg',
        'roi_head.bbox_head.fc_cls', 'roi_head.bbox_head.fc_reg'
    }
    assert 'reduction size 3' in notes['backbone.conv1']
    assert 'not a multiple of 32' in notes['rpn_head.rpn_cls']
    assert 'not a multiple of 32' in notes['roi_head.bbox_head.fc_cls']
    # excluded from training sparsity, 320 rows: dense weights
    assert 'not 2:4' in notes['roi_head.bbox_head.fc_reg']


def test_faster_rcnn_outputs(faster_rcnn):
    from mmdet.structures.bbox import bbox2roi
    masked, converted, _, _, data = faster_rcnn
    inputs, samples = data['inputs'], data['data_samples']
    with torch.no_grad():
        feats = masked.extract_feat(inputs)
        for got, want in zip(converted.extract_feat(inputs), feats):
            assert relative_error(got, want) < TOLERANCE[torch.float16]
        rpn = [t for level in masked.rpn_head(feats) for t in level]
        rpn_got = [t for level in converted.rpn_head(feats) for t in level]
        for got, want in zip(rpn_got, rpn):
            assert relative_error(got, want) < TOLERANCE[torch.float16]
        # each head on its own model's features: the RoI extractor reads
        # what the converted convs return
        feats_got = converted.extract_feat(inputs)
        rois = bbox2roi([
            torch.tensor([[0., 0., 32., 32.], [10., 5., 60., 40.],
                          [20., 20., 63., 63.]])
        ])
        want = masked.roi_head._bbox_forward(feats, rois)
        got = converted.roi_head._bbox_forward(feats_got, rois)
        for key in ('cls_score', 'bbox_pred'):
            assert relative_error(got[key], want[key]) < \
                TOLERANCE[torch.float16], key

        # detections from the same proposals (random weights score all
        # classes alike, so proposals picked anew could differ)
        proposals = masked.rpn_head.predict(feats, samples, rescale=False)
        want = masked.roi_head.predict(
            feats, copy.deepcopy(proposals), samples, rescale=False)[0]
        got = converted.roi_head.predict(
            feats_got, copy.deepcopy(proposals), samples, rescale=False)[0]
        assert len(got) == len(want) == 20
        assert torch.allclose(got.scores, want.scores, rtol=1e-2)
        assert int(got.labels[0]) == int(want.labels[0])
        assert float((got.bboxes[0] - want.bboxes[0]).abs().max()) < 0.5

        # and the whole detector runs end to end
        results = converted.predict(inputs, copy.deepcopy(samples))
    detections = results[0].pred_instances
    assert len(detections) == 20
    assert bool(torch.isfinite(detections.bboxes).all())
