"""Generated demo data."""
from .shapes import (CLASSES, SEG_CLASSES, SEG_PALETTE,
                     generate_shapes_dataset, shapes_metainfo)

__all__ = [
    'CLASSES', 'SEG_CLASSES', 'SEG_PALETTE', 'generate_shapes_dataset',
    'shapes_metainfo'
]
