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
    # the fp32 reference in full fp32 (no TF32 matmuls or convs)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    # a smooth activation: with ReLU, fp16 rounding flips a few outputs
    # near 0 to the other side, which moves the conv's gradient by up to
    # 11% of its largest entry with no sparsity at all (seen for 7 of 33
    # seeds); with tanh the AMP-vs-fp32 difference is about 6e-4
    model = nn.Sequential(
        nn.Conv2d(16, 32, 3, padding=1), nn.Tanh(), nn.Flatten(),
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
    ok = worst < 0.01  # 10x the fp16 rounding seen on the CPU
    print('PASS' if ok else 'FAIL')
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
