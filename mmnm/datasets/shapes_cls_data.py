"""A small deterministic classification dataset of shapes, generated in
seconds, so that classification runs need no download.

Each image holds one shape of eight classes, small, rotated and of a random
colour, on a noisy background with thin clutter strokes. Polygons with
5, 6 and many corners (pentagon, hexagon, ellipse) look alike at a few
pixels, so a small network trained for minutes stays well below 100%:
accuracy differs measurably between dense and N:M models.

The files are in mmpretrain's ImageNet layout: ``<split>/<class>/<id>.png``
and ``meta/<split>.txt`` (``<class>/<id>.png <label>`` per line), which
``ShapesClsDataset`` (mmpretrain's ``CustomDataset``) reads.
"""
import json
import os
import os.path as osp
from typing import Dict, Tuple

import cv2
import numpy as np

CLS_CLASSES: Tuple[str, ...] = ('rectangle', 'ellipse', 'triangle', 'diamond',
                                'pentagon', 'hexagon', 'star', 'cross')


def _regular(corners: int, radius: float, inner: float = 1.0) -> np.ndarray:
    """Corners of a regular polygon (or a star, ``inner`` < 1) around 0."""
    steps = corners * (2 if inner < 1 else 1)
    angles = np.arange(steps) * 2 * np.pi / steps
    radii = np.where(np.arange(steps) % 2, inner, 1.0) if inner < 1 else 1.0
    return np.stack([np.cos(angles), np.sin(angles)], 1) * (
        radius * np.reshape(radii, (-1, 1)))


def shape_outline(kind: int, radius: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Outline (float, (P, 2)) of class ``kind`` of :data:`CLS_CLASSES`
    around 0, about ``radius`` pixels from centre to edge, rotated."""
    name = CLS_CLASSES[kind]
    if name == 'rectangle':
        aspect = rng.uniform(0.5, 0.8)
        outline = np.array([[-1, -aspect], [1, -aspect], [1, aspect],
                            [-1, aspect]]) * radius
    elif name == 'ellipse':
        angles = np.linspace(0, 2 * np.pi, 36, endpoint=False)
        aspect = rng.uniform(0.75, 1.0)
        outline = np.stack([np.cos(angles), aspect * np.sin(angles)],
                           1) * radius
    elif name == 'diamond':
        outline = np.array([[-1, 0], [0, -0.6], [1, 0], [0, 0.6]]) * radius
    elif name == 'cross':
        arm = rng.uniform(0.3, 0.45)
        outline = np.array([[-arm, -1], [arm, -1], [arm, -arm], [1, -arm],
                            [1, arm], [arm, arm], [arm, 1], [-arm, 1],
                            [-arm, arm], [-1, arm], [-1, -arm], [-arm, -arm]
                            ]) * radius
    else:
        corners = dict(triangle=3, pentagon=5, hexagon=6, star=5)[name]
        outline = _regular(corners, radius, 0.5 if name == 'star' else 1.0)
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)],
                         [np.sin(angle), np.cos(angle)]])
    return outline @ rotation.T


def draw_cls_image(kind: int, size: int,
                   rng: np.random.Generator) -> np.ndarray:
    """One RGB image (uint8, ``size`` x ``size`` x 3) of class ``kind``."""
    image = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
    for _ in range(int(rng.integers(2, 5))):  # clutter strokes
        start, end = rng.integers(0, size, (2, 2))
        color = [int(c) for c in rng.integers(60, 200, 3)]
        cv2.line(image, tuple(map(int, start)), tuple(map(int, end)), color, 1,
                 cv2.LINE_AA)
    radius = rng.uniform(0.08, 0.22) * size
    center = rng.uniform(radius + 1, size - radius - 1, 2)
    outline = shape_outline(kind, radius, rng) + center
    color = [int(c) for c in rng.integers(90, 256, 3)]
    cv2.fillPoly(image, [np.round(outline * 4).astype(np.int32)], color,
                 cv2.LINE_AA, 2)  # 2 fractional bits: sub-pixel corners
    return image


def generate_shapes_cls_dataset(root: str,
                                splits: Dict[str, int] = None,
                                size: int = 64,
                                seed: int = 0) -> Dict[str, str]:
    """Write the dataset under ``root`` (skipped when already complete) and
    return the annotation list of each split.

    Args:
        splits: images per split, classes balanced. Defaults to
            ``{'train': 2000, 'val': 800}``.
        size: image height and width in pixels.
        seed: the same seed gives byte-identical files.
    """
    splits = splits or {'train': 2000, 'val': 800}
    ann_files = {}
    for index, (split, count) in enumerate(sorted(splits.items())):
        ann_file = osp.join(root, 'meta', f'{split}.txt')
        ann_files[split] = ann_file
        info = dict(
            description='mmnm shapes classification demo',
            classes=list(CLS_CLASSES),
            images=count,
            size=size,
            seed=seed)
        info_file = osp.join(root, 'meta', f'{split}.json')
        if osp.exists(ann_file) and osp.exists(info_file):
            with open(info_file) as f:
                if json.load(f) == info:
                    continue
        _write_split(root, split, count, size, seed + index)
        with open(info_file, 'w') as f:  # last: marks the split complete
            json.dump(info, f)
    return ann_files


def _write_split(root: str, split: str, count: int, size: int,
                 seed: int) -> None:
    rng = np.random.default_rng(seed)
    for name in CLS_CLASSES:
        os.makedirs(osp.join(root, split, name), exist_ok=True)
    os.makedirs(osp.join(root, 'meta'), exist_ok=True)
    lines = []
    for image_id in range(count):
        kind = image_id % len(CLS_CLASSES)
        image = draw_cls_image(kind, size, rng)
        path = f'{CLS_CLASSES[kind]}/{image_id:05d}.png'
        cv2.imwrite(osp.join(root, split, path), image[..., ::-1])
        lines.append(f'{path} {kind}\n')
    with open(osp.join(root, 'meta', f'{split}.txt'), 'w') as f:
        f.writelines(lines)
