"""Dense vs N:M (2:4 SR-STE) training cost, measured side by side in one run.

Three sections, each a training step timed for the dense and the sparse
version in alternating rounds (so that machine noise hits both alike),
reported as the ratio of the medians and the median of the paired ratios:

1. layers: one Conv2d / Linear of the demo models, ResNet-50 (batch 2,
   224x224) and a ViT-B block (2 x 197 tokens), trained alone (forward with
   an input that needs its gradient, backward, SGD step through
   OptimWrapper vs SRSTEOptimWrapper), each timed call repeating the step
   for 20 ms or more (shorter calls measured this VM's scheduling noise);
2. ResNet-50 (mmdet's, every conv but the 3-channel stem 2:4): forward,
   backward and SGD step, batch 2, 224x224;
3. the demo Mask R-CNN (configs/demo/mask-rcnn_r18_fpn_2-4_shapes-64x64.py
   vs its dense twin): ``model.train_step`` on one batch of the generated
   shapes data.

The sparse extra is split into its parts, each timed alone on the same
weights (for a layer: repeated on it, its data in cache as in its own
step; for a model: once per sparse layer over all of them in turn, as its
step runs them): the mask (``nm_mask``), the masked weight (what writing
``W * mask`` in the same pass adds), the straight-through weight of a
forward (cached-mask check and autograd node, forward and backward) and
the SR-STE term (where the wrapper fuses it into the SGD step, the time
of that fused step over torch's own fused SGD step on the same weight:
the cost of reading the mask). Where that step also computes the next
mask and masked weight (the forwards then compute none), "mask" is what
this adds to the fused step, both together (written past the caches
where the wrapper would: see ``SRSTEMixin.streams_next_masks``), and
"masked" is 0. "rest" is what the parts leave unexplained.

A layer row whose wrapper fuses the term and computes the next mask in
its SGD step also times, in the same rounds, the same step as its kernels
alone ("kernels", a ratio to dense; see :class:`KernelsStep`): the
straight-through weight, the op, backward, the fused SR-STE step with the
next mask, torch's step of the bias, and none of the layer's or the
wrapper's Python. It is the floor of training with a separate masked
weight on this machine; the 2:4 ratio's excess over it is mmnm's Python,
which a one-layer step runs with caches that its kernels have just
evicted. Over runs this floor moves as much as the rows (a one-layer
step's cache residency changes from process to process), so compare it
within a run.

Each row gives the 90% bootstrap interval of its ratio (the rounds drawn
with replacement); the last line tells the misses that it settles (the
whole interval above the target) from those that more rounds may turn. A
model row is followed by a control: an identical copy of the dense model
timed in the same rounds, whose ratio to dense shows what differences
this machine can resolve (on a busy 2-core CPU, a few percent), and by
whether its interval settles the target: on the 2-core VMs of these
sessions, whose step times drift by 10% from round to round, 16 rounds
give about +-5% and 60 rounds +-2%.

The last column counts minor page faults per step, dense/2:4: where a
step's tensors come from fresh pages rather than reused memory (glibc's
choice, depending on the run's history), the kernel faulting in and
zeroing them costs about as much as the step's kernels: one run here had
R50 layer4 at 8 ms dense without faults and 13-15 ms with 4700 per step,
and glibc's defaults gave the ResNet-50 step about 25000 per step on both
sides (its SGD step alone: 20 ms instead of 11). So by default the script
tells glibc to keep freed memory (:func:`retain_freed_memory`), as a
training job's allocator (tcmalloc, jemalloc) would;
``--release-freed-memory`` leaves it at its defaults.

Both sides use the same ``torch.optim.SGD``, by default ``fused=True``
(one pass per tensor; ``--sgd plain`` for the default implementation,
several passes). On CPU the SR-STE wrapper steps each sparse weight with
its own fused kernel, so with ``--sgd plain`` part of the 2:4 step's gain
is a faster optimizer that dense training would get from ``fused=True``
as well: compare at ``fused`` for the cost of N:M itself.

    python benchmarks/bench_train_cost.py [--rounds 15] [--model-rounds 16]
    python benchmarks/bench_train_cost.py --tiny   # seconds; CI runs this
    # the GPU check: ResNet-50 with AMP, batch 32, channels_last
    python benchmarks/bench_train_cost.py --sections resnet --device cuda \
        --amp --channels-last --batch 32
"""
import argparse
import copy
import ctypes
import math
import random
import statistics
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

try:
    import resource
except ImportError:  # not on Windows
    resource = None

import torch
import torch.nn.functional as F
from bench_models import resnet_backbone
from bench_timing import time_calls
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from torch import nn

from mmnm.conversion import find_sparse_layers, sparsify_model
from mmnm.engine import AmpSRSTEOptimWrapper, SRSTEOptimWrapper
from mmnm.layers import NMSparseMixin, SparseConv, SparseLinear
from mmnm.ops import (MaskedWeightBuffer, add_sr_ste_term_,
                      fused_sgd_step_unavailable, nm_mask, sr_ste_sgd_step_,
                      straight_through)

LAMBDA_W = 2e-4
SGD_SETTINGS = dict(lr=1e-4, momentum=0.9, weight_decay=1e-4)
#: the torch.optim.SGD implementation both sides use (``--sgd``)
SGD_IMPLEMENTATIONS = {'fused': dict(fused=True), 'plain': {}}
sgd_implementation = 'fused'
TARGETS = {'layer': 1.10, 'resnet': 1.03, 'mask_rcnn': 1.05}

# (name, layer kind, constructor arguments, input shape)
LAYERS = [
    ('demo R18 layer1 3x3 64-64', 'conv', (64, 64, 3, 1, 1), (8, 64, 16, 16)),
    ('demo R18 layer3 3x3 256-256', 'conv', (256, 256, 3, 1, 1), (8, 256, 4,
                                                                  4)),
    ('demo mask head 3x3 64-64', 'conv', (64, 64, 3, 1, 1), (64, 64, 14, 14)),
    ('demo bbox fc 3136-256', 'linear', (3136, 256), (1024, 3136)),
    ('R50 layer1 3x3 64-64', 'conv', (64, 64, 3, 1, 1), (2, 64, 56, 56)),
    ('R50 layer3 1x1 1024-256', 'conv', (1024, 256, 1), (2, 1024, 14, 14)),
    ('R50 layer3 3x3 256-256', 'conv', (256, 256, 3, 1, 1), (2, 256, 14, 14)),
    ('R50 layer4 3x3 512-512', 'conv', (512, 512, 3, 1, 1), (2, 512, 7, 7)),
    ('ViT-B qkv 768-2304', 'linear', (768, 2304), (394, 768)),
    ('ViT-B fc1 768-3072', 'linear', (768, 3072), (394, 768)),
    ('ViT-B fc2 3072-768', 'linear', (3072, 768), (394, 3072)),
]
TINY_LAYERS = [
    ('tiny 3x3 16-16', 'conv', (16, 16, 3, 1, 1), (2, 16, 8, 8)),
    ('tiny fc 64-32', 'linear', (64, 32), (8, 64)),
]
PLAIN = {'conv': nn.Conv2d, 'linear': nn.Linear}
SPARSE = {'conv': SparseConv, 'linear': SparseLinear}


# ----------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------
def repeats_for(fn: Callable[[], None], seconds: float = 0.005) -> int:
    """How many calls of ``fn`` take at least ``seconds``."""
    fn()
    took = time_calls(fn)
    return max(1, math.ceil(seconds / max(took, 1e-9)))


#: glibc's mallopt parameters: the free memory at the top of the main heap
#: that is trimmed, the memory a heap keeps beyond its top (the threshold of
#: the other threads' heaps), the size from which allocations get their own
#: mmap
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
#: the values :func:`retain_freed_memory` sets them to
RETAINING_MALLOPTS = ((M_MMAP_THRESHOLD, 32 << 20),
                      (M_TRIM_THRESHOLD, 2**31 - 1), (M_TOP_PAD, 256 << 20))


def retain_freed_memory() -> bool:
    """Keep memory that the process frees for its next allocations (glibc:
    heap allocations up to 32 MB, the largest its ``mallopt`` allows; no
    trimming of the main heap, 256 MB kept at the top of the intra-op
    threads' heaps), so that a step reuses its last step's pages instead
    of the kernel faulting in and zeroing fresh ones. Otherwise which steps
    fault depends on glibc's dynamic thresholds and the run's history, a
    noise as large as the step's kernels on a small CPU. Both sides get the
    same allocator; False where the C library has no ``mallopt``."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError, TypeError):  # no glibc; Windows
        return False
    return all(mallopt(option, value) for option, value in RETAINING_MALLOPTS)


def minor_faults() -> int:
    """Page faults of this process so far that found no page in memory
    (fresh memory the kernel maps and zeroes); 0 where not reported."""
    if resource is None:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def side_by_side(
        steps: Dict[str, Callable[[], None]],
        rounds: int,
        repeats: int,
        faults: Optional[Dict[str, float]] = None) -> Dict[str, List[float]]:
    """Times of each step over ``rounds`` rounds, the order of the steps
    alternating from round to round; ``faults`` receives each step's
    minor page faults per call (which memory a step gets from the
    allocator can cost it more than its kernels: see :func:`report`).

    Each round starts with one untimed call, so that it times the steps of
    a training run rather than the hand-over from the other side: its
    caches, and its optimizer's step, which invalidates every N:M mask
    (any ``torch.optim`` step does: see :mod:`mmnm.layers.weight_updates`)
    where one optimizer would have let the SR-STE step compute the next
    mask."""
    times = {name: [] for name in steps}
    counts = {name: 0 for name in steps}
    names = list(steps)
    for index in range(rounds):
        for name in (names if index % 2 == 0 else names[::-1]):
            steps[name]()
            before = minor_faults()
            times[name].append(time_calls(steps[name], repeats))
            counts[name] += minor_faults() - before
    if faults is not None:
        faults.update({
            name: count / (rounds * repeats)
            for name, count in counts.items()
        })
    return times


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratios(times: Dict[str, List[float]]) -> Tuple[float, float, float, float]:
    """Dense median, sparse median, ratio of medians, median of the paired
    ratios (of the first two steps: dense and sparse)."""
    dense, sparse = list(times.values())[:2]
    paired = median([s / d for d, s in zip(dense, sparse)])
    return median(dense), median(sparse), median(sparse) / median(dense), \
        paired


def ratio_interval(times: Dict[str, List[float]],
                   level: float = 0.9,
                   draws: int = 2000) -> Optional[Tuple[float, float]]:
    """The ``level`` bootstrap interval of the ratio of medians (sparse
    over dense): the rounds drawn with replacement, a round's dense and
    sparse times together (they ran side by side); ``None`` for fewer
    than 4 rounds. Seeded: the same times give the same interval."""
    dense, sparse = list(times.values())[:2]
    count = len(dense)
    if count < 4:
        return None
    draw = random.Random(0)
    values = []
    for _ in range(draws):
        rounds = [draw.randrange(count) for _ in range(count)]
        values.append(
            median([sparse[i]
                    for i in rounds]) / median([dense[i] for i in rounds]))
    values.sort()
    tail = int(draws * (1 - level) / 2)
    return values[tail], values[draws - 1 - tail]


def settles(interval: Optional[Tuple[float, float]],
            target: float) -> Optional[bool]:
    """``True`` if the whole interval of the ratio meets ``target``,
    ``False`` if it lies above it, ``None`` if it spans it (or there is no
    interval)."""
    if interval is None:
        return None
    low, high = interval
    if high <= target:
        return True
    return False if low > target else None


def interval_verdict(interval: Tuple[float, float], target: float) -> str:
    """Whether an interval of the ratio settles the ``target``."""
    settled = settles(interval, target)
    if settled is True:
        return 'the target is met at this precision'
    if settled is False:
        return 'the target is missed at this precision'
    return ('this run does not resolve the target: more --model-rounds '
            'narrow the interval')


# ----------------------------------------------------------------------
# the parts of the sparse extra
# ----------------------------------------------------------------------
def part_times(layers: Sequence[NMSparseMixin],
               rounds: int,
               wrapper: OptimWrapper,
               sweep: bool = False) -> Dict[str, float]:
    """Seconds per step of each part of the sparse extra, summed over
    ``layers`` (medians of ``rounds``). Each part is timed on one layer at
    a time, repeated (its data hot in cache, as in a layer's own step), or
    with ``sweep`` once per layer over all of them in turn, as a model's
    step runs it (each layer's weight read from memory). Where ``wrapper``
    fuses the term into its SGD step, the SR-STE part is that fused step
    over torch's (on copies of the weights, writing the next masks past
    the caches where the wrapper would)."""
    fused_step = fuses_sgd_step(wrapper)
    stream = fused_step and wrapper.streams_next_masks()
    per_layer = []
    for layer in layers:
        weight = layer.weight.detach()
        nm = layer.nm
        grad = torch.randn_like(weight)
        mask = nm_mask(weight, nm.n, nm.m, nm.orientation)
        layer.update_mask()
        out = torch.empty_like(weight)  # laid out as the layer's buffer
        parts = {}
        if fused_step and fused_sgd_step_unavailable(weight, grad, mask,
                                                     out) is None:
            param = nn.Parameter(weight.clone())
            param.grad = grad
            torch_sgd = sgd(param)
            torch_sgd.step()  # allocates its momentum buffer
            copy, buffer = weight.clone(), torch.zeros_like(weight)

            def sr_ste_step(copy=copy,
                            grad=grad,
                            mask=mask,
                            buffer=buffer,
                            remask=None):
                sr_ste_sgd_step_(
                    copy,
                    grad,
                    mask,
                    buffer,
                    LAMBDA_W,
                    **SGD_SETTINGS,
                    remask=remask,
                    stream_remask=stream)

            parts.update(sgd=torch_sgd.step, sr_ste=sr_ste_step)
            if steps_compute_masks(layer):
                remask = MaskedWeightBuffer(copy, nm.n, nm.m, nm.orientation)
                parts['sr_ste+mask'] = \
                    lambda step=sr_ste_step, remask=remask: step(remask=remask)
        else:
            parts['sr_ste'] = lambda grad=grad, weight=weight, mask=mask: \
                add_sr_ste_term_(grad, weight, mask, LAMBDA_W)

        def ste_step(layer=layer, grad=grad):
            layer.weight.grad = None
            layer.ste_weight().backward(grad)

        def leaf_step(layer=layer, grad=grad):
            layer.weight.grad = None
            layer.weight.backward(grad)

        per_layer.append({
            'mask':
            lambda weight=weight, nm=nm: nm_mask(weight, nm.n, nm.m, nm.
                                                 orientation),
            'mask+masked':
            lambda weight=weight, nm=nm, out=out: nm_mask(
                weight, nm.n, nm.m, nm.orientation, None, True, out),
            'ste':
            ste_step,
            'leaf':
            leaf_step,
            **parts
        })
    if sweep:
        # one sweep per set of parts (layers whose weights the fused step
        # cannot take have no "sgd" part)
        by_parts = {}
        for steps in per_layer:
            by_parts.setdefault(tuple(steps), []).append(steps)
        groups = [{
            name: (lambda name=name, members=members:
                   [steps[name]() for steps in members])
            for name in names
        } for names, members in by_parts.items()]
    else:
        groups = per_layer
    parts = {name: 0.0 for name in ('mask', 'masked', 'ste', 'sr_ste')}
    for steps in groups:
        repeats = 1 if sweep else repeats_for(steps['mask+masked'], 0.002)
        times = {
            name: median(values)
            for name, values in side_by_side(steps, rounds, repeats).items()
        }
        if 'sr_ste+mask' in times:  # what computing it adds to the step
            parts['mask'] += max(0.0, times['sr_ste+mask'] - times['sr_ste'])
        else:
            parts['mask'] += times['mask']
            parts['masked'] += max(0.0, times['mask+masked'] - times['mask'])
        parts['ste'] += max(0.0, times['ste'] - times['leaf'])
        parts['sr_ste'] += max(0.0, times['sr_ste'] - times.get('sgd', 0.0))
    for layer in layers:
        layer.weight.grad = None
    return parts


# ----------------------------------------------------------------------
# steps
# ----------------------------------------------------------------------
def sgd(model: Union[nn.Module, nn.Parameter]) -> torch.optim.Optimizer:
    params = [model] if isinstance(model, nn.Parameter) else \
        model.parameters()
    return torch.optim.SGD(params, **SGD_SETTINGS,
                           **SGD_IMPLEMENTATIONS[sgd_implementation])


def steps_compute_masks(layer: NMSparseMixin) -> bool:
    """Whether the SR-STE wrapper's fused SGD step computes ``layer``'s
    next mask (and masked weight) with the update, not the next forward."""
    return layer.mask_buffer_for_step() is not None


def fuses_sgd_step(wrapper: OptimWrapper) -> bool:
    """Whether an SR-STE wrapper fuses the term into its SGD step."""
    return isinstance(wrapper, SRSTEOptimWrapper) and \
        wrapper.why_not_fused() is None


def wrappers(dense: nn.Module,
             sparse: nn.Module,
             amp: bool = False) -> Tuple[OptimWrapper, SRSTEOptimWrapper]:
    """Dense and SR-STE optim wrappers (their AMP versions with ``amp``)."""
    sparse_type = AmpSRSTEOptimWrapper if amp else SRSTEOptimWrapper
    return dense_optim_wrapper(dense, amp), sparse_type(
        optimizer=sgd(sparse), lambda_w=LAMBDA_W)


def dense_optim_wrapper(model: nn.Module, amp: bool = False) -> OptimWrapper:
    """The dense side's optim wrapper (the AMP one with ``amp``)."""
    return AmpOptimWrapper(optimizer=sgd(model)) if amp else \
        OptimWrapper(sgd(model))


def backward_step(model: nn.Module, wrapper: OptimWrapper,
                  run: Callable[[], Sequence[torch.Tensor]],
                  grads: Sequence[torch.Tensor]) -> Callable[[], None]:
    """Forward (inside the wrapper's context), backward of ``grads``, step
    (with the SR-STE term for an SR-STE wrapper)."""

    def step() -> None:
        with wrapper.optim_context(model):
            outputs = run()
        torch.autograd.backward(outputs, grads)
        wrapper.step()
        wrapper.zero_grad()

    return step


def layer_pair(kind: str, args: tuple) -> Tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    dense = PLAIN[kind](*args)
    sparse = SPARSE[kind](*args, n=2, m=4, name='layer')
    sparse.load_state_dict(dense.state_dict())
    return dense, sparse


class KernelsStep:
    """The 2:4 layer's training step as its kernels alone, on a copy of
    its weights: the straight-through weight of the masked weight that the
    last step computed, the op, backward, the fused SR-STE SGD step that
    also computes the next mask and masked weight (into the other of two
    buffers, as the layer swaps them; past the caches if ``stream``), and
    torch's SGD step of the bias. None of the layer's or the wrapper's
    Python runs (module call, cached-mask checks, schedule, fusion
    checks), nor the optim wrapper's that the dense side runs too: a lower
    bound of what training with a separate masked weight costs, whose
    excess over dense is that design's and whose distance to the 2:4 row
    is mmnm's Python.

    Args:
        kind (str): ``'conv'`` or ``'linear'``.
        args (tuple): the layer's constructor arguments.
        sparse (NMSparseMixin): the 2:4 layer, for its N:M pattern.
        x (Tensor): the input (needing its gradient, as the rows' input).
        grad (Tensor): the gradient of the output.
        stream (bool): ``stream_remask`` of the fused step.
    """

    def __init__(self, kind: str, args: tuple, sparse: NMSparseMixin,
                 x: torch.Tensor, grad: torch.Tensor, stream: bool) -> None:
        self.layer, _ = layer_pair(kind, args)
        self.weight, self.bias = self.layer.weight, self.layer.bias
        nm = sparse.nm
        #: the current masked weight's buffer first, the next one's second
        self.buffers = [
            MaskedWeightBuffer(self.weight, nm.n, nm.m, nm.orientation)
            for _ in range(2)
        ]
        for buffer in self.buffers:
            buffer.update()
        self.momentum = torch.zeros_like(self.weight)
        self.bias_sgd = sgd(self.bias)
        self.x, self.grad, self.stream = x, grad, stream

    def op(self, weight: torch.Tensor) -> torch.Tensor:
        """The layer's op on ``x`` with ``weight``, called directly."""
        layer = self.layer
        if isinstance(layer, nn.Conv2d):
            return F.conv2d(self.x, weight, layer.bias, layer.stride,
                            layer.padding, layer.dilation, layer.groups)
        return F.linear(self.x, weight, layer.bias)

    def __call__(self) -> None:
        current, following = self.buffers
        weight = self.weight
        self.x.grad = None
        out = self.op(straight_through(weight, current.masked))
        torch.autograd.backward([out], [self.grad])
        with torch.no_grad():
            sr_ste_sgd_step_(
                weight,
                weight.grad,
                current.mask,
                self.momentum,
                LAMBDA_W,
                **SGD_SETTINGS,
                remask=following,
                stream_remask=self.stream,
                checked=True)
        weight.grad = None
        self.bias_sgd.step()
        self.bias_sgd.zero_grad()
        self.buffers.reverse()


def bench_layers(specs, rounds: int) -> List[dict]:
    rows = []
    for name, kind, args, shape in specs:
        dense, sparse = layer_pair(kind, args)
        dense_wrapper, sparse_wrapper = wrappers(dense, sparse)
        x = torch.randn(shape, requires_grad=True)
        grad = torch.randn_like(dense(x))

        def run(model):
            x.grad = None
            return [model(x)]

        steps = {
            'dense':
            backward_step(dense, dense_wrapper, lambda: run(dense), [grad]),
            '2:4':
            backward_step(sparse, sparse_wrapper, lambda: run(sparse), [grad]),
        }
        steps['2:4']()  # binds the layer: the wrapper's choices are made
        if steps_compute_masks(sparse) and fuses_sgd_step(sparse_wrapper):
            steps['kernels'] = KernelsStep(kind, args, sparse, x, grad,
                                           sparse_wrapper.streams_next_masks())
        repeats = repeats_for(steps['dense'], 0.02)
        faults = {}
        times = side_by_side(steps, rounds, repeats, faults)
        rows.append(
            dict(
                name=name,
                times=times,
                faults=faults,
                parts=part_times([sparse], rounds, sparse_wrapper)))
    return rows


def loss_step(model: nn.Module, wrapper: OptimWrapper,
              images: torch.Tensor) -> Callable[[], None]:
    """``update_params`` of the mean of the model's outputs (loss scaling
    and the SR-STE term as in training)."""

    def step() -> None:
        with wrapper.optim_context(model):
            outputs = model(images)
            if isinstance(outputs, torch.Tensor):
                outputs = [outputs]
            loss = sum(out.float().mean() for out in outputs)
        wrapper.update_params(loss)

    return step


def bench_resnet(depth: int, batch: int, size: int, rounds: int, device: str,
                 amp: bool, channels_last: bool) -> dict:
    torch.manual_seed(0)
    dense, source = resnet_backbone(depth)
    memory_format = torch.channels_last if channels_last else \
        torch.contiguous_format
    dense.to(device, memory_format=memory_format)
    sparse = copy.deepcopy(dense)
    sparsify_model(sparse, '2:4')
    dense_wrapper, sparse_wrapper = wrappers(dense, sparse, amp)
    images = torch.randn(
        batch, 3, size, size,
        device=device).contiguous(memory_format=memory_format)
    control = copy.deepcopy(dense)
    steps = {
        'dense': loss_step(dense, dense_wrapper, images),
        '2:4': loss_step(sparse, sparse_wrapper, images),
        'control': loss_step(control, dense_optim_wrapper(control, amp),
                             images),
    }
    for step in steps.values():  # warm-up
        step()
    faults = {}
    times = side_by_side(steps, rounds, 1, faults)
    layers = find_sparse_layers(sparse)
    extras = ''.join(f', {flag}'
                     for flag, on in (('AMP', amp), ('channels_last',
                                                     channels_last),
                                      (device, True)) if on)
    return dict(
        name=f'ResNet-{depth} ({source}) step, batch {batch}, '
        f'{size}x{size}{extras} ({len(layers)} layers 2:4)',
        times=times,
        faults=faults,
        parts=part_times(layers, 3, sparse_wrapper, sweep=True))


def bench_mask_rcnn(rounds: int, images: int) -> dict:
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    from mmnm.apis import (build_model, config_sparsity, load_config,
                           redirect_data_root)
    from mmnm.datasets import generate_shapes_dataset
    config = 'configs/demo/mask-rcnn_r18_fpn_2-4_shapes-64x64.py'
    cfg = load_config(config)
    init_default_scope(cfg.default_scope)
    with tempfile.TemporaryDirectory() as root:
        generate_shapes_dataset(root, splits={'train': images})
        redirect_data_root(cfg, root)
        cfg.train_dataloader.batch_size = images
        cfg.train_dataloader.num_workers = 0
        cfg.train_dataloader.persistent_workers = False
        batch = next(iter(Runner.build_dataloader(cfg.train_dataloader)))
    torch.manual_seed(0)
    dense = build_model(cfg)  # PyTorch's initialisation: no init log
    sparse = copy.deepcopy(dense)
    sparsify_model(sparse, **config_sparsity(cfg))
    dense.train()
    sparse.train()
    dense_wrapper, sparse_wrapper = wrappers(dense, sparse)

    def train_step(model, wrapper):

        def step() -> None:
            torch.manual_seed(0)  # the same RPN/RoI sampling in both
            model.train_step(copy.copy(batch), wrapper)

        return step

    control = copy.deepcopy(dense)
    steps = {
        'dense': train_step(dense, dense_wrapper),
        '2:4': train_step(sparse, sparse_wrapper),
        'control': train_step(control, OptimWrapper(sgd(control))),
    }
    for step in steps.values():  # warm-up
        step()
    faults = {}
    times = side_by_side(steps, rounds, 1, faults)
    layers = find_sparse_layers(sparse)
    return dict(
        name=f'demo Mask R-CNN iteration, batch {images} '
        f'({len(layers)} layers 2:4)',
        times=times,
        faults=faults,
        parts=part_times(layers, 3, sparse_wrapper, sweep=True))


# ----------------------------------------------------------------------
# report
# ----------------------------------------------------------------------
HEADER = (f'{"":<44} {"dense ms":>9} {"2:4 ms":>9} {"ratio":>6} '
          f'{"paired":>6} {"90% interval":>12} {"kernels":>7} | '
          f'{"extra":>7} {"mask":>6} '
          f'{"masked":>6} {"STE":>6} {"SR-STE":>6} {"rest":>7}  (us) '
          f'target  faults/step')


def fault_counts(row: dict) -> str:
    """``dense/2:4`` minor page faults per step (see the module
    docstring for why they matter)."""
    faults = row.get('faults', {})
    return '/'.join(f'{faults.get(name, 0):.0f}' for name in ('dense', '2:4'))


def report(row: dict, target: float) -> Optional[str]:
    """Print ``row``; ``None`` if its ratio meets ``target``, else whether
    its interval settles the miss (``'missed'``) or not
    (``'unresolved'``)."""
    dense, sparse, ratio, paired = ratios(row['times'])
    parts = row['parts']
    extra = sparse - dense
    rest = extra - sum(parts.values())
    ok = ratio <= target
    interval = ratio_interval(row['times'])
    shown = '-' if interval is None else \
        f'{interval[0]:.3f}-{interval[1]:.3f}'
    kernels = row['times'].get('kernels')
    floor = '-' if kernels is None else f'{median(kernels) / dense:.3f}'
    print(f'{row["name"]:<44} {1e3 * dense:9.3f} {1e3 * sparse:9.3f} '
          f'{ratio:6.3f} {paired:6.3f} {shown:>12} {floor:>7} | '
          f'{1e6 * extra:7.0f} '
          f'{1e6 * parts["mask"]:6.0f} {1e6 * parts["masked"]:6.0f} '
          f'{1e6 * parts["ste"]:6.0f} {1e6 * parts["sr_ste"]:6.0f} '
          f'{1e6 * rest:7.0f}  <= {target:.2f} {"ok" if ok else "MISSED":6} '
          f'{fault_counts(row)}')
    if 'control' in row['times']:
        control = median(row['times']['control'])
        print(f'  control: an identical dense copy, in the same rounds, ran '
              f'at {control / dense:.3f}x dense (what this machine '
              f'resolves); 2:4 against the mean of the two: '
              f'{2 * sparse / (dense + control):.3f}')
        if interval is not None:
            print(f'  90% bootstrap interval of the ratio over its '
                  f'{len(row["times"]["dense"])} rounds: '
                  f'{interval[0]:.3f}-{interval[1]:.3f} '
                  f'({interval_verdict(interval, target)})')
    if ok:
        return None
    return 'missed' if settles(interval, target) is False else 'unresolved'


def summary(misses: Dict[str, str]) -> str:
    """The last line: the rows whose ratio is above their target (by
    :func:`report`'s verdict), the misses that their interval settles
    apart from those that more rounds may turn."""
    if not misses:
        return 'all targets met'
    settled = [name for name, verdict in misses.items() if verdict == 'missed']
    open_ = [name for name in misses if name not in settled]
    text = f'{len(misses)} target(s) missed'
    if settled:
        text += f'; at this precision: {", ".join(settled)}'
    if open_:
        text += (f'; not resolved by this run (the interval spans the '
                 f'target, or under 4 rounds): {", ".join(open_)}')
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--rounds', type=int, default=15)
    parser.add_argument('--model-rounds', type=int, default=16)
    parser.add_argument(
        '--tiny',
        action='store_true',
        help='tiny shapes, ResNet-18 at 64x64, 2 rounds: checks that the '
        'script runs (CI), measures nothing')
    parser.add_argument(
        '--device', default='cpu', help='where the ResNet section runs')
    parser.add_argument(
        '--amp', action='store_true', help='ResNet section: fp16 AMP')
    parser.add_argument(
        '--channels-last',
        action='store_true',
        help='ResNet section: channels_last memory format')
    parser.add_argument(
        '--batch', type=int, default=2, help='ResNet section batch size')
    parser.add_argument(
        '--size', type=int, default=224, help='ResNet section image size')
    parser.add_argument(
        '--sections',
        default='layers,resnet,mask_rcnn',
        help='comma-separated subset of layers, resnet, mask_rcnn')
    parser.add_argument(
        '--release-freed-memory',
        action='store_true',
        help='leave glibc\'s allocator at its defaults, which return freed '
        'memory to the system (steps then fault in fresh pages, see '
        'retain_freed_memory)')
    parser.add_argument(
        '--sgd',
        choices=sorted(SGD_IMPLEMENTATIONS),
        default='fused',
        help='the torch.optim.SGD implementation of both sides (fused: '
        'one pass per tensor, as the 2:4 side\'s fused SR-STE step)')
    args = parser.parse_args()
    global sgd_implementation
    sgd_implementation = args.sgd
    sections = args.sections.split(',')
    if args.tiny:
        args.rounds = args.model_rounds = 2
    retained = not args.release_freed_memory and retain_freed_memory()
    freed = 'kept by the allocator' if retained else 'returned to the system'
    print(f'{torch.get_num_threads()} threads; times are medians of '
          f'alternating rounds ({args.rounds} per layer, '
          f'{args.model_rounds} per model); torch.optim.SGD '
          f'{args.sgd} on both sides; freed memory {freed}')
    print(HEADER)
    misses = {}

    def show(row: dict, target: float) -> None:
        verdict = report(row, target)
        if verdict is not None:
            misses[row['name']] = verdict

    if 'layers' in sections:
        for row in bench_layers(TINY_LAYERS if args.tiny else LAYERS,
                                args.rounds):
            show(row, TARGETS['layer'])
    if 'resnet' in sections:
        depth, batch, size = (18, 2, 64) if args.tiny else \
            (50, args.batch, args.size)
        show(
            bench_resnet(depth, batch, size, args.model_rounds, args.device,
                         args.amp, args.channels_last), TARGETS['resnet'])
    if 'mask_rcnn' in sections:
        show(
            bench_mask_rcnn(args.model_rounds, 1 if args.tiny else 8),
            TARGETS['mask_rcnn'])
    print(summary(misses))


if __name__ == '__main__':
    main()
