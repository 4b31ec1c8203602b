"""N:M mask speed: mmnm's selection-network mask vs a straightforward
argsort-and-scatter mask, on the conv weights of every ResNet-50 layer.

Both run side by side on the same tensors in one process; the script prints
per-layer times, the totals and their ratio, and checks that the masks are
identical. The GB/s column is the memory traffic of the pass a sparse layer
runs (read the weight, write the mask and the masked weight into a reused
buffer) per second, printed against the device's copy bandwidth (a large
device-to-device copy, measured here) and, on a GPU, its nominal peak.
ResNet-50's weights are small (at most 9.4 MB in fp32): on a GPU a call on
one takes a few microseconds of memory traffic against tens of launch,
Python and host-sync overhead, and the weight sits in the L2 cache between
calls. So on a GPU the script also times the mask of weights far larger
than the L2 cache, whose GB/s is the kernel's memory throughput.

    python benchmarks/bench_nm_mask.py [--pattern 2:4] [--repeats 5]
    python benchmarks/bench_nm_mask.py --device cuda   # the GPU check
    python benchmarks/bench_nm_mask.py --cpu-isa sse2  # the CPU kernel's
                                                       # SSE2 path (AVX2 is
                                                       # chosen where present)
"""
import argparse
import statistics
from typing import Callable, List, Optional, Tuple

import torch
from bench_models import resnet_backbone
from bench_timing import time_calls
from torch import Tensor, nn

from mmnm.ops import ext_status, nm_mask
from mmnm.ops.ext_loader import load_ext
from mmnm.pattern import NMPattern


def argsort_scatter_mask(weight: Tensor, n: int, m: int) -> Tensor:
    """The straightforward implementation: channel groups as rows (KRSC),
    a full stable argsort per row, scatter the top-n."""
    out, cin = weight.shape[:2]
    rows = weight.detach().movedim(1, -1).reshape(-1, m).abs()
    order = torch.argsort(rows, dim=1, descending=True, stable=True)
    keep = torch.zeros_like(
        rows, dtype=torch.bool).scatter_(1, order[:, :n], True)
    return keep.view(out, *weight.shape[2:], cin).movedim(-1, 1)


def resnet50_convs() -> List[Tuple[str, nn.Conv2d]]:
    torch.manual_seed(0)
    model, _ = resnet_backbone(50)
    if hasattr(model, 'init_weights'):  # mmdet's: its own initialisation
        model.init_weights()
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Conv2d)]


def best_time(fn: Callable[[], object], repeats: int, calls: int = 1) -> float:
    """Median seconds per call over ``repeats`` rounds of ``calls``."""
    fn()
    return statistics.median(time_calls(fn, calls) for _ in range(repeats))


def copy_bandwidth(device: torch.device, repeats: int) -> float:
    """Bytes per second of a 256 MiB device-to-device copy (read + write)."""
    src = torch.empty(64 << 20, device=device)
    dst = torch.empty_like(src)
    seconds = best_time(lambda: dst.copy_(src), repeats)
    return 2 * src.nbytes / seconds


def nominal_bandwidth(device: torch.device) -> Optional[float]:
    """A GPU's peak memory bandwidth in bytes/s, where torch reports its
    memory clock and bus width."""
    if device.type != 'cuda':
        return None
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, 'memory_clock_rate', None)
    bus_bits = getattr(props, 'memory_bus_width', None)
    if not clock_khz or not bus_bits:
        return None
    return 2 * clock_khz * 1e3 * bus_bits / 8  # double data rate


#: weights far larger than a GPU's L2 cache (fp32: 604 MB and 537 MB), a
#: 3x3 conv's (strided groups) and a 1x1 conv's (contiguous groups)
LARGE_SHAPES = ((4096, 4096, 3, 3), (16384, 8192, 1, 1))


def large_weight_lines(nm: NMPattern, device: torch.device, repeats: int,
                       copy: float, peak: Optional[float]) -> List[str]:
    """The kernel's throughput on :data:`LARGE_SHAPES` (mask + masked
    weight into a reused buffer), against the copy and nominal
    bandwidths."""
    lines = []
    for shape in LARGE_SHAPES:
        torch.manual_seed(0)
        weight = torch.randn(shape, device=device)
        out = torch.empty_like(weight)
        seconds = best_time(
            lambda w=weight, o=out: nm_mask(w, nm.n, nm.m, 'channel', None,
                                            True, o),
            repeats,
            calls=5)
        rate = weight.numel() * (2 * weight.element_size() + 1) / seconds
        line = (f'{"x".join(map(str, shape))} fp32 (larger than the L2 '
                f'cache): {1e3 * seconds:.3f} ms, {rate / 1e9:.1f} GB/s = '
                f'{rate / copy:.0%} of the measured copy bandwidth')
        if peak:
            line += f', {rate / peak:.0%} of the nominal'
        lines.append(line)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--pattern', default='2:4')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--cpu-isa',
        default='auto',
        choices=['auto', 'avx512', 'avx2', 'sse2', 'scalar'],
        help='instruction set of the compiled float32 M=4 CPU kernel')
    args = parser.parse_args()
    ext = load_ext()
    if ext is not None:
        ext.set_cpu_isa(args.cpu_isa)
    elif args.cpu_isa != 'auto':
        parser.error('--cpu-isa needs the compiled mmnm._ext')
    print(ext_status())
    nm = NMPattern.parse(args.pattern)
    device = torch.device(args.device)
    calls = 20 if device.type == 'cuda' else 1

    where = f'{torch.get_num_threads()} threads' if device.type == 'cpu' \
        else torch.cuda.get_device_name(device)
    print(f'{where}, pattern {nm}, median of {args.repeats}')
    print(f'{"layer":<28}{"weight":>18}{"mmnm ms":>10}{"GB/s":>8}'
          f'{"argsort ms":>12}{"ratio":>8}')
    ours_total = naive_total = traffic = 0.0
    for name, conv in resnet50_convs():
        weight = conv.weight.detach().to(device)
        shape = 'x'.join(map(str, weight.shape))
        if weight.shape[1] % nm.m:
            print(f'{name:<28}{shape:>18}   skipped: {weight.shape[1]} '
                  f'input channels not divisible by {nm.m}')
            continue
        if not torch.equal(
                nm_mask(weight, nm.n, nm.m),
                argsort_scatter_mask(weight, nm.n, nm.m)):
            raise AssertionError(f'{name}: masks differ')
        out = torch.empty_like(weight)
        ours = best_time(
            lambda: nm_mask(weight, nm.n, nm.m, 'channel', None, True, out),
            args.repeats, calls)
        naive = best_time(lambda: argsort_scatter_mask(weight, nm.n, nm.m),
                          args.repeats, calls)
        # read the weight, write the mask (1 byte) and the masked weight
        nbytes = weight.numel() * (2 * weight.element_size() + 1)
        ours_total += ours
        naive_total += naive
        traffic += nbytes
        print(f'{name:<28}{shape:>18}{1e3 * ours:>10.2f}'
              f'{nbytes / ours / 1e9:>8.1f}{1e3 * naive:>12.2f}'
              f'{naive / ours:>7.1f}x')
    print(f'{"total":<46}{1e3 * ours_total:>10.1f}'
          f'{traffic / ours_total / 1e9:>8.1f}{1e3 * naive_total:>12.1f}'
          f'{naive_total / ours_total:>7.1f}x')
    print(f'mmnm mask is {naive_total / ours_total:.2f}x faster than '
          'argsort-and-scatter (target >= 3x); masks identical')
    achieved = traffic / ours_total
    copy = copy_bandwidth(device, args.repeats)
    line = (f'mask + masked weight: {achieved / 1e9:.1f} GB/s over all '
            f'layers = {achieved / copy:.0%} of the measured copy bandwidth '
            f'({copy / 1e9:.1f} GB/s)')
    peak = nominal_bandwidth(device)
    if peak:
        line += f', {achieved / peak:.0%} of the nominal {peak / 1e9:.0f} GB/s'
    print(line)
    if device.type == 'cuda':
        print('the kernel on large weights (per-call overhead amortized, '
              'not in cache):')
        for line in large_weight_lines(nm, device, args.repeats, copy, peak):
            print(f'  {line}')


if __name__ == '__main__':
    main()
