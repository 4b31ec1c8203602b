"""The model the benchmarks share: a ResNet backbone as mmdet builds it, or
torchvision's where mmdet cannot be imported (mmcv without its compiled
ops, as on the GPU check's machines). Both are ResNet v1.5 (the stride in
the 3x3 conv), so their convs have the same shapes."""
from typing import Tuple

from torch import nn


def torchvision_backbone(depth: int = 50) -> nn.Module:
    """torchvision's ResNet of ``depth`` without its pooling and classifier
    (output: the last stage)."""
    from torchvision import models
    net = getattr(models, f'resnet{depth}')(weights=None)
    return nn.Sequential(*list(net.children())[:-2])


def resnet_backbone(depth: int = 50) -> Tuple[nn.Module, str]:
    """mmdet's ResNet of ``depth`` (outputs: its 4 stages), else
    :func:`torchvision_backbone`; and the name of the one built."""
    try:
        from mmdet.models.backbones import ResNet
    except ImportError as err:
        print(f'mmdet not importable ({err}): torchvision\'s ResNet-{depth}')
        return torchvision_backbone(depth), 'torchvision'
    return ResNet(depth=depth), 'mmdet'
