"""The shapes data as an mmseg dataset, ``type='ShapesSegDataset'``.

Importing this module imports mmseg; configs do it through
``custom_imports = dict(imports=['mmnm.datasets'])``, ``import mmnm`` does
not.
"""
from mmseg.datasets import BaseSegDataset
from mmseg.registry import DATASETS

from .shapes import shapes_metainfo


@DATASETS.register_module()
class ShapesSegDataset(BaseSegDataset):
    """The images and label maps that
    :func:`~mmnm.datasets.generate_shapes_dataset` writes
    (``images/<split>/*.png``, ``seg_maps/<split>/*.png``, 0 the
    background): mmseg's ``BaseSegDataset`` with the shapes' class names
    and palette, background first, so that configs and mmseg's
    ``IoUMetric`` (which reads them from the dataset) take them from
    :mod:`mmnm.datasets.shapes`.

    Args:
        img_suffix: the images' suffix. Defaults to ``'.png'``.
        seg_map_suffix: the label maps' suffix. Defaults to ``'.png'``.
        reduce_zero_label: ``False``: label 0 is the background class,
            not an ignored one.
        **kwargs: ``BaseSegDataset``'s other arguments (``data_root``,
            ``data_prefix``, ``pipeline``, ...).
    """

    METAINFO = shapes_metainfo('seg')

    def __init__(self,
                 img_suffix: str = '.png',
                 seg_map_suffix: str = '.png',
                 reduce_zero_label: bool = False,
                 **kwargs) -> None:
        super().__init__(
            img_suffix=img_suffix,
            seg_map_suffix=seg_map_suffix,
            reduce_zero_label=reduce_zero_label,
            **kwargs)
