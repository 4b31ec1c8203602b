"""The compiled mask kernel (mmnm._ext) against the pure-PyTorch path."""
import pytest
import torch

from mmnm.ops import ext_available, group_view, nm_mask, nm_mask_torch
from mmnm.ops.ext_loader import load_ext

pytestmark = pytest.mark.skipif(
    not ext_available(), reason='mmnm._ext not built (MMNM_WITH_OPS=0)')

PATTERNS = [(1, 2), (2, 3), (1, 4), (2, 4), (3, 5), (2, 6), (2, 8), (4, 8),
            (1, 16), (7, 16), (8, 32)]


@pytest.mark.parametrize('n,m', PATTERNS)
@pytest.mark.parametrize('orientation', ['channel', 'flat'])
@pytest.mark.parametrize(
    'dtype', [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_kernel_equals_torch_path(n, m, orientation, dtype):
    gen = torch.Generator().manual_seed(n * 100 + m)
    for shape in [(8, 2 * m, 3, 3), (16, 4 * m), (5, m, 1, 1)]:
        # few distinct values, so that ties are frequent
        weight = torch.randint(-3, 4, shape, generator=gen).to(dtype)
        weight += torch.randn(
            shape, generator=gen).to(dtype) * (
                torch.rand(shape, generator=gen) < 0.5)
        grouped = group_view(weight, m, orientation)
        expected = nm_mask_torch(grouped, n)
        keep, masked = load_ext().nm_mask_forward(grouped.contiguous(), n,
                                                  True)
        assert torch.equal(keep, expected), shape
        assert torch.equal(masked, grouped * expected), shape
        # the public op takes the kernel here
        mask, masked_out = nm_mask(
            weight, n, m, orientation, return_masked=True)
        assert torch.equal(mask, expected.view(shape))
        assert torch.equal(masked_out, weight * mask)


def test_kernel_reports_non_finite_with_layer_name():
    weight = torch.randn(4, 8)
    weight[1, 3] = float('inf')
    with pytest.raises(ValueError, match='neck.fc: weight holds 1 NaN/Inf'):
        nm_mask(weight, 2, 4, name='neck.fc')


def test_kernel_writes_a_non_finite_flag_instead_of_raising():
    """Given ``non_finite_out``, the op reports NaN/Inf there (0 or 1,
    whatever it held) and does not raise: what lets a GPU forward leave the
    check to the optimizer step (see test_nm_mask.py)."""
    ext = load_ext()
    flag = torch.full((), 7, dtype=torch.int32)
    weight = torch.randn(4, 8, 3, 3)
    grouped = group_view(weight, 4).contiguous()
    keep = ext.nm_mask_forward(grouped, 2, False, None, None, flag)[0]
    assert flag.item() == 0
    assert torch.equal(keep, nm_mask_torch(grouped, 2))
    for bad in (float('nan'), -float('inf')):
        weight[3, 5, 1, 2] = bad
        ext.nm_mask_forward(
            group_view(weight, 4).contiguous(), 2, True, None, None, flag)
        assert flag.item() == 1
    with pytest.raises(RuntimeError, match='non_finite_out must be an int32'):
        ext.nm_mask_forward(grouped, 2, False, None, None,
                            torch.zeros(1, dtype=torch.int32))


def test_kernel_rejects_bad_arguments():
    ext = load_ext()
    with pytest.raises(RuntimeError, match='need 1 <= N < M'):
        ext.nm_mask_forward(torch.randn(2, 2, 4, 1), 4, False)
    with pytest.raises(RuntimeError, match='grouped view'):
        ext.nm_mask_forward(torch.randn(2, 8), 2, False)
    with pytest.raises(RuntimeError, match='no kernel for M=7'):
        ext.nm_mask_forward(torch.randn(2, 2, 7, 1), 2, False)


@pytest.mark.parametrize('n', [1, 2, 3])
@pytest.mark.parametrize(
    'shape',
    [
        (37, 12, 1, 1),
        (64, 64, 3, 3),
        (9, 8, 5, 5),
        (23, 4, 2, 7),
        (129, 36),
        (8, 8, 1, 2),
        (6, 8, 1, 3),
        (5, 8, 1, 8),
        (7, 12, 4, 4),
        (3, 4, 1, 17),
        (33, 28),
        # AVX-512: rows of 9 to 15 positions, one row, two rows
        (5, 8, 3, 5),
        (6, 8, 2, 5),
        (1, 4, 3, 3),
        (2, 4, 3, 3),
        # rows of 32 and 33 positions; contiguous groups with a tail
        (4, 8, 4, 8),
        (3, 8, 1, 33),
        (20, 68)
    ])
def test_vectorised_m4_float_path_equals_torch_path(cpu_isa, thread_counts, n,
                                                    shape):
    """float32 M=4 runs a SIMD path (AVX-512: 16 groups per step, AVX2: 8,
    SSE2: 4): vector blocks, the last one of a row overlapping the one
    before when the row length is not a multiple of the width (AVX-512,
    rows of 9 to 15: one step writing into the next row, the last row on
    AVX2), narrower code for shorter rows and for the contiguous groups
    left over, split across threads at arbitrary rows; with and without
    the masked weight."""
    gen = torch.Generator().manual_seed(sum(shape) + n)
    weight = torch.randn(shape, generator=gen)
    weight[torch.rand(shape, generator=gen) < 0.2] = 0.5  # ties
    weight[torch.rand(shape, generator=gen) < 0.1] *= -1
    weight[torch.rand(shape, generator=gen) < 0.05] = 0.0  # +0 / -0 ties
    weight[torch.rand(shape, generator=gen) < 0.05] = -0.0
    grouped = group_view(weight, 4).contiguous()
    expected = nm_mask_torch(grouped, n)
    for threads in thread_counts:
        torch.set_num_threads(threads)
        keep, masked = load_ext().nm_mask_forward(grouped, n, True)
        assert torch.equal(keep, expected), threads
        assert torch.equal(masked, grouped * expected), threads
        # pruned negative weights give -0.0, as in the PyTorch path
        assert torch.equal(masked.signbit(),
                           (grouped * expected).signbit()), threads
        assert bool((keep.sum(2) == n).all())
        assert torch.equal(load_ext().nm_mask_forward(grouped, n, False)[0],
                           expected)


@pytest.mark.parametrize('shape', [(16, 64), (8, 8, 3, 3), (4, 8, 1, 1),
                                   (4, 8, 5, 5), (20, 68)])
def test_vectorised_path_finds_non_finite_anywhere(cpu_isa, shape):
    """A NaN (of either sign) or Inf in any lane of any vector block is
    reported; subnormal values are not."""
    ext = load_ext()
    negative_nan = torch.tensor(float('nan')).neg().item()
    for flat in range(0, torch.Size(shape).numel(), 7):
        for bad in (float('nan'), negative_nan, float('inf'), -float('inf')):
            weight = torch.randn(shape)
            weight.view(-1)[flat] = bad
            with pytest.raises(RuntimeError, match='NaN/Inf'):
                ext.nm_mask_forward(group_view(weight, 4).contiguous(), 2)
    tiny = torch.randn(shape) * 1e-40  # float32 subnormals
    assert bool((tiny != 0).any() & (tiny.abs() < 1.2e-38).all())
    grouped = group_view(tiny, 4).contiguous()
    keep = ext.nm_mask_forward(grouped, 2)[0]
    assert torch.equal(keep, nm_mask_torch(grouped, 2))


def test_cpu_isa_choice_is_checked(available_cpu_isas):
    ext = load_ext()
    best = available_cpu_isas[-1]
    assert ext.cpu_isa() == best  # the best the CPU has, by default
    with pytest.raises(RuntimeError, match='unknown instruction set'):
        ext.set_cpu_isa('neon')
    ext.set_cpu_isa('scalar')
    ext.set_cpu_isa('auto')
    assert ext.cpu_isa() == best


def test_status_names_the_instruction_set():
    from mmnm.ops import ext_status
    ext = load_ext()
    assert f'{ext.cpu_isa().upper()} CPU kernels' in ext_status()
    ext.set_cpu_isa('scalar')
    try:
        assert 'SCALAR CPU kernels' in ext_status()
    finally:
        ext.set_cpu_isa('auto')


def test_extension_built_from_older_sources_is_not_used(monkeypatch):
    """A build lacking an op this mmnm calls (an editable install not
    rebuilt after an update) is refused with a warning naming the op and
    the rebuild command, and the ops fall back to PyTorch; with every op,
    the same build is used."""
    import importlib
    import types

    from mmnm.ops import ext_loader, ext_status
    real = load_ext()
    weight = torch.randn(8, 16)
    expected = nm_mask(weight, 2, 4)
    stale = types.ModuleType('mmnm._ext')
    stale.__file__ = real.__file__
    for op in ext_loader.REQUIRED_OPS:
        if op != 'straight_through':
            setattr(stale, op, getattr(real, op))
    import_module = importlib.import_module
    monkeypatch.setattr(
        ext_loader.importlib, 'import_module', lambda name: stale
        if name == 'mmnm._ext' else import_module(name))
    monkeypatch.setattr(ext_loader, '_ext', None)
    monkeypatch.setattr(ext_loader, '_load_error', None)
    with pytest.warns(UserWarning, match='lacks straight_through'):
        assert ext_loader.load_ext() is None
    assert 'older sources (it lacks straight_through)' in ext_status()
    assert 'pip install -e .' in ext_status()
    assert torch.equal(nm_mask(weight, 2, 4), expected)  # PyTorch path

    stale.straight_through = real.straight_through
    stale.sources_digest = real.sources_digest
    monkeypatch.setattr(ext_loader, '_load_error', None)
    assert ext_loader.load_ext() is stale


def test_extension_built_from_other_sources_is_not_used(monkeypatch, tmp_path):
    """A build whose C++ sources were edited or updated since (its digest
    is not that of mmnm/ops/csrc now) is refused, naming the folder; with
    no sources beside the package (an installed wheel) it is used."""
    import shutil

    from mmnm.ops import ext_loader, ext_sources, ext_status
    real = load_ext()
    assert real.sources_digest == ext_sources.sources_digest()
    csrc = tmp_path / 'csrc'
    shutil.copytree(ext_sources.CSRC_DIR, csrc)
    monkeypatch.setattr(ext_loader, 'CSRC_DIR', str(csrc))
    monkeypatch.setattr(ext_loader, 'sources_digest',
                        lambda: ext_sources.sources_digest(str(csrc)))
    monkeypatch.setattr(ext_loader, '_ext', None)
    monkeypatch.setattr(ext_loader, '_load_error', None)
    assert ext_loader.load_ext() is real  # the same sources
    with open(csrc / 'pytorch' / 'straight_through.cpp', 'a') as source:
        source.write('// edited\n')
    monkeypatch.setattr(ext_loader, '_ext', None)
    monkeypatch.setattr(ext_loader, '_load_error', None)
    with pytest.warns(UserWarning, match='other C.. sources than'):
        assert ext_loader.load_ext() is None
    assert str(csrc) in ext_status() and 'build_ext --inplace' in ext_status()
    for path in csrc.rglob('*'):
        if path.is_file():
            path.unlink()
    monkeypatch.setattr(ext_loader, '_load_error', None)
    assert ext_loader.load_ext() is real  # nothing to compare with


def test_sources_digest_covers_paths_and_contents(tmp_path):
    from mmnm.ops.ext_sources import sources_digest
    assert sources_digest(str(tmp_path)) == ''
    (tmp_path / 'a.cpp').write_text('int a;')
    (tmp_path / 'notes.txt').write_text('not a source')
    first = sources_digest(str(tmp_path))
    assert len(first) == 40
    (tmp_path / 'notes.txt').write_text('changed')
    assert sources_digest(str(tmp_path)) == first  # not a source file
    (tmp_path / 'a.cpp').rename(tmp_path / 'b.cpp')
    assert sources_digest(str(tmp_path)) != first  # a path changed
    (tmp_path / 'b.cpp').rename(tmp_path / 'a.cpp')
    assert sources_digest(str(tmp_path)) == first
    (tmp_path / 'a.cpp').write_text('int b;')
    assert sources_digest(str(tmp_path)) != first  # contents changed


def test_required_ops_are_the_bound_functions():
    """REQUIRED_OPS lists every function pybind.cpp binds (a new op added
    there without being listed would not be checked in older builds)."""
    from mmnm.ops.ext_loader import REQUIRED_OPS
    ext = load_ext()
    bound = {
        name
        for name in dir(ext)
        if not name.startswith('_') and callable(getattr(ext, name))
    }
    assert set(REQUIRED_OPS) == bound
