"""A small deterministic dataset of coloured shapes, generated in seconds,
so that detection and segmentation runs need no download.

Each image holds a few non-overlapping rectangles, ellipses and triangles on
a noisy background. One call writes, per split:

- ``images/<split>/<id>.png``: RGB images;
- ``seg_maps/<split>/<id>.png``: semantic label maps (0 background, 1..3
  the shape classes), for mmseg's ``BaseSegDataset``;
- ``annotations/instances_<split>.json``: COCO boxes and polygon instance
  masks, for mmdet's ``CocoDataset``.
"""
import json
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

CLASSES: Tuple[str, ...] = ('rectangle', 'ellipse', 'triangle')
#: mmseg class names and palette: background first.
SEG_CLASSES: Tuple[str, ...] = ('background', ) + CLASSES
SEG_PALETTE: List[List[int]] = [[0, 0, 0], [220, 20, 60], [0, 130, 200],
                                [60, 180, 75]]


def _shape_polygon(kind: int, box: Tuple[int, int, int, int],
                   rng: np.random.Generator) -> np.ndarray:
    """Outline (int32, (P, 2) as x, y) of a shape inside ``box``."""
    x0, y0, x1, y1 = box
    if kind == 0:
        return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.int32)
    if kind == 1:
        center = ((x0 + x1) // 2, (y0 + y1) // 2)
        axes = ((x1 - x0) // 2, (y1 - y0) // 2)
        return cv2.ellipse2Poly(center, axes, 0, 0, 360, 15).astype(np.int32)
    apex = int(rng.integers(x0, x1 + 1))
    return np.array([[apex, y0], [x1, y1], [x0, y1]], np.int32)


def _draw_image(rng: np.random.Generator, size: int, max_shapes: int):
    """One image, its label map and its instances (class, polygon)."""
    image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
    labels = np.zeros((size, size), np.uint8)
    cells = 2  # a 2x2 grid keeps shapes apart, so polygons stay exact
    cell = size // cells
    slots = rng.permutation(cells * cells)[:rng.integers(1, max_shapes + 1)]
    instances = []
    for slot in slots:
        row, col = divmod(int(slot), cells)
        w, h = rng.integers(cell // 3, cell - 4, size=2)
        x0 = col * cell + int(rng.integers(2, cell - w - 1))
        y0 = row * cell + int(rng.integers(2, cell - h - 1))
        kind = int(rng.integers(len(CLASSES)))
        polygon = _shape_polygon(kind, (x0, y0, x0 + int(w), y0 + int(h)), rng)
        color = [int(c) for c in rng.integers(120, 256, 3)]
        cv2.fillPoly(image, [polygon], color)
        cv2.fillPoly(labels, [polygon], kind + 1)
        instances.append((kind, polygon))
    return image, labels, instances


def generate_shapes_dataset(root: str,
                            splits: Dict[str, int] = None,
                            size: int = 64,
                            max_shapes: int = 3,
                            seed: int = 0) -> Dict[str, str]:
    """Write the dataset under ``root`` (skipped when already complete) and
    return the COCO annotation file of each split.

    Args:
        splits: images per split. Defaults to ``{'train': 64, 'val': 16}``.
        size: image height and width in pixels.
        max_shapes: at most this many shapes (<= 4) per image.
        seed: the same seed gives byte-identical files.
    """
    splits = splits or {'train': 64, 'val': 16}
    ann_files = {}
    for index, (split, count) in enumerate(sorted(splits.items())):
        ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
        ann_files[split] = ann_file
        if osp.exists(ann_file):
            with open(ann_file) as f:
                meta = json.load(f).get('info', {})
            if meta == _info(count, size, max_shapes, seed):
                continue
        _write_split(root, split, count, size, max_shapes, seed + index,
                     _info(count, size, max_shapes, seed))
    return ann_files


def _info(count: int, size: int, max_shapes: int, seed: int) -> dict:
    return dict(
        description='mmnm shapes demo',
        images=count,
        size=size,
        max_shapes=max_shapes,
        seed=seed)


def _write_split(root: str, split: str, count: int, size: int, max_shapes: int,
                 seed: int, info: dict) -> None:
    rng = np.random.default_rng(seed)
    for sub in ('images', 'seg_maps'):
        os.makedirs(osp.join(root, sub, split), exist_ok=True)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    images, annotations = [], []
    for image_id in range(count):
        image, labels, instances = _draw_image(rng, size, max_shapes)
        name = f'{image_id:05d}.png'
        cv2.imwrite(osp.join(root, 'images', split, name), image[..., ::-1])
        cv2.imwrite(osp.join(root, 'seg_maps', split, name), labels)
        images.append(
            dict(id=image_id, file_name=name, width=size, height=size))
        for kind, polygon in instances:
            annotations.append(
                _coco_annotation(
                    len(annotations) + 1, image_id, kind, polygon))
    coco = dict(
        info=info,
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name) for i, name in enumerate(CLASSES)
        ])
    with open(osp.join(root, 'annotations', f'instances_{split}.json'),
              'w') as f:
        json.dump(coco, f)


def _coco_annotation(ann_id: int, image_id: int, kind: int,
                     polygon: np.ndarray) -> dict:
    x0, y0 = polygon.min(0)
    x1, y1 = polygon.max(0)
    area = float(cv2.contourArea(polygon.astype(np.float32)))
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=kind + 1,
        bbox=[int(x0), int(y0),
              int(x1 - x0 + 1),
              int(y1 - y0 + 1)],
        area=area,
        segmentation=[polygon.flatten().tolist()],
        iscrowd=0)


def shapes_metainfo(task: str) -> Dict[str, Sequence]:
    """``metainfo`` for mmdet (``task='det'``) or mmseg (``'seg'``): the
    ``METAINFO`` of ``ShapesCocoDataset`` and ``ShapesSegDataset``. A new
    palette each call, so changing one leaves the constants as they are."""
    if task == 'seg':
        return dict(
            classes=SEG_CLASSES, palette=[list(p) for p in SEG_PALETTE])
    if task == 'det':
        return dict(
            classes=CLASSES, palette=[tuple(p) for p in SEG_PALETTE[1:]])
    raise ValueError(f"task must be 'det' or 'seg', not {task!r}")
