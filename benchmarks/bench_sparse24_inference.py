"""2:4 sparse inference vs dense, measured side by side in one run.

1. Correctness (every machine): a 2:4 ResNet-50 (mmdet's; torchvision's
   where mmdet cannot be imported) and the Faster R-CNN of
   configs/faster_rcnn_r50_2-4.py, converted with convert_to_sparse24,
   against their masked dense models.
2. The GEMM shapes of ResNet-50's sparse convs at batch 1 and a large
   batch, derived from the model (on the meta device, so also on CPUs).
3. GPU only (CUDA, capability >= 8.0): for fp16 and bf16, dense
   ``F.linear`` vs the 2:4 GEMM of each shape (each sparse backend), the
   ResNet-50 backbone (dense channels_last cuDNN vs converted), and a full
   Faster R-CNN forward (autocast; dense vs converted). Dense and sparse
   runs alternate round by round; the table gives medians and
   dense/sparse speedups (> 1: sparse faster). The backend that actually
   ran is recorded: a sparse column reads n/a where its kernel is not
   available for a shape (e.g. CUTLASS off sm8x) or fell back to dense, and
   the model tables list the backends their 2:4 layers ran. A GEMM round
   repeats each call for 1 ms or more (a single small GEMM takes less time
   than the host's timer and sync around it); the 2:4 columns time the
   layer, its Python included, as inference runs it.

A failed check or part is reported with its traceback and makes the exit
status 1; the later parts still run.

    python benchmarks/bench_sparse24_inference.py [--batches 1 64] \
        [--rounds 20]

On a machine without such a GPU, part 3 is skipped with a message.
"""
import argparse
import copy
import math
import os.path as osp
import statistics
import sys
import traceback
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from bench_models import resnet_backbone
from bench_timing import time_calls
from torch import nn

import mmnm
from mmnm.conversion import export_state_dict, sparsify_model
from mmnm.deploy import (Sparse24Conv2d, Sparse24Linear, clear_sparse24_caches,
                         convert_to_sparse24, kernel_backends,
                         sparse24_backend)
from mmnm.deploy.lowering import conv_output_size
from mmnm.utils import relative_error

REPO = osp.dirname(osp.dirname(osp.abspath(mmnm.__file__)))
FRCNN = osp.join(REPO, 'configs', 'faster_rcnn_r50_2-4.py')
DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}
Shape = Tuple[int, int, int]  # (rows M, reduction K, out)


def build_resnet50() -> nn.Module:
    """The ResNet-50 backbone (mmdet's or torchvision's, see
    :func:`resnet_backbone`) in eval mode."""
    torch.manual_seed(0)
    model, _ = resnet_backbone(50)
    model.eval()  # mmdet's ResNet.train returns None
    return model


def as_tuple(outputs) -> Tuple[torch.Tensor, ...]:
    return tuple(outputs) if isinstance(outputs, (tuple, list)) \
        else (outputs, )


def frcnn_reason() -> Optional[str]:
    """Why the Faster R-CNN parts cannot run here, or ``None``."""
    try:
        import mmcv.ops  # noqa: F401 (RoIAlign, nms)
        import mmdet.models  # noqa: F401
    except ImportError as err:
        return f'mmdet with mmcv ops not importable ({err})'
    return None


def gemm_shapes(model: nn.Module, batch: int,
                size: Tuple[int, int]) -> Dict[Shape, int]:
    """``{(M, K, out): count}`` of the 2:4-eligible convs of ``model``
    for an input ``(batch, 3, *size)``, from a forward on the meta device
    (no memory, no compute)."""
    meta = copy.deepcopy(model).to('meta')
    shapes: Dict[Shape, int] = {}

    def hook(conv, inputs, _):
        x = inputs[0]
        out_h, out_w = conv_output_size(
            tuple(x.shape[2:]), conv.kernel_size, conv.stride, conv.padding,
            conv.dilation)
        key = (x.shape[0] * out_h * out_w, conv.weight[0].numel(),
               conv.out_channels)
        shapes[key] = shapes.get(key, 0) + 1

    handles = [
        m.register_forward_hook(hook) for m in meta.modules()
        if type(m) is nn.Conv2d and m.in_channels % 4 == 0
    ]
    with torch.no_grad():
        meta(torch.empty(batch, 3, *size, device='meta'))
    for handle in handles:
        handle.remove()
    return shapes


def alternate(runs: Dict[str, Callable[[], None]],
              rounds: int,
              warmup: int = 3,
              min_round: float = 0.0) -> Dict[str, float]:
    """Median seconds per call of each run, the runs alternating round by
    round; each round repeats a run's call as often as the fastest run
    needs to last ``min_round`` seconds (at most 200 times)."""
    for run in runs.values():
        for _ in range(warmup):
            run()
    torch.cuda.synchronize()
    calls = 1
    if min_round > 0:
        fastest = min(time_calls(run) for run in runs.values())
        calls = max(1, min(200, math.ceil(min_round / max(fastest, 1e-7))))
    times: Dict[str, List[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            times[name].append(time_calls(run, calls))
    return {name: statistics.median(t) for name, t in times.items()}


def table(header: List[str], rows: List[List[str]]) -> str:
    widths = [
        max(len(str(r[i])) for r in rows + [header])
        for i in range(len(header))
    ]
    lines = [
        '  '.join(str(c).rjust(w) for c, w in zip(header, widths)),
        '  '.join('-' * w for w in widths)
    ]
    lines += [
        '  '.join(str(c).rjust(w) for c, w in zip(row, widths)) for row in rows
    ]
    return '\n'.join(lines)


# --------------------------------------------------------------------------
# 1. correctness
# --------------------------------------------------------------------------
@torch.no_grad()
def check_resnet50(device: torch.device, size: int) -> None:
    masked = build_resnet50()
    sparsify_model(masked, '2:4')
    masked.to(device)
    x = torch.randn(2, 3, size, size, device=device)
    reference = as_tuple(masked(x))
    for name, dtype in DTYPES.items():
        model = copy.deepcopy(masked)
        report = convert_to_sparse24(model, dtype, logger=None)
        errors = [
            relative_error(o, r)
            for o, r in zip(as_tuple(model(x)), reference)
        ]
        backends = {
            m.backend
            for m in model.modules()
            if isinstance(m, (Sparse24Conv2d, Sparse24Linear))
        }
        source = type(masked).__module__.split('.')[0]
        print(f'ResNet-50 ({source}) {name}: '
              f'{len(report.sparse_layers)} layers 2:4 '
              f'({", ".join(sorted(backends))}); max relative error of the '
              f'outputs vs masked fp32: {max(errors):.2e}')
        assert max(errors) < (1e-2 if dtype == torch.float16 else 6e-2)


def build_frcnn(size: Tuple[int, int], device: torch.device):
    """The masked Faster R-CNN of the 2:4 config and a preprocessed input."""
    from mmdet.testing import demo_mm_inputs
    from mmengine.config import Config

    from mmnm.apis import build_model, config_sparsity
    cfg = Config.fromfile(FRCNN)
    torch.manual_seed(0)
    model = build_model(cfg)
    sparsify_model(model, **config_sparsity(cfg))
    model.to(device).eval()
    data = demo_mm_inputs(
        batch_size=1, image_shapes=(3, *size), num_items=[2], num_classes=80)
    return model, model.data_preprocessor(data, False)


@torch.no_grad()
def check_frcnn(device: torch.device, size: Tuple[int, int]) -> None:
    masked, data = build_frcnn(size, device)
    model = copy.deepcopy(masked)
    report = convert_to_sparse24(model, torch.float16, logger=None)
    reference = masked.extract_feat(data['inputs'])
    feats = model.extract_feat(data['inputs'])
    errors = [relative_error(o, r) for o, r in zip(feats, reference)]
    # the RoI head on each model's own features, from the same boxes
    from mmdet.structures.bbox import bbox2roi
    h, w = size
    rois = bbox2roi([
        torch.tensor([[0., 0., w / 2, h / 2], [w / 4, h / 8, w - 1., h / 2]],
                     device=device)
    ])
    want = masked.roi_head._bbox_forward(reference, rois)['cls_score']
    got = model.roi_head._bbox_forward(feats, rois)['cls_score']
    roi_error = relative_error(got, want)
    print(f'Faster R-CNN fp16: {len(report.sparse_layers)}/'
          f'{len(report.layers)} layers 2:4; max relative error vs masked '
          f'fp32 of the FPN features: {max(errors):.2e}, of the RoI head '
          f'scores: {roi_error:.2e}')
    assert max(errors) < 1e-2 and roi_error < 2e-2


# --------------------------------------------------------------------------
# 3. GPU timings
# --------------------------------------------------------------------------
def random_24(out: int, k: int, device, dtype) -> nn.Linear:
    from mmnm.ops import nm_mask
    linear = nn.Linear(k, out, bias=False)
    with torch.no_grad():
        linear.weight.mul_(nm_mask(linear.weight, 2, 4))
    return linear.to(device)


#: The sparse GEMM backends, one column pair each in the GEMM table.
SPARSE_BACKENDS = ('cusparselt', 'cutlass')


@torch.no_grad()
def bench_gemms(shapes: Dict[int, Dict[Shape, int]], rounds: int,
                device: torch.device) -> None:
    rows = []
    for name, dtype in DTYPES.items():
        for batch, batch_shapes in shapes.items():
            for (m, k, out), count in sorted(batch_shapes.items()):
                rows.append([name, batch, m, k, out, count] +
                            _bench_gemm(m, k, out, dtype, rounds, device))
    header = ['dtype', 'batch', 'M', 'K', 'out', 'convs', 'dense ms']
    for backend in SPARSE_BACKENDS:
        header += [f'{backend} ms', 'speedup']
    print('GEMMs of ResNet-50 (y = x W^T, x: M x K, W: out x K 2:4; n/a: '
          'kernel not available here or fell back to dense)')
    print(table(header, rows))


def _bench_gemm(m: int, k: int, out: int, dtype: torch.dtype, rounds: int,
                device: torch.device) -> List[str]:
    """The dense time and, per sparse backend, its time and speedup (n/a
    where it is not available or did not run)."""
    dense = random_24(out, k, device, dtype)
    sparse = Sparse24Linear.compress(dense, dtype)
    weight = dense.weight.to(dtype)
    x = torch.randn(m, k, device=device, dtype=dtype)
    available = kernel_backends(device, dtype, out, k)
    ran: Dict[str, set] = {backend: set() for backend in available}
    runs = {'dense': lambda: F.linear(x, weight)}
    for backend in available:
        runs[backend] = (lambda b=backend: _with_backend(b, sparse, x, ran))
    times = alternate(runs, rounds, min_round=1e-3)
    row = [f'{1e3 * times["dense"]:.3f}']
    for backend in SPARSE_BACKENDS:
        if backend not in available:
            row += ['n/a', '']
        elif ran[backend] != {backend}:  # the kernel failed: dense ran
            row += [f'n/a (ran {",".join(sorted(ran[backend]))})', '']
        else:
            row += [
                f'{1e3 * times[backend]:.3f}',
                f'{times["dense"] / times[backend]:.2f}'
            ]
    return row


def _with_backend(backend: str, layer: Sparse24Linear, x: torch.Tensor,
                  ran: Dict[str, set]) -> torch.Tensor:
    with sparse24_backend(backend):
        y = layer(x)
    ran[backend].add(layer.backend)
    return y


def ran_backends(model: nn.Module) -> str:
    """The backends the 2:4 layers of ``model`` ran last, with counts."""
    counts: Dict[str, int] = {}
    for module in model.modules():
        if isinstance(module, (Sparse24Conv2d, Sparse24Linear)):
            counts[str(
                module.backend)] = counts.get(str(module.backend), 0) + 1
    return ' '.join(f'{name}:{n}' for name, n in sorted(counts.items()))


def sparse_columns(times: Dict[str, float], backends: str) -> List[str]:
    """The 2:4 time and speedup, n/a where no layer ran a sparse kernel
    (a dense time is never shown as a sparse one)."""
    if not any(not b.startswith(('dense:', 'None:'))
               for b in backends.split()):
        return ['n/a', '']
    return [
        f'{1e3 * times["sparse"]:.2f}',
        f'{times["dense"] / times["sparse"]:.2f}'
    ]


@torch.no_grad()
def bench_resnet50(batches: List[int], size: int, rounds: int,
                   device: torch.device) -> None:
    masked = build_resnet50()
    sparsify_model(masked, '2:4')
    dense = build_resnet50()
    dense.load_state_dict(export_state_dict(masked))
    rows = []
    for name, dtype in DTYPES.items():
        rows += _bench_resnet50_dtype(dense, masked, name, dtype, batches,
                                      size, rounds, device)
        clear_sparse24_caches()
    print(f'ResNet-50 backbone forward, {size}x{size} (dense: cuDNN '
          'channels_last; 2:4: auto backend; backends: what the 2:4 layers '
          'ran)')
    print(
        table(['dtype', 'batch', 'dense ms', '2:4 ms', 'speedup', 'backends'],
              rows))


def _bench_resnet50_dtype(dense: nn.Module, masked: nn.Module, name: str,
                          dtype: torch.dtype, batches: List[int], size: int,
                          rounds: int, device: torch.device) -> List[list]:
    dense_model = copy.deepcopy(dense).to(
        device, dtype).to(memory_format=torch.channels_last)
    sparse_model = copy.deepcopy(masked)
    # a bare backbone: channels_last outputs all the way, like the dense one
    convert_to_sparse24(sparse_model, dtype, channels_last=True, logger=None)
    sparse_model.to(device, dtype)
    rows = []
    for batch in batches:
        x = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
        x = x.to(memory_format=torch.channels_last)
        times = alternate(
            {
                'dense': lambda: dense_model(x),
                'sparse': lambda: sparse_model(x)
            }, rounds)
        backends = ran_backends(sparse_model)
        rows.append([name, batch, f'{1e3 * times["dense"]:.2f}'] +
                    sparse_columns(times, backends) + [backends])
    return rows


@torch.no_grad()
def bench_frcnn(size: Tuple[int, int], rounds: int,
                device: torch.device) -> None:
    from mmengine.config import Config

    from mmnm.apis import build_model
    masked, data = build_frcnn(size, device)
    # the dense baseline: plain layers holding the masked weights
    dense = build_model(Config.fromfile(FRCNN)).to(device).eval()
    dense.load_state_dict(export_state_dict(masked))
    rows = []
    for name, dtype in DTYPES.items():
        rows.append(
            _bench_frcnn_dtype(dense, masked, data, name, dtype, rounds))
        clear_sparse24_caches()
    print(f'Faster R-CNN R50-FPN predict, batch 1, {size[0]}x{size[1]} '
          '(autocast; the 2:4 layers run in the same dtype)')
    print(table(['dtype', 'dense ms', '2:4 ms', 'speedup', 'backends'], rows))


def _bench_frcnn_dtype(dense: nn.Module, masked: nn.Module, data: dict,
                       name: str, dtype: torch.dtype, rounds: int) -> list:
    sparse = copy.deepcopy(masked)
    convert_to_sparse24(sparse, dtype, logger=None)
    inputs, samples = data['inputs'], data['data_samples']

    def run(model):
        with torch.autocast('cuda', dtype=dtype):
            model.predict(inputs, copy.deepcopy(samples))

    times = alternate(
        {
            'dense': lambda: run(dense),
            'sparse': lambda: run(sparse)
        }, rounds)
    backends = ran_backends(sparse)
    return [name, f'{1e3 * times["dense"]:.2f}'] + \
        sparse_columns(times, backends) + [backends]


def gpu_reason() -> Optional[str]:
    """Why the GPU part cannot run here, or ``None``."""
    if not torch.cuda.is_available():
        return 'no CUDA device'
    device = torch.device('cuda')
    if not kernel_backends(device, torch.float16, 64, 64):
        cap = torch.cuda.get_device_capability(device)
        return (f'{torch.cuda.get_device_name(device)} (sm{cap[0]}{cap[1]}) '
                f'has no 2:4 kernels in torch {torch.__version__}')
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batches', type=int, nargs='+', default=[1, 64])
    parser.add_argument('--size', type=int, default=224)
    parser.add_argument('--frcnn-size', type=int, nargs=2, default=[800, 1344])
    parser.add_argument('--rounds', type=int, default=20)
    parser.add_argument('--skip-frcnn', action='store_true')
    args = parser.parse_args()

    reason = gpu_reason()
    device = torch.device('cpu' if reason else 'cuda')
    print(f'torch {torch.__version__}, device: '
          f'{torch.cuda.get_device_name() if reason is None else "cpu"}')
    if not args.skip_frcnn and frcnn_reason() is not None:
        print(f'Faster R-CNN parts skipped: {frcnn_reason()}')
        args.skip_frcnn = True
    print('--- correctness: converted vs masked dense ---')
    failed = not _checked(check_resnet50, device, 64 if reason else args.size)
    if not args.skip_frcnn:
        failed |= not _checked(check_frcnn, device,
                               (64, 64) if reason else tuple(args.frcnn_size))

    resnet = build_resnet50()
    shapes = {
        batch: gemm_shapes(resnet, batch, (args.size, args.size))
        for batch in args.batches
    }
    if reason is not None:
        rows = [[batch, m, k, out, count] for batch, found in shapes.items()
                for (m, k, out), count in sorted(found.items())]
        print(f'--- GEMM shapes of ResNet-50\'s 2:4 convs, {args.size}x'
              f'{args.size} ---')
        print(table(['batch', 'M', 'K', 'out', 'convs'], rows))
        print(f'GPU part skipped: {reason}')
        return int(failed)
    print(f'--- timings, median of {args.rounds} alternating rounds ---')
    failed |= not _checked(bench_gemms, shapes, args.rounds, device)
    failed |= not _checked(bench_resnet50, args.batches, args.size,
                           args.rounds, device)
    if not args.skip_frcnn:
        failed |= not _checked(bench_frcnn, tuple(args.frcnn_size),
                               max(args.rounds // 2, 5), device)
    if failed:
        print('FAILED: see the tracebacks above')
    return int(failed)


def _checked(part: Callable, *args) -> bool:
    """Run one part; on an error print its traceback (the later parts
    still run) and return False."""
    try:
        part(*args)
    except Exception:
        traceback.print_exc(file=sys.stdout)
        print(f'{part.__name__} FAILED')
        return False
    return True


if __name__ == '__main__':
    sys.exit(main())
