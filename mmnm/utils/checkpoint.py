"""Let mmengine checkpoints load under PyTorch's ``weights_only`` loading.

PyTorch >= 2.6 unpickles checkpoints with ``weights_only=True`` by default,
and mmengine 0.10 calls ``torch.load`` without choosing, so resuming fails on
the few non-tensor types that mmengine checkpoints hold (``HistoryBuffer``
and numpy scalars/arrays in the message hub). Rather than switch the safety
off, this allow-lists exactly those types. ``HistoryBuffer`` pickles its
statistics methods as ``getattr(HistoryBuffer, name)``; ``getattr`` itself
would open every attribute of every allowed object to a checkpoint, so a
restricted stand-in is registered under that name instead.
"""
import inspect
import os.path as osp
import pickle
from typing import Any, Dict, List

import numpy as np
import torch
from mmengine.logging import HistoryBuffer

#: The statistics methods of HistoryBuffer. A fixed set: the class-level
#: registry of statistics grows from the checkpoints being loaded, so it
#: cannot decide what a checkpoint may fetch.
_STATISTICS = frozenset(('min', 'max', 'current', 'mean'))


def _history_buffer_getattr(obj: Any, name: Any) -> Any:
    """``getattr`` limited to the statistics methods of ``HistoryBuffer``."""
    if obj is HistoryBuffer and isinstance(name, str) and \
            name in _STATISTICS and \
            inspect.isfunction(HistoryBuffer.__dict__.get(name)):
        return getattr(obj, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({obj!r}, {name!r}); mmnm allows '
        'getattr only for HistoryBuffer statistics methods')


def _numpy_globals() -> List[Any]:
    """numpy's array/scalar reconstructors, under the module path that this
    numpy version pickles them with."""
    reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]
    scalar = np.float64(0).__reduce__()[0]
    dtypes = [
        type(np.dtype(name))
        for name in ('bool', 'int32', 'int64', 'float16', 'float32', 'float64')
    ]
    return [np.ndarray, np.dtype, reconstruct, scalar] + dtypes


def register_checkpoint_safe_globals() -> None:
    """Allow-list what mmengine checkpoints hold (no-op on PyTorch < 2.4,
    which does not restrict loading by default)."""
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is None:
        return
    add_safe_globals([
        HistoryBuffer, *_numpy_globals(),
        (_history_buffer_getattr, 'builtins.getattr')
    ])


def read_checkpoint(path: str) -> Dict[str, Any]:
    """The dict saved in the checkpoint file ``path`` (on the CPU).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a checkpoint (not loadable, or not a
            dict); the message names the file.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint not found: {path}')
    try:
        saved = torch.load(path, map_location='cpu')
    except Exception as err:  # noqa: B902 (unpickling fails in many ways)
        raise ValueError(f'{path}: not a readable checkpoint: '
                         f'{type(err).__name__}: {err}') from None
    if not isinstance(saved, dict):
        raise ValueError(f'{path}: not a checkpoint (holds a '
                         f'{type(saved).__name__}, not a dict)')
    return saved
