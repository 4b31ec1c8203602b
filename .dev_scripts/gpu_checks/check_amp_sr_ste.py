"""GPU check of AmpSRSTEOptimWrapper: real CUDA autocast and loss scaling.

CI has no GPU, so the unit tests drive the AMP wrapper with a CPU gradient
scaler. This script runs the real path on a CUDA device: the same small
sparse model steps once with ``AmpSRSTEOptimWrapper`` (dynamic loss scale,
fp16 autocast) and once with ``SRSTEOptimWrapper`` in fp32. The SR-STE term
must be added to the unscaled gradient: with a loss scale of 2**16 a wrongly
scaled term would be 65536 times too large or small, far outside the
tolerance that fp16 rounding needs. Prints PASS/FAIL, exits non-zero on
failure.

    python .dev_scripts/gpu_checks/check_amp_sr_ste.py
"""
import copy
import sys

import torch
import torch.nn.functional as F
from torch import nn

import mmnm  # noqa: F401
from mmnm.conversion import sparsify_model
from mmnm.engine import AmpSRSTEOptimWrapper, SRSTEOptimWrapper


def main() -> int:
    if not torch.cuda.is_available():
        print('SKIP: no CUDA device')
        return 0
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(32 * 8 * 8, 8)).cuda()
    sparsify_model(model, '2:4')
    inputs = torch.randn(4, 16, 8, 8, device='cuda')
    targets = torch.randn(4, 8, device='cuda')
    lambda_w = 0.5  # large, so that the SR term dominates the update

    results = {}
    for name, wrapper_type, kwargs in (('fp32', SRSTEOptimWrapper, {}),
                                       ('amp', AmpSRSTEOptimWrapper,
                                        dict(
                                            loss_scale=dict(
                                                init_scale=2.**16)))):
        net = copy.deepcopy(model)
        wrapper = wrapper_type(
            optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
            lambda_w=lambda_w,
            **kwargs)
        with wrapper.optim_context(net):
            loss = F.mse_loss(net(inputs).float(), targets)
        wrapper.update_params(loss)
        results[name] = [p.detach().clone() for p in net.parameters()]
        if name == 'amp':
            print(
                f'loss scale after the step: {wrapper.loss_scaler.get_scale()}'
            )

    worst = max(
        ((a - b).abs().max() / (b - a0).abs().max().clamp_min(1e-12)).item()
        for a, b, a0 in zip(results['amp'], results['fp32'],
                            model.parameters()))
    print(
        f'largest AMP-vs-fp32 difference, relative to the update: {worst:.3g}')
    ok = worst < 0.05
    print('PASS' if ok else 'FAIL')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
