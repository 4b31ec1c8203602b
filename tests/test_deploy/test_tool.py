"""tools/deploy/convert_sparse24.py end to end (training checkpoint ->
compressed -> rebuilt from config -> same outputs, smaller file), from an
exported plain checkpoint with the dense config, and its errors; the loader
load_sparse24_model."""
import importlib.util
import os.path as osp
import subprocess
import sys

import pytest
import torch
from deploy_helpers import relative_error
from mmengine.model import revert_sync_batchnorm

import mmnm
from mmnm.apis import build_sparse_model, load_sparse24_model
from mmnm.conversion import export_state_dict
from mmnm.deploy import Sparse24Conv2d, sparse24_layer_names

pytest.importorskip('mmseg')

REPO = osp.dirname(osp.dirname(mmnm.__file__))
CONFIG = osp.join(REPO, 'configs', 'demo', 'fcn_r18-d8_2-4_shapes-64x64.py')
DENSE_CONFIG = osp.join(REPO, 'configs', 'demo',
                        'fcn_r18-d8_dense_shapes-64x64.py')
TOOL = osp.join(REPO, 'tools', 'deploy', 'convert_sparse24.py')
#: the demo FCN-R18: 28 Conv layers; the stem (3 channels, then K = 288
#: twice) and the two 4-class classifiers stay dense
NUM_SPARSE24 = 23


def load_tool():
    spec = importlib.util.spec_from_file_location('convert_sparse24', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@torch.no_grad()
def outputs(model, x):
    feats = model.extract_feat(x)
    return list(feats) + [model.decode_head(feats)]


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """A training checkpoint (dense weights under masks, optimizer state),
    the masked model's outputs and the converted checkpoint from the tool
    run as a subprocess."""
    torch.manual_seed(0)
    model = revert_sync_batchnorm(build_sparse_model(CONFIG)).eval()
    folder = tmp_path_factory.mktemp('deploy')
    path = folder / 'iter_300.pth'
    torch.save(
        dict(
            meta=dict(iter=300),
            state_dict=model.state_dict(),
            optimizer=dict(state={})), path)
    x = torch.randn(1, 3, 64, 64)
    out = folder / 'sparse24.pth'
    proc = subprocess.run(
        [sys.executable, TOOL, CONFIG,
         str(path), str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300)
    return dict(
        model=model, path=path, x=x, ref=outputs(model, x), out=out, proc=proc)


def test_tool_end_to_end(trained):
    proc, out = trained['proc'], trained['out']
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(
        line.split()[:4] ==
        ['backbone.layer1.0.conv1', 'Sparse24Conv2d', '64x64x3x3', '2:4']
        for line in lines)
    assert any(
        line.startswith('backbone.stem.3')
        and 'GEMM reduction size 288' in line for line in lines)
    assert f'{NUM_SPARSE24}/28 weighted layers run 2:4' in proc.stdout
    file_row = next(line for line in lines if line.startswith('file'))
    before, after = (int(v.replace(',', '')) for v in file_row.split()[1:3])
    assert before == osp.getsize(trained['path'])
    assert after == osp.getsize(out) < 0.3 * before  # fp32 -> fp16 2:4

    saved = torch.load(out)
    assert saved['meta']['dtype'] == 'torch.float16'
    assert len(saved['meta']['sparse24_layers']) == NUM_SPARSE24
    model = load_sparse24_model(CONFIG, str(out))
    assert not model.training
    conv = model.backbone.layer1[0].conv1
    assert isinstance(conv, Sparse24Conv2d) and conv.name == \
        'backbone.layer1.0.conv1'
    assert sum(isinstance(m, Sparse24Conv2d)
               for m in model.modules()) == NUM_SPARSE24
    for got, want in zip(outputs(model, trained['x']), trained['ref']):
        assert relative_error(got, want) < 1e-2

    # the rebuilt model's state_dict is the saved one, bit for bit
    state = model.state_dict()
    assert set(state) == set(saved['state_dict'])
    for key, value in saved['state_dict'].items():
        assert value.dtype == state[key].dtype and \
            torch.equal(value, state[key]), key


def test_exported_checkpoint_with_the_dense_config(trained, tmp_path, capsys):
    """An export (masks applied) needs no sparse config: each layer is
    checked for the 2:4 pattern and the same layers convert."""
    exported = tmp_path / 'exported.pth'
    torch.save(dict(state_dict=export_state_dict(trained['model'])), exported)
    out = tmp_path / 'bf16.pth'
    assert load_tool().main(
        [DENSE_CONFIG,
         str(exported),
         str(out), '--dtype', 'bf16']) == 0
    assert 'dense model of' in capsys.readouterr().out
    state = torch.load(out)['state_dict']
    assert sparse24_layer_names(state) == \
        sparse24_layer_names(torch.load(trained['out'])['state_dict'])
    assert state['backbone.layer1.0.conv1.weight_values'].dtype == \
        torch.bfloat16
    conv = load_sparse24_model(DENSE_CONFIG, str(out)).backbone.layer1[0]
    assert torch.equal(
        conv.conv1.weight,
        trained['model'].backbone.layer1[0].conv1.masked_weight().bfloat16())


def test_dense_weights_are_not_converted(trained, tmp_path, capsys):
    """The training checkpoint with the dense config: no mask, no 2:4."""
    code = load_tool().main(
        [DENSE_CONFIG,
         str(trained['path']),
         str(tmp_path / 'out.pth')])
    err = capsys.readouterr().err
    assert code == 1
    assert str(trained['path']) in err
    assert 'no weighted layer of EncoderDecoder can run 2:4 kernels' in err
    assert not (tmp_path / 'out.pth').exists()


def test_missing_files_and_foreign_checkpoints(trained, tmp_path, capsys):
    tool = load_tool()
    missing = tmp_path / 'missing.pth'
    assert tool.main([CONFIG, str(missing), str(tmp_path / 'o.pth')]) == 1
    assert f'checkpoint not found: {missing}' in capsys.readouterr().err
    assert tool.main([
        str(tmp_path / 'nope.py'),
        str(trained['path']),
        str(tmp_path / 'o.pth')
    ]) == 1
    assert 'config not found' in capsys.readouterr().err

    state = dict(trained['model'].state_dict())
    state.pop('decode_head.conv_seg.weight')
    foreign = tmp_path / 'foreign.pth'
    torch.save(dict(state_dict=state), foreign)
    assert tool.main([CONFIG, str(foreign), str(tmp_path / 'o.pth')]) == 1
    err = capsys.readouterr().err
    assert 'does not load' in err and 'decode_head.conv_seg.weight' in err


def test_loader_errors(trained, tmp_path):
    with pytest.raises(ValueError, match='no 2:4 layer'):
        load_sparse24_model(CONFIG, str(trained['path']))
    saved = torch.load(trained['out'])
    del saved['state_dict']['decode_head.conv_seg.bias']
    broken = tmp_path / 'broken.pth'
    torch.save(saved, broken)
    with pytest.raises(
            ValueError, match=r'(?s)broken.pth: .*decode_head.conv_seg.bias'):
        load_sparse24_model(CONFIG, str(broken))
    with pytest.raises(FileNotFoundError):
        load_sparse24_model(CONFIG, str(tmp_path / 'missing.pth'))


def test_unreadable_checkpoint_is_named(tmp_path, capsys):
    """Any error while loading (here: not a pickle) exits 1 naming the
    file, not only RuntimeError/KeyError."""
    garbage = tmp_path / 'garbage.pth'
    garbage.write_text('not a checkpoint')
    assert load_tool().main([CONFIG,
                             str(garbage),
                             str(tmp_path / 'o.pth')]) == 1
    err = capsys.readouterr().err
    assert f'{garbage}: does not load into the model of {CONFIG}' in err
    assert not (tmp_path / 'o.pth').exists()


def test_output_folder_is_created(trained, tmp_path, capsys):
    out = tmp_path / 'missing' / 'sub' / 'sparse24.pth'
    assert load_tool().main([CONFIG, str(trained['path']), str(out)]) == 0
    assert f'to {out}' in capsys.readouterr().out
    assert sparse24_layer_names(torch.load(out)['state_dict'])


@pytest.mark.parametrize('how', ['resume', 'load_from'])
def test_training_from_a_sparse24_checkpoint_stops_naming_it(
        trained, tmp_path, how):
    """A 2:4 inference checkpoint holds no weight an N:M model can load:
    nothing may silently train from the layers' initial weights."""
    from mmnm.datasets import generate_shapes_dataset
    data = str(tmp_path / 'shapes')
    generate_shapes_dataset(data, splits={'train': 2, 'val': 1})
    out = str(trained['out'])
    args = ['--resume', out] if how == 'resume' else \
        ['--cfg-options', f'load_from={out}']
    options = [
        f'{loader}_dataloader.dataset.data_root={data}'
        for loader in ('train', 'val', 'test')
    ]
    proc = subprocess.run(
        [
            sys.executable, 'tools/train.py', CONFIG, '--work-dir',
            str(tmp_path / 'work')
        ] + args + (['--cfg-options'] if how == 'resume' else []) + options,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300)
    assert proc.returncode != 0
    assert f'{out} is a 2:4 inference checkpoint' in proc.stderr
    assert not list((tmp_path / 'work').glob('iter_*.pth'))
