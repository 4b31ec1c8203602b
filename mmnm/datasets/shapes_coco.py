"""The shapes data as an mmdet dataset, ``type='ShapesCocoDataset'``.

Importing this module imports mmdet; configs do it through
``custom_imports = dict(imports=['mmnm.datasets'])``, ``import mmnm`` does
not.
"""
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS

from .shapes import shapes_metainfo


@DATASETS.register_module()
class ShapesCocoDataset(CocoDataset):
    """The COCO annotations ``annotations/instances_<split>.json`` that
    :func:`~mmnm.datasets.generate_shapes_dataset` writes: mmdet's
    ``CocoDataset`` with the shapes' class names and palette, so that
    configs and mmdet's ``CocoMetric`` (which reads them from the dataset)
    take them from :mod:`mmnm.datasets.shapes`."""

    METAINFO = shapes_metainfo('det')
