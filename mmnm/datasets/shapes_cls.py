"""The shapes classification data as an mmpretrain dataset,
``type='ShapesClsDataset'``.

Importing this module imports mmpretrain; configs do it through
``custom_imports = dict(imports=['mmnm.datasets'])``, ``import mmnm`` does
not.
"""
from mmpretrain.datasets import CustomDataset
from mmpretrain.registry import DATASETS

from .shapes_cls_data import CLS_CLASSES


@DATASETS.register_module()
class ShapesClsDataset(CustomDataset):
    """The images and ``meta/<split>.txt`` lists that
    :func:`~mmnm.datasets.generate_shapes_cls_dataset` writes: mmpretrain's
    ``CustomDataset`` (the ImageNet layout) with the eight class names, so
    that ``Accuracy`` and the visualizer take them from
    :mod:`mmnm.datasets.shapes_cls_data`.

    Args:
        split: ``'train'`` or ``'val'``; sets ``data_prefix`` and
            ``ann_file`` unless they are given.
        **kwargs: ``CustomDataset``'s other arguments (``data_root``,
            ``pipeline``, ...).
    """

    METAINFO = dict(classes=CLS_CLASSES)

    def __init__(self, split: str = 'train', **kwargs) -> None:
        kwargs.setdefault('data_prefix', split)
        kwargs.setdefault('ann_file', f'meta/{split}.txt')
        super().__init__(**kwargs)
