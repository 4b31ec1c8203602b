"""Two processes (torchrun, gloo on CPU) train with identical masks, equal
to those of one process with the same global batch."""
import os
import os.path as osp
import socket
import subprocess
import sys

import torch

TESTS = osp.dirname(osp.dirname(osp.abspath(__file__)))
WORKER = osp.join(TESTS, 'dist_worker.py')


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def train(launcher: list, work_dir, batch_size: int) -> None:
    env = dict(os.environ, PYTHONPATH=TESTS, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, *launcher, WORKER,
         str(work_dir),
         str(batch_size)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_two_gloo_ranks_match_each_other_and_single_process(tmp_path):
    torchrun = [
        '-m', 'torch.distributed.run', '--nproc_per_node', '2',
        '--master_addr', '127.0.0.1', '--master_port',
        str(free_port())
    ]
    train(torchrun, tmp_path / 'dist', batch_size=2)
    train([], tmp_path / 'single', batch_size=4)

    rank0, rank1, single = (torch.load(tmp_path / sub /
                                       f'result_rank{rank}.pth')
                            for sub, rank in (('dist', 0), ('dist', 1),
                                              ('single', 0)))
    assert set(rank0['masks']) == {'conv', 'head'}
    for name, mask in rank0['masks'].items():
        assert torch.equal(mask, rank1['masks'][name]), name
        assert torch.equal(mask, single['masks'][name]), name
    for key, value in rank0['state_dict'].items():
        assert torch.equal(value, rank1['state_dict'][key]), key
        # same samples per step, gradients averaged across ranks
        torch.testing.assert_close(value, single['state_dict'][key])
