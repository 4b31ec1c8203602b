"""benchmarks/bench_nm_mask.py runs, on each CPU kernel path it offers,
and finds its masks identical to argsort-and-scatter."""
import os.path as osp
import subprocess
import sys

import pytest

import mmnm
from mmnm.ops import ext_available

REPO = osp.dirname(osp.dirname(mmnm.__file__))
SCRIPT = osp.join(REPO, 'benchmarks', 'bench_nm_mask.py')


@pytest.mark.skipif(not ext_available(), reason='mmnm._ext not built')
def test_sse2_run_names_its_kernel_and_matches_argsort():
    result = subprocess.run(
        [sys.executable, SCRIPT, '--repeats', '1', '--cpu-isa', 'sse2'],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert 'SSE2 CPU kernels' in lines[0]
    assert any(line.startswith('layer4.2.conv3') for line in lines)
    assert 'masks identical' in result.stdout
