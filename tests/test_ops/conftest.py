"""The instruction sets of the compiled CPU kernels, for tests that run
them all."""
import platform

import pytest
import torch

from mmnm.ops.ext_loader import load_ext

ISAS = ('scalar', 'sse2', 'avx2', 'avx512')


def available_isas():
    """The instruction sets this CPU runs, lowest first, from the CPU
    flags the OS reports (not from the extension: its choice is what the
    tests check)."""
    if platform.machine() not in ('x86_64', 'AMD64'):
        return ISAS[:1]
    try:
        with open('/proc/cpuinfo') as cpuinfo:
            flags = next(line for line in cpuinfo
                         if line.startswith('flags')).split()
    except (OSError, StopIteration):
        return ISAS[:2]  # x86-64 always has SSE2
    if 'avx2' not in flags:
        return ISAS[:2]
    # the AVX-512 kernels need F, BW and VL (Xeon Phi has F only)
    avx512 = {'avx512f', 'avx512bw', 'avx512vl'}.issubset(flags)
    return ISAS if avx512 else ISAS[:3]


@pytest.fixture(params=ISAS)
def cpu_isa(request):
    """Each instruction set in turn for the float32 kernels (skipped where
    the CPU or build lacks it); the best one restored after."""
    ext = load_ext()
    if ext is None:
        pytest.skip('mmnm._ext not built')
    if request.param not in available_isas():
        pytest.skip(f'this CPU has no {request.param} kernels')
    ext.set_cpu_isa(request.param)
    assert ext.cpu_isa() == request.param
    yield request.param
    ext.set_cpu_isa('auto')


@pytest.fixture
def available_cpu_isas():
    """The instruction sets this CPU and build run, lowest first."""
    return available_isas()


@pytest.fixture
def thread_counts():
    """One thread, then three (uneven splits of the rows across threads);
    the count set before is restored."""
    before = torch.get_num_threads()
    yield (1, 3)
    torch.set_num_threads(before)
