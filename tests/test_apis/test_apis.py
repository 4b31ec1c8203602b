"""mmnm.apis as users call it, on the demo FCN-R18 configs: build (sparse)
models, export and verify N:M checkpoints, convert to and load 2:4 models,
and the exceptions (never SystemExit) that bad input raises."""
import os.path as osp

import pytest
import torch
from mmengine.model import revert_sync_batchnorm

import mmnm
from mmnm.apis import (build_model, build_sparse_model,
                       convert_checkpoint_to_sparse24, export_nm_checkpoint,
                       init_nm_model, load_config, load_sparse24_model,
                       sparsify_model, verify_nm_checkpoint,
                       verify_nm_sparsity)
from mmnm.conversion import sparse_weight_patterns
from mmnm.deploy import Sparse24Conv2d
from mmnm.layers import NMSparseMixin

pytest.importorskip('mmseg')

REPO = osp.dirname(osp.dirname(mmnm.__file__))
CONFIG = osp.join(REPO, 'configs', 'demo', 'fcn_r18-d8_2-4_shapes-64x64.py')
DENSE_CONFIG = osp.join(REPO, 'configs', 'demo',
                        'fcn_r18-d8_dense_shapes-64x64.py')


@pytest.fixture(scope='module')
def training_checkpoint(tmp_path_factory):
    """A checkpoint of the sparse model with its dense (unmasked) weights,
    as an early training checkpoint of an older mmnm held them."""
    torch.manual_seed(0)
    model = build_sparse_model(CONFIG)
    path = tmp_path_factory.mktemp('apis') / 'iter_1.pth'
    torch.save(dict(meta=dict(iter=1), state_dict=model.state_dict()), path)
    return path


def test_build_sparse_model_is_sparsify_over_build_model():
    model, report = build_sparse_model(CONFIG, return_report=True)
    reference = build_model(CONFIG)
    expected = sparsify_model(
        reference,
        **load_config(CONFIG).default_hooks.nm_sparsity.sparsity)
    assert [(d.name, str(d.pattern)) for d in report.layers] == \
        [(d.name, str(d.pattern)) for d in expected.layers]
    sparse = [m for m in model.modules() if isinstance(m, NMSparseMixin)]
    assert len(sparse) == len(report.sparse_layers) > 0


def test_bad_input_raises_exceptions_not_system_exit(tmp_path):
    with pytest.raises(FileNotFoundError, match='config not found'):
        build_model(str(tmp_path / 'none.py'))
    with pytest.raises(ValueError, match='no NMSparsityHook'):
        build_sparse_model(DENSE_CONFIG)
    with pytest.raises(FileNotFoundError, match='checkpoint not found'):
        init_nm_model(CONFIG, str(tmp_path / 'none.pth'))
    garbage = tmp_path / 'garbage.pth'
    garbage.write_text('no checkpoint')
    with pytest.raises(ValueError, match='garbage.pth: does not load'):
        init_nm_model(CONFIG, str(garbage))


def test_output_folders_and_unreadable_files_are_named(training_checkpoint,
                                                       tmp_path):
    with pytest.raises(IsADirectoryError, match='is a folder'):
        export_nm_checkpoint(CONFIG, str(training_checkpoint), str(tmp_path))
    with pytest.raises(IsADirectoryError, match='is a folder'):
        convert_checkpoint_to_sparse24(CONFIG, str(training_checkpoint),
                                       str(tmp_path))
    with pytest.raises(ValueError, match="dtype 'fp32'"):
        convert_checkpoint_to_sparse24(CONFIG, str(training_checkpoint),
                                       str(tmp_path / 'o.pth'), 'fp32')
    text = tmp_path / 'text.pth'
    text.write_text('not a checkpoint')
    with pytest.raises(ValueError, match='text.pth: not a readable'):
        verify_nm_checkpoint(CONFIG, str(text))
    tensor = tmp_path / 'tensor.pth'
    torch.save(torch.zeros(2), tensor)
    with pytest.raises(ValueError, match='tensor.pth: not a checkpoint'):
        verify_nm_checkpoint(CONFIG, str(tensor))


def test_init_nm_model_loads_strictly_in_eval_mode(training_checkpoint):
    model = init_nm_model(CONFIG, str(training_checkpoint))
    assert not model.training
    saved = torch.load(training_checkpoint)['state_dict']
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    verify_nm_sparsity(model)  # the masked weights are N:M


def test_export_and_verify(training_checkpoint, tmp_path):
    out = tmp_path / 'sub' / 'nm.pth'
    summary = export_nm_checkpoint(CONFIG, str(training_checkpoint), str(out))
    state = torch.load(out)['state_dict']
    patterns = sparse_weight_patterns(build_sparse_model(CONFIG))
    # an independent count: 2:4 zeroes exactly half of each sparse weight
    # (random weights hold no zeros of their own)
    assert summary.numel == sum(state[k].numel() for k in patterns)
    assert summary.zeros == sum(int((state[k] == 0).sum()) for k in patterns)
    assert summary.zeros == summary.numel // 2
    # the stock dense model loads the export strictly
    dense = build_model(DENSE_CONFIG)
    dense.load_state_dict(state, strict=True)
    assert verify_nm_checkpoint(CONFIG, str(out)).zeros == summary.zeros
    # the unmasked weights of the training checkpoint are not N:M
    with pytest.raises(ValueError, match=r'iter_1.pth: not N:M sparse'):
        verify_nm_checkpoint(CONFIG, str(training_checkpoint))


def test_convert_and_load_sparse24(training_checkpoint, tmp_path):
    out = tmp_path / 'sparse24.pth'
    result = convert_checkpoint_to_sparse24(CONFIG, str(training_checkpoint),
                                            str(out))
    assert result.sparse_config
    assert result.sizes['file'] == (osp.getsize(training_checkpoint),
                                    osp.getsize(out))
    converted = result.report.sparse_layers
    stored = result.sizes['  of the 2:4 layers'][1]
    assert stored == result.report.stored_bytes == sum(
        d.numel // 2 * 2 + d.numel // 8 for d in converted)  # fp16 + meta
    model = load_sparse24_model(CONFIG, str(out))
    assert sum(isinstance(m, Sparse24Conv2d)
               for m in model.modules()) == len(converted)
    reference = revert_sync_batchnorm(
        init_nm_model(CONFIG, str(training_checkpoint)))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got = model.extract_feat(x)[-1]
        want = reference.extract_feat(x)[-1]
    assert ((got - want).norm() / want.norm()) < 1e-2
