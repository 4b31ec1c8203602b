"""Sparse24Linear / Sparse24Conv2d: outputs against F.linear / F.conv2d of
the same rounded weights, the stored CUTLASS layout, state_dict round trips,
cache invalidation, refusals, and (on a GPU) the sparse kernels against the
dense path."""
import io
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from deploy_helpers import random_24_weight, relative_error
from torch import nn
from torch.sparse._semi_structured_conversions import \
    sparse_semi_structured_from_dense_cutlass as reference_compress

from mmnm.deploy import (Sparse24Conv2d, Sparse24Linear, gemm, kernel_backends,
                         krsc_matrix, set_sparse24_backend, sparse24_backend)
from mmnm.deploy.layers import sparse24_layer_type
from mmnm.ops import decompress_sparse24

DTYPES = [torch.float16, torch.bfloat16]
#: fp16 keeps 11 significant bits, bf16 8: relative error of one GEMM
#: output against an fp32 product of the same rounded operands.
TOLERANCE = {torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def make_conv(cin=64, cout=32, kernel=3, seed=0, **kwargs) -> nn.Conv2d:
    conv = nn.Conv2d(cin, cout, kernel, **kwargs)
    with torch.no_grad():
        conv.weight.copy_(random_24_weight(conv.weight.shape, seed))
    return conv


def make_linear(cin=128, cout=64, seed=0, bias=True) -> nn.Linear:
    linear = nn.Linear(cin, cout, bias=bias)
    with torch.no_grad():
        linear.weight.copy_(random_24_weight(linear.weight.shape, seed))
    return linear


def rounded(tensor, dtype):
    return None if tensor is None else tensor.detach().to(dtype).float()


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('bias', [True, False])
def test_linear_matches_f_linear(dtype, bias):
    linear = make_linear(bias=bias)
    layer = Sparse24Linear.compress(linear, dtype)
    x = torch.randn(3, 5, 128)
    y = layer(x)
    assert y.shape == (3, 5, 64) and y.dtype == torch.float32
    expected = F.linear(
        rounded(x, dtype), rounded(linear.weight, dtype),
        rounded(linear.bias, dtype))
    assert relative_error(y, expected) < TOLERANCE[dtype]
    assert layer(x.to(dtype)).dtype == dtype  # no cast in a half model
    with torch.autocast('cpu', dtype=dtype):  # like an autocast F.linear
        assert layer(x).dtype == dtype
    assert layer.backend == 'dense'  # CPU


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('kwargs', [
    dict(kernel=1),
    dict(kernel=3, stride=2, padding=1),
    dict(kernel=3, padding=2, dilation=2),
    dict(kernel=(3, 1), stride=(1, 2), padding=(1, 0)),
])
def test_conv_matches_f_conv2d(dtype, kwargs):
    conv = make_conv(**kwargs)
    layer = Sparse24Conv2d.compress(conv, dtype)
    x = torch.randn(2, 64, 9, 7)
    y = layer(x)
    expected = F.conv2d(
        rounded(x, dtype), rounded(conv.weight, dtype),
        rounded(conv.bias, dtype), conv.stride, conv.padding, conv.dilation)
    assert y.shape == expected.shape and y.dtype == torch.float32
    assert relative_error(y, expected) < TOLERANCE[dtype]


def test_stored_weight_is_the_cutlass_compression_of_the_krsc_matrix():
    conv = make_conv(cout=64, kernel=3)
    layer = Sparse24Conv2d.compress(conv, torch.float16)
    values, meta = reference_compress(krsc_matrix(conv.weight).half())
    assert torch.equal(layer.weight_meta, meta)
    assert torch.equal(layer.weight_values, values)
    assert layer.weight_values.shape == (64, 64 * 9 // 2)
    assert torch.equal(layer.weight, conv.weight.detach().half())


@pytest.mark.parametrize('make, cls, args', [
    (lambda: make_conv(stride=2, padding=1), Sparse24Conv2d,
     (64, 32, 3, 2, 1)),
    (make_linear, Sparse24Linear, (128, 64)),
])
def test_state_dict_round_trip(make, cls, args):
    dense = make()
    layer = cls.compress(dense, torch.bfloat16)
    state = layer.state_dict()
    assert set(state) == {'weight_values', 'weight_meta', 'bias'}
    assert state['weight_values'].dtype == torch.bfloat16
    assert state['weight_meta'].dtype == torch.int16
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    empty = cls(*args, dtype=torch.bfloat16)
    empty.load_state_dict(torch.load(buffer), strict=True)
    x = torch.randn(2, 64, 8, 8) if cls is Sparse24Conv2d \
        else torch.randn(4, 128)
    assert torch.equal(empty(x), layer(x))


def test_cached_weight_follows_load_state_dict():
    """The decompressed weight is cached; loading new values must not
    leave the old one in use."""
    first = Sparse24Linear.compress(make_linear(seed=1))
    second = Sparse24Linear.compress(make_linear(seed=2))
    x = torch.randn(4, 128)
    before = first(x)
    first.load_state_dict(second.state_dict())
    assert not torch.equal(first(x), before)
    assert torch.equal(first(x), second(x))


def test_empty_input():
    layer = Sparse24Linear.compress(make_linear())
    assert layer(torch.randn(0, 128)).shape == (0, 64)


def conv_with(weight_shape, **kwargs):
    conv = nn.Conv2d(weight_shape[1] * kwargs.get('groups', 1),
                     weight_shape[0], weight_shape[2:], **kwargs)
    with torch.no_grad():
        conv.weight.copy_(random_24_weight(conv.weight.shape))
    return conv


@pytest.mark.parametrize(
    'module, message',
    [
        (nn.Conv2d(64, 32, 3), 'not 2:4'),  # dense random weight
        (conv_with((48, 64, 1, 1)), '48 output channels/features, not a '
         'multiple of 32'),
        (conv_with((32, 16, 3, 3)), 'GEMM reduction size 144, not a multiple '
         'of 64'),
        (conv_with((64, 32, 3, 3), groups=2), 'grouped conv'),
        (conv_with((32, 64, 3, 3), padding=1,
                   padding_mode='reflect'), 'padding_mode'),
        (nn.Conv2d(64, 32, 3, padding='same'), 'padding=.same.'),
        (nn.ConvTranspose2d(64, 32, 3), 'transposed conv'),
        (nn.Conv1d(64, 32, 3), 'Conv1d: no 2:4 inference counterpart'),
        (nn.Linear(64, 32), 'not 2:4'),
        (nn.Linear(6, 32), 'reduction size 6 not divisible by M=4'),
    ])
def test_unconvertible_layers_are_refused(module, message):
    cls = Sparse24Linear if isinstance(module, nn.Linear) else Sparse24Conv2d
    with pytest.raises(ValueError, match=message) as err:
        cls.compress(module, name='head.conv')
    assert "'head.conv' cannot be converted" in str(err.value)


def test_only_half_dtypes():
    with pytest.raises(ValueError, match='fp16 or bf16'):
        Sparse24Linear.compress(make_linear(), torch.float32)


def test_backend_choice_on_cpu():
    assert kernel_backends(torch.device('cpu'), torch.float16, 64, 128) == ()
    layer = Sparse24Linear.compress(make_linear())
    x = torch.randn(4, 128)
    with sparse24_backend('cutlass'):  # not available: dense path
        layer(x)
    assert layer.backend == 'dense'
    with pytest.raises(ValueError, match='unknown 2:4 GEMM backend'):
        set_sparse24_backend('cusparse')


def _cuda_backends():
    if not torch.cuda.is_available():
        return []
    return list(kernel_backends(torch.device('cuda'), torch.float16, 64, 128))


needs_ampere = pytest.mark.skipif(
    not _cuda_backends(), reason='needs a CUDA GPU with 2:4 kernels (sm80+)')


@needs_ampere
@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('backend', ['cusparselt', 'cutlass'])
def test_cuda_sparse_kernels_match_the_dense_path(backend, dtype):
    if backend not in _cuda_backends():
        # PyTorch's CUTLASS 2:4 kernels run on sm8x only (not sm90)
        pytest.skip(f'{backend} not available on '
                    f'sm{"%d%d" % torch.cuda.get_device_capability()}')
    for dense, x in (
        (make_linear(cin=256, cout=128), torch.randn(13, 256)),
        (make_linear(cin=256, cout=128, bias=False), torch.randn(8, 256)),
        (make_conv(cin=64, cout=64, kernel=3, stride=2,
                   padding=1), torch.randn(2, 64, 15, 15)),
        (make_conv(cin=128, cout=64, kernel=1), torch.randn(1, 128, 7, 7)),
    ):
        cls = Sparse24Linear if isinstance(dense, nn.Linear) \
            else Sparse24Conv2d
        layer = cls.compress(dense, dtype).cuda()
        x = x.cuda().to(dtype)
        with sparse24_backend(backend):
            y = layer(x)
        assert layer.backend == backend, type(dense).__name__
        with sparse24_backend('dense'):
            expected = layer(x)
        assert layer.backend == 'dense'
        assert y.shape == expected.shape
        assert y.is_contiguous()  # NCHW by default, whatever the kernel
        if y.dim() == 4:  # row-major GEMM result: channels_last memory
            layer.channels_last_output = True
            with sparse24_backend(backend):
                y_cl = layer(x)
            assert y_cl.is_contiguous(memory_format=torch.channels_last)
            assert torch.equal(y_cl, y)
        assert relative_error(y, expected) < TOLERANCE[dtype], \
            (backend, type(dense).__name__)


# --------------------------------------------------------------------------
# backend choice, kernel failures, caches, errors (CPU, kernels mocked)
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    'capability, hip, expected',
    [
        ((8, 0), None, ('cusparselt', 'cutlass')),
        ((8, 9), None, ('cusparselt', 'cutlass')),
        ((9, 0), None, ('cusparselt', )),  # CUTLASS 2:4 ops: sm8x only
        ((8, 0), '6.0', ('cusparselt', )),  # ROCm
        ((7, 5), None, ()),
    ])
def test_cutlass_is_offered_on_sm8x_only(monkeypatch, capability, hip,
                                         expected):
    monkeypatch.setattr(gemm, '_capability', lambda device: capability)
    monkeypatch.setattr(gemm, '_cusparselt_available', lambda: True)
    monkeypatch.setattr(
        torch, '_sparse_semi_structured_addmm', None, raising=False)
    monkeypatch.setattr(torch.version, 'hip', hip)
    assert kernel_backends(torch.device('cuda'), torch.float16, 64,
                           128) == expected


@pytest.fixture
def mocked_cutlass(monkeypatch):
    """The layers' GEMMs run 'cutlass' through a mocked kernel: ``calls``
    counts them, ``behaviour['kernel']`` runs in place of the kernel and
    ``logged`` collects print_log messages."""
    calls, logged = [], []
    behaviour = {}

    def kernel(x, values, meta, bias):
        calls.append(tuple(x.shape))
        return behaviour['kernel'](x, values, meta, bias)

    monkeypatch.setattr(gemm, 'resolve_backend', lambda *args: 'cutlass')
    monkeypatch.setattr(gemm, '_cutlass_linear', kernel)
    monkeypatch.setattr(gemm, 'print_log',
                        lambda msg, **kwargs: logged.append(msg))
    gemm.clear_sparse24_caches()
    yield calls, logged, behaviour
    gemm.clear_sparse24_caches()


def test_unsupported_kernel_falls_back_once(mocked_cutlass):
    calls, logged, behaviour = mocked_cutlass

    def unsupported(*args):
        raise RuntimeError('no CUTLASS kernel for this shape')

    behaviour['kernel'] = unsupported
    layer = Sparse24Linear.compress(make_linear(), name='head.fc')
    x = torch.randn(4, 128)
    y = layer(x)
    assert layer.backend == 'dense' and len(calls) == 1
    assert len(logged) == 1 and "layer 'head.fc': cutlass 2:4 GEMM failed" in \
        logged[0]
    with sparse24_backend('dense'):
        assert torch.equal(y, layer(x))
    layer(x)  # the failure is remembered: no second try, no second warning
    assert len(calls) == 1 and len(logged) == 1


def test_out_of_memory_propagates_and_is_not_remembered(mocked_cutlass):
    calls, logged, behaviour = mocked_cutlass

    def out_of_memory(*args):
        raise torch.cuda.OutOfMemoryError('CUDA out of memory')

    behaviour['kernel'] = out_of_memory
    layer = Sparse24Linear.compress(make_linear())
    x = torch.randn(4, 128)
    for tries in (1, 2):
        with pytest.raises(torch.cuda.OutOfMemoryError):
            layer(x)
        assert len(calls) == tries  # tried again: not cached as failed
    assert not gemm._FAILED and not logged

    def sticky_cuda_error(*args):
        raise RuntimeError('CUDA error: an illegal memory access was '
                           'encountered')

    behaviour['kernel'] = sticky_cuda_error
    with pytest.raises(RuntimeError, match='illegal memory access'):
        layer(x)
    assert not gemm._FAILED and not logged


@pytest.mark.parametrize(
    'message,unsupported',
    [
        # torch's TORCH_CUDASPARSE_CHECK around a cuSPARSELt call that
        # refuses the problem: fall back to dense
        ('CUDA error: operation not supported when calling '
         '`cusparseLtMatmulDescriptorInit(...)`', True),
        ('CUDA error: invalid value when calling '
         '`cusparseLtStructuredDescriptorInit(...)`', True),
        ('no CUTLASS kernel for this shape', True),
        # the device failed, inside cuSPARSELt or not: re-raise
        ('CUDA error: an illegal memory access was encountered when '
         'calling `cusparseLtMatmul(...)`', False),
        ('CUDA error: out of memory when calling `cusparseLtMatmulPlanInit`',
         False),
        ('CUDA error: execution failed when calling `cusparseLtMatmul(...)`',
         False),
        ('CUDA error: insufficient resources when calling '
         '`cusparseLtMatmulPlanInit(...)`', False),
        ('CUDA error: unspecified launch failure', False),
        ('CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx`', False),
    ])
def test_kernel_errors_that_fall_back(message, unsupported):
    assert gemm._kernel_unsupported(RuntimeError(message)) is unsupported


def test_kernel_result_is_row_major(mocked_cutlass):
    """CUTLASS writes y^T: the GEMM returns it row-major, so a conv's
    output is channels_last-contiguous."""
    _, _, behaviour = mocked_cutlass

    def transposed(x, values, meta, bias):  # as _cutlass_linear returns
        weight = decompress_sparse24(values, meta).float()
        return torch.addmm(bias.float()[:, None], weight,
                           x.float().t()).to(values.dtype).t()

    behaviour['kernel'] = transposed
    conv = Sparse24Conv2d.compress(make_conv(padding=1))
    x = torch.randn(2, 64, 5, 5, dtype=torch.float16)
    assert conv(x).is_contiguous()  # NCHW unless asked otherwise
    conv.channels_last_output = True
    y = conv(x)
    assert conv.backend == 'cutlass'
    assert y.is_contiguous(memory_format=torch.channels_last)
    linear = Sparse24Linear.compress(make_linear())
    assert linear(torch.randn(13, 128, dtype=torch.float16)).is_contiguous()


def test_wrong_inputs_are_errors_naming_the_layer(mocked_cutlass):
    calls, logged, _ = mocked_cutlass
    layer = Sparse24Linear.compress(make_linear(), name='head.fc')
    values, meta, bias = layer.weight_values, layer.weight_meta, layer.bias
    cache = gemm.Sparse24Cache()
    for x, message in (
        (torch.randn(4, 128), r'head.fc: .*input is torch.float32'),
        (torch.randn(4, 128, dtype=torch.float16,
                     device='meta'), 'head.fc: .*on meta'),
        (torch.randn(4, 64, dtype=torch.float16),
         r'head.fc: .*input of shape \(4, 64\)'),
    ):
        with pytest.raises(ValueError, match=message):
            gemm.sparse24_linear(x, values, meta, bias, cache, 'head.fc')
    with pytest.raises(ValueError, match='head.fc: .*bias is torch.float32'):
        gemm.sparse24_linear(
            torch.randn(4, 128, dtype=torch.float16), values, meta,
            bias.float(), cache, 'head.fc')
    assert not calls and not logged and not gemm._FAILED


def test_cache_follows_apply_and_reload():
    """.to()/.cuda()/_apply make new tensors (at _version 0, often at a
    freed tensor's address): the cached dense weight must follow them."""
    layer = Sparse24Linear.compress(make_linear(seed=0))
    x = torch.randn(4, 128)
    for round_ in range(6):
        layer(x)  # fills the cache
        for _ in range(round_ % 3 + 1):  # new tensors; freed ones reused
            layer._apply(lambda t: t.clone())
        other = Sparse24Linear.compress(make_linear(seed=round_ + 1))
        layer.load_state_dict(other.state_dict())
        assert torch.equal(layer(x), other(x)), round_


def test_float_cast_is_refused_naming_the_layer():
    layer = Sparse24Linear.compress(make_linear(), name='head.fc')
    model = nn.Sequential(nn.Linear(128, 128), layer)
    with pytest.raises(
            TypeError,
            match=r"layer 'head.fc': .*not torch.float32.*"
            r'\.half\(\) or \.bfloat16\(\).*fp32'):
        model.float()
    assert layer.weight_values.dtype == torch.float16  # left as it was
    assert layer(torch.randn(2, 128)).dtype == torch.float32
    layer.bfloat16()  # kernel dtypes are fine
    assert layer.weight_values.dtype == layer.bias.dtype == torch.bfloat16


def test_constructor_errors_name_the_layer():
    with pytest.raises(ValueError, match="layer 'head.fc': .*fp16 or bf16"):
        Sparse24Linear(128, 64, dtype=torch.float32, name='head.fc')
    with pytest.raises(
            ValueError,
            match=r"layer 'head.fc': shape \(48, 128\) does "
            r'not fit the 2:4 layout .*rows % 32 == 0'):
        Sparse24Linear(128, 48, name='head.fc')


def test_conv_lowering_errors_name_the_layer():
    layer = Sparse24Conv2d.compress(make_conv(), name='neck.conv')
    with pytest.raises(ValueError, match="layer 'neck.conv': .*NCHW input"):
        layer(torch.randn(64, 5, 5))
    with pytest.raises(
            ValueError, match="layer 'neck.conv': conv input 2x2 is too "
            'small'):
        layer(torch.randn(1, 64, 2, 2))


@pytest.mark.parametrize('make', [make_linear, make_conv])
def test_empty_like_loads_the_converted_state(make):
    dense = make()
    layer = sparse24_layer_type(dense).compress(dense)
    empty = sparse24_layer_type(dense).empty_like(dense, torch.float16)
    assert type(empty) is type(layer)
    empty.load_state_dict(layer.state_dict(), strict=True)
    x = torch.randn(2, 64, 6, 6) if isinstance(dense, nn.Conv2d) \
        else torch.randn(2, 128)
    assert torch.equal(empty(x), layer(x))


def test_bad_backend_variable_fails_at_the_gemm_not_at_import():
    code = ('import mmnm, mmnm.deploy, torch\n'
            'from torch import nn\n'
            'layer = nn.Linear(128, 64)\n'
            'layer.weight.data[:, 1::2] = 0\n'
            'layer = mmnm.deploy.Sparse24Linear.compress(layer)\n'
            'try:\n'
            '    layer(torch.randn(2, 128))\n'
            'except ValueError as err:\n'
            '    print("ERROR", err)\n')
    env = dict(os.environ, MMNM_SPARSE24_BACKEND='cutlas')
    proc = subprocess.run([sys.executable, '-c', code],
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ERROR MMNM_SPARSE24_BACKEND='cutlas' is not a 2:4 GEMM backend" \
        in proc.stdout
