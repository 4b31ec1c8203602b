"""mmnm without mmcv's compiled ops (mmcv-lite, as on the GPU check's
machines): everything but the N:M deformable convs imports and works, and
asking for those says why they are missing.

Runs in a fresh interpreter in which importing ``mmcv.ops`` fails the way
it does with mmcv-lite (no ``mmcv._ext``)."""
import subprocess
import sys
import textwrap

import mmnm.layers

SCRIPT = textwrap.dedent('''
    import sys

    class NoMmcvOps:
        """mmcv-lite: mmcv/ops/*.py exist, loading mmcv._ext fails."""

        def find_spec(self, name, path=None, target=None):
            if name == 'mmcv._ext':
                raise ModuleNotFoundError("No module named 'mmcv._ext'")
            return None

    sys.meta_path.insert(0, NoMmcvOps())

    import pytest
    import torch
    from torch import nn

    import mmnm
    import mmnm.layers
    from mmnm.conversion import sparsify_model
    from mmnm.registry import MODELS

    assert 'mmcv.ops' not in sys.modules or \\
        not hasattr(sys.modules['mmcv.ops'], 'DeformConv2d')
    reason = mmnm.layers.DEFORM_CONVS_UNAVAILABLE
    assert "No module named 'mmcv._ext'" in reason, reason
    assert 'mmcv-lite' in reason, reason
    assert 'SparseDeformConv2d' not in mmnm.layers.__all__
    with pytest.raises(ImportError, match='SparseDeformConv2dPack: the N:M '
                       'deformable convs need mmcv'):
        mmnm.layers.SparseDeformConv2dPack
    with pytest.raises(ImportError, match='SparseModulatedDeformConv2d: '):
        MODELS.build(dict(type='SparseModulatedDeformConv2d',
                          in_channels=8, out_channels=8, kernel_size=3))

    # the rest works: a model is sparsified and trains a step
    model = nn.Sequential(nn.Conv2d(8, 16, 3), nn.Flatten(),
                          nn.Linear(16 * 4 * 4, 8))
    sparsify_model(model, '2:4')
    assert type(model[0]).__name__ == 'SparseConv'
    model(torch.randn(2, 8, 6, 6)).sum().backward()
    groups = model[0].mask.movedim(1, -1).reshape(-1, 4)
    assert groups.sum(1).eq(2).all()
    print('OK')
''')


def test_mmnm_works_without_mmcv_ops():
    done = subprocess.run([sys.executable, '-c', SCRIPT],
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith('OK'), done.stdout


def test_deform_convs_are_there_with_mmcv_ops():
    """The other side: with the full mmcv (this environment), the layers
    import, are exported and registered."""
    from mmcv.ops import DeformConv2dPack

    from mmnm.registry import MODELS
    assert mmnm.layers.DEFORM_CONVS_UNAVAILABLE is None
    from mmnm.layers.layer_types import DEFORM_CONV_NAMES, SPARSE_DEFORM_CONVS
    assert tuple(c.__name__ for c in SPARSE_DEFORM_CONVS) == DEFORM_CONV_NAMES
    assert set(DEFORM_CONV_NAMES) <= set(mmnm.layers.__all__)
    layer = MODELS.build(
        dict(
            type='SparseDeformConv2dPack',
            in_channels=8,
            out_channels=8,
            kernel_size=3))
    assert type(layer) is mmnm.layers.SparseDeformConv2dPack
    assert layer.plain_type is DeformConv2dPack
