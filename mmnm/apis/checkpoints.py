"""N:M checkpoints from configs: export a training checkpoint as a slim
exactly-N:M checkpoint, verify one."""
import os.path as osp
from typing import Optional

from torch import nn

from mmnm.conversion import (SparsitySummary, check_nm_state_dict,
                             checkpoint_patterns, export_state_dict,
                             save_nm_checkpoint, sparse_layer_slots,
                             sparse_weight_patterns)
from mmnm.utils import read_checkpoint
from .config import ConfigType
from .models import (build_sparse_model, check_output_file, load_weights,
                     writing)


def export_nm_checkpoint(
        config: ConfigType,
        checkpoint: str,
        out: str,
        cfg_options: Optional[dict] = None) -> SparsitySummary:
    """Write the weights of the training ``checkpoint`` of the sparse
    ``config`` to ``out`` with the masks applied (exact zeros) and no
    optimizer or training state, verified N:M layer by layer; the stock
    dense model of the config loads it strictly. The folder of ``out`` is
    created.

    Example:
        >>> from mmnm.apis import export_nm_checkpoint
        >>> summary = export_nm_checkpoint(
        ...     'configs/demo/fcn_r18-d8_2-4_shapes-64x64.py',
        ...     'work_dirs/fcn/iter_300.pth', 'fcn_nm.pth')
        >>> print(summary.line())

    Raises:
        FileNotFoundError: no such config or checkpoint.
        ValueError: the config is not sparse, the checkpoint does not fit
            it, the config makes a layer N:M that the run trained dense or
            at another pattern, or a weight is not N:M (each message names
            the file/key).
        OSError: ``out`` is a folder or cannot be written.
    """
    check_output_file(out)
    model = build_sparse_model(config, cfg_options)
    load_weights(model, checkpoint)
    check_trained_patterns(model, checkpoint)
    patterns = sparse_weight_patterns(model)
    try:
        with writing(out):
            layers = save_nm_checkpoint(
                export_state_dict(model),
                patterns,
                out,
                source=osp.abspath(checkpoint))
    except ValueError as err:
        raise ValueError(f'{checkpoint}: {err}') from None
    return SparsitySummary(layers)


def check_trained_patterns(model: nn.Module, checkpoint: str) -> None:
    """Raise ``ValueError`` naming the layers that ``model`` (built from a
    config) makes N:M but an mmnm ``checkpoint`` records as trained dense
    (excluded, or still in the dense warm-up) or at another pattern: masking
    them now would prune weights that never trained N:M. Checkpoints
    without mmnm's record pass."""
    trained = checkpoint_patterns(read_checkpoint(checkpoint))
    if trained is None:
        return
    wrong = [
        f'{name} ({trained.get(name, "dense")} in the checkpoint, '
        f'{layer.nm} in the config)'
        for name, layer in sparse_layer_slots(model).items()
        if trained.get(name) != layer.nm
    ]
    if wrong:
        raise ValueError(
            f'{checkpoint}: the config makes {len(wrong)} layers N:M that '
            'this run did not train so: ' + ', '.join(wrong) + '. Export '
            'with the config the run was trained with (its work dir holds a '
            'copy), or after its dense warm-up.')


def verify_nm_checkpoint(
        config: ConfigType,
        checkpoint: str,
        cfg_options: Optional[dict] = None) -> SparsitySummary:
    """Check that the weights stored in ``checkpoint`` (e.g. an export) are
    exactly N:M wherever the sparse ``config`` makes a layer N:M.

    Raises:
        FileNotFoundError: no such config or checkpoint.
        ValueError: a sparse weight is missing or not N:M (all named).
    """
    patterns = sparse_weight_patterns(build_sparse_model(config, cfg_options))
    saved = read_checkpoint(checkpoint)
    state = saved.get('state_dict', saved)
    try:
        return SparsitySummary(check_nm_state_dict(state, patterns))
    except ValueError as err:
        raise ValueError(f'{checkpoint}: {err}') from None
