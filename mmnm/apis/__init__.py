"""The Python API of mmnm, in the style of ``mmdet.apis``: models, N:M
checkpoints and 2:4 inference models from configs.

Every function raises exceptions (``FileNotFoundError``, ``ValueError``
naming the file, key or layer), never ``SystemExit``; the tools under
``tools/`` are thin command lines over them.

Example:
    >>> from mmnm.apis import (build_sparse_model, export_nm_checkpoint,
    ...                        convert_checkpoint_to_sparse24,
    ...                        load_sparse24_model)
    >>> config = 'configs/demo/fcn_r18-d8_2-4_shapes-64x64.py'
    >>> model, report = build_sparse_model(config, return_report=True)
    >>> print(report.table())                  # one row per Conv/Linear
    >>> export_nm_checkpoint(config, 'iter_300.pth', 'fcn_nm.pth')
    >>> convert_checkpoint_to_sparse24(config, 'fcn_nm.pth', 'fcn_24.pth')
    >>> model = load_sparse24_model(config, 'fcn_24.pth')
"""
from mmnm.conversion import (measure_sparsity, sparsify_model,
                             verify_nm_sparsity)
from mmnm.deploy import convert_to_sparse24
from .checkpoints import export_nm_checkpoint, verify_nm_checkpoint
from .config import (check_data_roots, config_sparsity, load_config,
                     redirect_data_root, sparsity_hook_cfgs, without_sparsity)
from .models import (build_model, build_sparse_model, init_nm_model,
                     load_weights)
from .runner import build_runner, evaluate_checkpoint
from .sparse24 import (SPARSE24_DTYPES, Sparse24Conversion,
                       convert_checkpoint_to_sparse24, load_sparse24_model)

__all__ = [
    'SPARSE24_DTYPES', 'Sparse24Conversion', 'build_model', 'build_runner',
    'build_sparse_model', 'check_data_roots', 'config_sparsity',
    'convert_checkpoint_to_sparse24', 'convert_to_sparse24',
    'evaluate_checkpoint', 'export_nm_checkpoint', 'init_nm_model',
    'load_config', 'load_sparse24_model', 'load_weights', 'measure_sparsity',
    'redirect_data_root', 'sparsify_model', 'sparsity_hook_cfgs',
    'verify_nm_checkpoint', 'verify_nm_sparsity', 'without_sparsity'
]
