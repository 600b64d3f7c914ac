"""Backbones whose down-sampling layers can be any registered pooling."""
from .mobilenet_v2 import NLPoolMobileNetV2
from .resnet import NLPoolResNet

__all__ = ['NLPoolMobileNetV2', 'NLPoolResNet']
