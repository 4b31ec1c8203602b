"""One N:M mask per optimizer step and per evaluation in mmengine's real
Runner, with gradient accumulation, EMAHook swapping weights in and out
through ``.data``, and a frozen layer that a hook rewrites through
``.data`` after every iteration (as mean-teacher hooks do). Every forward
runs on the mask of the weights it uses (``ForwardRecorder``)."""
import copy

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.runner import Runner
from nm_reference import STEP_COMPUTES_MASKS, ForwardRecorder
from toy_models import toy_runner_cfg


class RecordForwards(Hook):
    """Attaches a ForwardRecorder once the model is sparse."""

    priority = 'LOWEST'

    def before_train(self, runner) -> None:
        self.recorder = ForwardRecorder(runner.model)


class RewriteFrozenHead(Hook):
    """Moves the frozen head's weight through ``.data`` after every
    iteration, as a mean-teacher update does."""

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        head = runner.model.head
        head.weight.data.copy_(torch.randn_like(head.weight))


def run_cfg(work_dir: str, **model) -> Config:
    loader = dict(
        dataset=dict(type='ToyDataset', length=12, seed=1),
        batch_size=4,
        num_workers=0,
        sampler=dict(type='DefaultSampler', shuffle=False))
    cfg = toy_runner_cfg(
        work_dir,
        max_iters=8,
        model=dict(type='ToyConvNet', **model),
        val_dataloader=loader,
        val_cfg=dict(),
        val_evaluator=dict(type='ToyMSE'),
        test_dataloader=copy.deepcopy(loader),
        test_cfg=dict(),
        test_evaluator=dict(type='ToyMSE'))
    cfg['train_cfg']['val_interval'] = 4
    cfg['optim_wrapper']['accumulative_counts'] = 2
    # an average far from the raw weights: EMA and raw masks differ
    cfg['custom_hooks'].append(dict(type='EMAHook', momentum=0.2))
    cfg['default_hooks']['checkpoint'] = None
    return Config(cfg)


def test_masks_once_per_step_and_evaluation_with_ema(tmp_path, mask_calls):
    runner = Runner.from_cfg(run_cfg(str(tmp_path)))
    forwards = RecordForwards()
    runner.register_hook(forwards)
    runner.train()
    runner.test()
    records = forwards.recorder.records
    train = [r for r in records if r[1]]
    evaluation = [r for r in records if not r[1]]
    # 8 micro-batches, 2 validations and 1 test of 3 batches, 2 layers
    assert (len(train), len(evaluation)) == (2 * 8, 2 * 3 * 3)
    # one per optimizer step (accumulation 2) and one per evaluation;
    # where the fused SGD step computes them, also the first forward's and
    # one after the validation in the middle of training (validation
    # invalidates the masks: the EMA hook swaps the weights through .data)
    per_layer = 4 + 3 + (2 if STEP_COMPUTES_MASKS else 0)
    assert mask_calls == {"layer 'conv'": per_layer, "layer 'head'": per_layer}
    # the evaluations ran on the EMA weights' masks, not the raw ones
    last_train = {}
    differs = False
    for name, training, mask in records:
        if not training and not torch.equal(mask, last_train[name]):
            differs = True
        if training:
            last_train[name] = mask
    assert differs


def test_untrained_layer_rewritten_by_a_hook(tmp_path, mask_calls):
    runner = Runner.from_cfg(run_cfg(str(tmp_path), frozen_head=True))
    forwards = RecordForwards()
    runner.register_hook(forwards)
    runner.register_hook(RewriteFrozenHead())
    runner.train()
    assert len(forwards.recorder.records) == 2 * 8 + 2 * 2 * 3
    # the rewritten head after every iteration; the conv after every step
    # (where the fused SGD step computes it, also at the first forward and
    # after the mid-run validation)
    conv = 4 + 2 + (2 if STEP_COMPUTES_MASKS else 0)
    assert mask_calls == {"layer 'conv'": conv, "layer 'head'": 8 + 2}
