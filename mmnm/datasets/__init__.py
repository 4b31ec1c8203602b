"""Generated demo data, and its datasets for mmdet and mmseg.

Importing this package registers ``ShapesCocoDataset`` in mmdet's
``DATASETS`` and ``ShapesSegDataset`` in mmseg's, each left out where its
library is not installed. The demo configs import it
(``custom_imports = dict(imports=['mmnm.datasets'])``); ``import mmnm``
does not, so that it imports neither mmdet nor mmseg.
"""
from .shapes import (CLASSES, SEG_CLASSES, SEG_PALETTE,
                     generate_shapes_dataset, shapes_metainfo)

__all__ = [
    'CLASSES', 'SEG_CLASSES', 'SEG_PALETTE', 'generate_shapes_dataset',
    'shapes_metainfo'
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
