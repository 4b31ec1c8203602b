"""Generated demo data, and its datasets for mmdet, mmseg and mmpretrain.

Importing this package registers ``ShapesCocoDataset`` in mmdet's
``DATASETS``, ``ShapesSegDataset`` in mmseg's and ``ShapesClsDataset`` in
mmpretrain's, each left out where its library is not installed. The demo
configs import it (``custom_imports = dict(imports=['mmnm.datasets'])``);
``import mmnm`` does not, so that it imports none of them.
"""
from .shapes import (CLASSES, SEG_CLASSES, SEG_PALETTE,
                     generate_shapes_dataset, shapes_metainfo)
from .shapes_cls_data import CLS_CLASSES, generate_shapes_cls_dataset

__all__ = [
    'CLASSES', 'CLS_CLASSES', 'SEG_CLASSES', 'SEG_PALETTE',
    'generate_shapes_cls_dataset', 'generate_shapes_dataset', 'shapes_metainfo'
]

try:
    from .shapes_coco import ShapesCocoDataset
except ModuleNotFoundError as error:
    if error.name != 'mmdet':  # mmdet is there but fails: say why
        raise
else:
    __all__ += ['ShapesCocoDataset']

try:
    from .shapes_seg import ShapesSegDataset
except ModuleNotFoundError as error:
    if error.name != 'mmseg':
        raise
else:
    __all__ += ['ShapesSegDataset']

try:
    from .shapes_cls import ShapesClsDataset
except ModuleNotFoundError as error:
    if error.name != 'mmpretrain':
        raise
else:
    __all__ += ['ShapesClsDataset']
