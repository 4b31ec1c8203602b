"""tools/model_converters/export_nm.py: exact N:M plain checkpoints that the
stock dense model loads, and a verifier that rejects non-N:M weights."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, init_default_scope

import mmnm
from mmnm.apis import config_sparsity
from mmnm.conversion import sparsify_model

REPO = osp.dirname(osp.dirname(mmnm.__file__))
CONFIG = osp.join(REPO, 'configs', 'demo', 'fcn_r18-d8_2-4_shapes-64x64.py')
TOOL = osp.join(REPO, 'tools', 'model_converters', 'export_nm.py')


def export(*args):
    return subprocess.run([sys.executable, TOOL, CONFIG, *map(str, args)],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=300)


def build(sparse: bool):
    cfg = Config.fromfile(CONFIG)
    init_default_scope(cfg.default_scope)
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    if sparse:
        sparsify_model(model, **config_sparsity(cfg))
    return model.eval()


def group_nonzeros(weight: torch.Tensor, m: int = 4) -> torch.Tensor:
    """Non-zeros per group of m input channels at each (k, r, s)."""
    out, cin = weight.shape[:2]
    return (weight.movedim(1, -1).reshape(-1, cin // m, m) != 0).sum(-1)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A training checkpoint: dense weights under their masks."""
    torch.manual_seed(0)
    model = build(sparse=True)
    model.init_weights()
    path = tmp_path_factory.mktemp('ckpt') / 'iter_2.pth'
    torch.save(
        dict(
            meta=dict(iter=2),
            state_dict=model.state_dict(),
            optimizer=dict(state={})), path)
    return model, path


def test_export_is_nm_and_loads_into_the_stock_dense_model(trained, tmp_path):
    sparse_model, path = trained
    out = tmp_path / 'exported.pth'
    proc = export(path, out)
    assert proc.returncode == 0, proc.stderr
    assert '25 layers verified N:M (2:4)' in proc.stdout

    exported = torch.load(out)
    assert set(exported) == {'meta', 'state_dict'}  # no optimizer state
    original = torch.load(path)['state_dict']
    sparse_keys = set(exported['meta']['nm_patterns'])
    assert len(sparse_keys) == 25
    for key, value in exported['state_dict'].items():
        if key in sparse_keys:
            assert bool((group_nonzeros(value) == 2).all()), key
            kept = value != 0
            assert torch.equal(value[kept], original[key][kept]), key
        else:
            assert torch.equal(value, original[key]), key

    dense = build(sparse=False)
    dense.load_state_dict(exported['state_dict'], strict=True)
    inputs = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(
            dense.extract_feat(inputs)[-1],
            sparse_model.extract_feat(inputs)[-1],
            atol=1e-5)

    assert export(out, '--verify-only').returncode == 0


def test_verifier_rejects_a_dense_checkpoint(trained):
    _, path = trained
    proc = export(path, '--verify-only')
    assert proc.returncode == 1
    assert 'not N:M sparse' in proc.stderr
    assert 'backbone.layer1.0.conv1.weight' in proc.stderr


def test_missing_checkpoint_is_named(tmp_path):
    proc = export(tmp_path / 'missing.pth', tmp_path / 'out.pth')
    assert proc.returncode != 0
    assert 'checkpoint not found' in proc.stderr
    assert 'missing.pth' in proc.stderr
