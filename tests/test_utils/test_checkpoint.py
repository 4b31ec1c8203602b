"""mmengine checkpoints load with PyTorch's default ``weights_only=True``
once mmnm is imported, without opening ``torch.load`` to arbitrary code."""
import pickle

import pytest
import torch
from mmengine.logging import HistoryBuffer, MessageHub

import mmnm  # noqa: F401  (registers the allow-list)


def test_message_hub_state_loads_weights_only(tmp_path):
    hub = MessageHub.get_instance('ckpt-test')
    for value in (1.0, 2.0, 4.0):
        hub.update_scalar('train/loss', value)
    import numpy as np
    hub.update_info('seed', np.int64(7))
    path = tmp_path / 'ckpt.pth'
    torch.save(dict(message_hub=hub.state_dict(), meta=dict(iter=3)), path)

    loaded = torch.load(path)  # weights_only is the default on torch >= 2.6
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.mean() == pytest.approx(7 / 3)
    assert buffer.current() == 4.0
    assert loaded['message_hub']['runtime_info']['seed'] == 7


class _Reach:
    """Pickles as ``getattr(HistoryBuffer, name)``: a first step from an
    allowed class towards its module's globals."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __reduce__(self):
        return (getattr, (HistoryBuffer, self.name))


def test_getattr_stays_closed_beyond_statistics(tmp_path):
    allowed, blocked = tmp_path / 'ok.pth', tmp_path / 'evil.pth'
    torch.save(dict(stat=_Reach('mean')), allowed)
    assert torch.load(allowed)['stat'] is HistoryBuffer.mean
    torch.save(dict(payload=_Reach('__init__')), blocked)
    with pytest.raises(pickle.UnpicklingError, match='getattr'):
        torch.load(blocked)
