"""Every tool reports bad input the same way: one line ``error: ...``
naming the file on stderr, exit code 1, no traceback."""
import os.path as osp
import subprocess
import sys

import pytest

import mmnm

REPO = osp.dirname(osp.dirname(mmnm.__file__))
CONFIG = 'configs/demo/fcn_r18-d8_2-4_shapes-64x64.py'

pytest.importorskip('mmseg')


@pytest.mark.parametrize('tool, extra', [
    ('tools/test.py', []),
    ('tools/model_converters/export_nm.py', ['OUT.pth']),
    ('tools/model_converters/export_nm.py', ['--verify-only']),
    ('tools/deploy/convert_sparse24.py', ['OUT.pth']),
    ('tools/analysis/sparsity_report.py', ['RUN_DIR']),
])
def test_a_missing_checkpoint_is_one_error_line(tool, extra, tmp_path):
    missing = str(tmp_path / 'missing.pth')
    extra = [
        str(tmp_path / arg) if arg.isupper() or arg.endswith('.pth') else arg
        for arg in extra
    ]
    proc = subprocess.run([sys.executable, tool, CONFIG, missing, *extra],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 1
    errors = [
        line for line in proc.stderr.splitlines() if line.startswith('error')
    ]
    assert errors == [f'error: checkpoint not found: {missing}']
    assert 'MMNM_TRACEBACK=1' in proc.stderr
    assert 'Traceback' not in proc.stderr
    assert not (tmp_path / 'OUT.pth').exists()


def test_a_missing_config_is_one_error_line(tmp_path):
    missing = str(tmp_path / 'none.py')
    proc = subprocess.run([sys.executable, 'tools/train.py', missing],
                          cwd=REPO,
                          capture_output=True,
                          text=True,
                          timeout=300)
    assert proc.returncode == 1
    assert f'error: config not found: {missing}\n' in proc.stderr
    assert 'Traceback' not in proc.stderr
