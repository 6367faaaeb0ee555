"""The original ``tell_me_why.model_aae`` module: xAAEnet with a built-in torchvision ResNet encoder.

Kept for the original API; the model lives in :mod:`tell_me_why.xaaenet`."""

from ._utils.devices import default_device
from .xaaenet.blocks import DynamicUnetSkipDropout, ResizeToOrig, UnetBlock
from .xaaenet.model import AAE

__all__ = ["AAE", "UnetBlock", "DynamicUnetSkipDropout", "ResizeToOrig", "default_device"]
