"""The hook that writes every checkpoint of a run with exactly N:M
weights (see :mod:`mmnm.conversion.checkpoint`)."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmnm.conversion import encode_nm_checkpoint, sparse_layer_slots
from mmnm.registry import HOOKS


@HOOKS.register_module()
class NMCheckpointHook(Hook):
    """Store every sparse weight of every weight set of a checkpoint masked
    (what the sparse layer's forward uses), with the pruned values kept
    apart so that resuming restores the dense weights exactly.

    :class:`NMSparsityHook` registers it when the run starts. Its priority
    is ``LOWEST`` so that it sees the checkpoint after every other hook
    wrote to it: ``EMAHook`` swaps the averaged weights into ``state_dict``
    and the raw ones into ``ema_state_dict``, and both get masked. Loading
    is the reverse and happens first, in :class:`NMSparsityHook`.
    """

    priority = 'LOWEST'

    def __init__(self) -> None:
        self._warned = False

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        layers = sparse_layer_slots(model)
        if not isinstance(checkpoint.get('state_dict'), dict):
            if not self._warned:
                runner.logger.warning(
                    'NMCheckpointHook: this checkpoint has no state_dict '
                    '(e.g. a sharded DeepSpeed/FSDP one), so its sparse '
                    'weights stay dense: export the model with '
                    'tools/model_converters/export_nm.py for an N:M file')
                self._warned = True
            return
        encode_nm_checkpoint(checkpoint, layers)
