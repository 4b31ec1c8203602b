"""benchmarks/bench_cls_throughput.py runs (on the demo classifier at tiny
shapes, so that it cannot rot) and prints consistent numbers."""
import os.path as osp
import re
import subprocess
import sys

import mmnm

REPO = osp.dirname(osp.dirname(mmnm.__file__))
SCRIPT = osp.join(REPO, 'benchmarks', 'bench_cls_throughput.py')
ROW = re.compile(r'^(?P<name>dense|\d+:\d+)\s+(?P<rate>[\d.]+)\s+'
                 r'(?P<ms>[\d.]+)\s+(?P<ratio>[\d.]+)\s+(?P<paired>[\d.]+)\s+'
                 r'(?P<hours>[\d.]+)$')


def test_tiny_run_prints_dense_and_each_pattern():
    result = subprocess.run(
        [sys.executable, SCRIPT, '--tiny', '--patterns', '2:4,1:4'],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {
        match['name']: match
        for match in map(ROW.match, result.stdout.splitlines()) if match
    }
    assert list(rows) == ['dense', '2:4', '1:4'], result.stdout
    assert float(rows['dense']['ratio']) == 1.0
    dense_ms = float(rows['dense']['ms'])
    for row in rows.values():
        rate, ms = float(row['rate']), float(row['ms'])
        assert abs(rate - 2 / (ms / 1e3)) <= 0.01 * rate + 0.01  # batch 2
        assert abs(float(row['ratio']) - ms / dense_ms) <= 0.002 + \
            0.01 * ms / dense_ms
        hours = 1281167 / rate / 3600
        assert abs(float(row['hours']) - hours) <= 0.01 * hours + 0.01
