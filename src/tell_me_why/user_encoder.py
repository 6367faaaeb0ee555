"""The original ``tell_me_why.user_encoder`` module: the xAAEnet blocks around an encoder of your own.

Kept for the original API; the model lives in :mod:`tell_me_why.xaaenet`."""

from ._utils.classifier import set_module_trainable
from .xaaenet.model import PARAMETER_GROUPS, EncoderWithAAEBlocks, add_xaae_blocks

__all__ = ["set_module_trainable", "EncoderWithAAEBlocks", "add_xaae_blocks", "PARAMETER_GROUPS"]
