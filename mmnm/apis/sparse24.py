"""2:4 inference models from configs: convert a checkpoint to the
compressed 2:4 format, and load such a checkpoint for inference."""
import os.path as osp
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from mmengine.model import revert_sync_batchnorm
from torch import nn

from mmnm.conversion import weighted_layers
from mmnm.deploy import (Sparse24Report, convert_to_sparse24,
                         load_sparse24_checkpoint, save_sparse24_checkpoint)
from mmnm.layers import gemm_weight
from .checkpoints import check_trained_patterns
from .config import ConfigType, config_sparsity, load_config
from .models import (build_model, build_sparse_model, check_output_file,
                     load_weights, writing)

#: ``--dtype`` names of the 2:4 weight dtypes.
SPARSE24_DTYPES = {'fp16': torch.float16, 'bf16': torch.bfloat16}


@dataclass
class Sparse24Conversion:
    """What :func:`convert_checkpoint_to_sparse24` did: the per-layer
    report, whether the config was sparse, and sizes in bytes (before,
    after) of the weights, the state_dict and the file."""

    report: Sparse24Report
    sparse_config: bool
    sizes: Dict[str, Tuple[int, int]]

    def size_table(self) -> str:
        lines = [f'{"":<28}{"before":>14}{"after":>14}{"ratio":>8}']
        for name, (before, after) in self.sizes.items():
            lines.append(f'{name:<28}{before:>14,}{after:>14,}'
                         f'{after / max(before, 1):>8.3f}')
        return '\n'.join(lines)


def convert_checkpoint_to_sparse24(
        config: ConfigType,
        checkpoint: str,
        out: str,
        dtype: Union[str, torch.dtype] = 'fp16',
        exclude: Sequence[str] = (),
        min_weight_numel: int = 0,
        cfg_options: Optional[dict] = None) -> Sparse24Conversion:
    """Write the compressed 2:4 inference checkpoint of ``checkpoint`` to
    ``out`` (its folder created).

    ``checkpoint`` is a training checkpoint of a sparse ``config`` (its
    ``NMSparsityHook`` says which layers are masked; the masks are
    recomputed from the weights) or a plain checkpoint whose weights
    already are 2:4, e.g. an N:M export (then a dense config works too).
    See :func:`mmnm.deploy.convert_to_sparse24` for ``exclude`` and
    ``min_weight_numel``.

    Example:
        >>> from mmnm.apis import (convert_checkpoint_to_sparse24,
        ...                        load_sparse24_model)
        >>> result = convert_checkpoint_to_sparse24(
        ...     'configs/demo/fcn_r18-d8_2-4_shapes-64x64.py',
        ...     'work_dirs/fcn/iter_300.pth', 'fcn_sparse24.pth')
        >>> print(result.report.table())
        >>> model = load_sparse24_model(
        ...     'configs/demo/fcn_r18-d8_2-4_shapes-64x64.py',
        ...     'fcn_sparse24.pth')

    Raises:
        FileNotFoundError: no such config or checkpoint.
        ValueError: the checkpoint does not fit the model, the config
            masks a layer the run trained dense or at another pattern
            (see :func:`check_trained_patterns`), no layer can run 2:4, or
            ``dtype`` is unknown (each message names the file).
        OSError: ``out`` is a folder or cannot be written.
    """
    if isinstance(dtype, str):
        if dtype not in SPARSE24_DTYPES:
            raise ValueError(f'dtype {dtype!r}: 2:4 weights are one of '
                             f'{", ".join(SPARSE24_DTYPES)}')
        dtype = SPARSE24_DTYPES[dtype]
    check_output_file(out)
    cfg = load_config(config, cfg_options)
    sparse = config_sparsity(cfg) is not None
    model = build_sparse_model(cfg) if sparse else build_model(cfg)
    model = revert_sync_batchnorm(model).eval()
    load_weights(model, checkpoint,
                 f'the model of {cfg.filename or "the config"}')
    if sparse:
        check_trained_patterns(model, checkpoint)

    weights = {
        name: gemm_weight(layer)
        for name, layer in weighted_layers(model)
        if gemm_weight(layer) is not None
    }
    before = model.state_dict()
    try:
        report = convert_to_sparse24(
            model,
            dtype,
            exclude=exclude,
            min_weight_numel=min_weight_numel,
            logger=None)
    except ValueError as err:
        raise ValueError(f'{checkpoint}: {err}') from None
    meta = dict(
        config=osp.abspath(cfg.filename) if cfg.filename else None,
        source=osp.abspath(checkpoint),
        dtype=str(dtype))
    with writing(out):
        save_sparse24_checkpoint(model, out, meta)

    converted = {layer.name for layer in report.sparse_layers}
    kept = [w for name, w in weights.items() if name not in converted]
    sizes = {
        'weighted layers\' weights':
        (sum(w.nbytes for w in weights.values()),
         sum(w.nbytes for w in kept) + report.stored_bytes),
        '  of the 2:4 layers':
        (sum(weights[name].nbytes for name in converted), report.stored_bytes),
        'state_dict tensors': (sum(t.nbytes for t in before.values()),
                               sum(t.nbytes
                                   for t in model.state_dict().values())),
        'file': (osp.getsize(checkpoint), osp.getsize(out)),
    }
    return Sparse24Conversion(report, sparse, sizes)


def load_sparse24_model(config: ConfigType,
                        checkpoint: str,
                        device: Union[str, torch.device] = 'cpu',
                        cfg_options: Optional[dict] = None) -> nn.Module:
    """The inference model of ``config`` (built dense, SyncBN reverted)
    with the 2:4 layers of the compressed ``checkpoint`` in place, loaded
    strictly, in eval mode on ``device``.

    Raises:
        FileNotFoundError: no such config or checkpoint.
        ValueError: the file holds no 2:4 layer or does not fit the model.
    """
    model = revert_sync_batchnorm(build_model(config, cfg_options))
    return load_sparse24_checkpoint(model, checkpoint).to(device).eval()
