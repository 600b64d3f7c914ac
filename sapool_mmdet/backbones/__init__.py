"""Backbones whose down-sampling layers can be any registered pooling."""
from .mobilenet_v2 import NLPoolMobileNetV2

__all__ = ['NLPoolMobileNetV2']
