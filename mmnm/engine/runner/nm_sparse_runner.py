"""A Runner that makes the model N:M sparse, as the config's ``sparsity``
dict says, before anything else sees the model."""
from typing import Dict, Union

from mmengine.runner import Runner
from torch import nn

from mmnm.conversion import sparsify_model
from mmnm.registry import RUNNERS


@RUNNERS.register_module()
class NMSparseRunner(Runner):
    """:class:`~mmengine.runner.Runner` that sparsifies the built model.

    The model is converted right after it is built, so weight init, the
    optimizer, DDP, checkpoint loading and resuming all see the sparse
    layers. The stock ``tools/train.py`` and ``tools/test.py`` of mmdet and
    mmseg build it from the config alone::

        custom_imports = dict(imports=['mmnm'], allow_failed_imports=False)
        runner_type = 'NMSparseRunner'
        sparsity = dict(pattern='2:4', exclude=['roi_head.bbox_head.fc_*'])

    ``sparsity`` holds the arguments of
    :func:`mmnm.conversion.sparsify_model`. The per-layer decisions are
    logged as a table.
    """

    def build_model(self, model: Union[nn.Module, Dict]) -> nn.Module:
        model = super().build_model(model)
        sparsity = self.cfg.get('sparsity')
        if sparsity is None:
            raise KeyError('NMSparseRunner: the config has no `sparsity` '
                           "dict, e.g. sparsity = dict(pattern='2:4')")
        try:
            report = sparsify_model(model, **sparsity)
        except TypeError as err:
            raise TypeError(f'config key `sparsity`: {err}') from None
        self.logger.info('N:M sparsity of the model:\n' + report.table())
        return model
