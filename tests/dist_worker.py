"""Train ToyConvNet N:M sparse for a few iterations and save its masks and
weights; run under torchrun for the distributed test, or plainly for the
single-process reference.

    python dist_worker.py WORK_DIR BATCH_SIZE_PER_PROCESS
"""
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config
from mmengine.dist import get_rank
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from toy_models import toy_runner_cfg

from mmnm.layers import NMSparseMixin
from mmnm.utils import prepare_cpu_distributed


def main() -> None:
    work_dir, batch_size = sys.argv[1], int(sys.argv[2])
    cfg = toy_runner_cfg(
        work_dir,
        max_iters=4,
        model=dict(type='ToyConvNet', dtype='float64'),
        launcher='pytorch' if 'RANK' in os.environ else 'none')
    cfg['train_dataloader']['batch_size'] = batch_size
    prepare_cpu_distributed(cfg)
    runner = Runner.from_cfg(Config(cfg))
    runner.train()
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    torch.save(
        dict(
            masks={
                n: m.mask
                for n, m in model.named_modules()
                if isinstance(m, NMSparseMixin)
            },
            state_dict=model.state_dict()),
        osp.join(work_dir, f'result_rank{get_rank()}.pth'))


if __name__ == '__main__':
    main()
