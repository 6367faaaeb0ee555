"""xAAEnet with a built-in torchvision ResNet encoder."""

from __future__ import annotations

import torch

from .encoders import build_encoder
from .user_encoder import EncoderWithAAEBlocks
from .xaae_blocks import DynamicUnetSkipDropout, ImageNetNormalize, ResizeToOrig, UnetBlock

__all__ = ["AAE", "UnetBlock", "DynamicUnetSkipDropout", "ResizeToOrig", "default_device"]


def default_device() -> torch.device:
    """CUDA when available, then Apple MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class AAE(EncoderWithAAEBlocks):
    """The explainable xAAEnet model with a ResNet encoder.

    An encoder maps an image in [0, 1] to a latent vector ``z`` (``model.z`` after a forward pass); a decoder
    reconstructs the image from ``z``; a critic pushes ``z`` toward N(0, I); a linear classifier reads the
    binary label from ``z``. ``forward`` returns the class logits ``(B, 2)``.

    Parameters
    ----------
    input_size
        Image side in pixels (int) or ``(height, width)``; at least 32.
    input_channels
        1 (grey) or 3 (RGB).
    encoder
        A name from `tell_me_why.encoders.available_encoders` (``resnet18``, ``resnet34``, ``resnet50``).
    pretrained
        Load ImageNet weights (needs the internet or a pre-seeded torch hub cache; fails with a clear message
        otherwise). ``False`` starts from random weights and never touches the network.
    """

    def __init__(
        self,
        input_size: int | tuple[int, int] = 256,
        input_channels: int = 3,
        encoding_dims: int = 128,
        classes: int = 2,
        gen_train: bool = True,
        skip_dropout: float = 1,
        encoder: str = "resnet34",
        pretrained: bool = True,
        freeze_encoder: bool = False,
    ):
        super().__init__(
            build_encoder(encoder, pretrained=pretrained, in_channels=input_channels),
            input_size=input_size,
            input_channels=input_channels,
            encoding_dims=encoding_dims,
            classes=classes,
            gen_train=gen_train,
            skip_dropout=skip_dropout,
            freeze_encoder=freeze_encoder,
            input_transform=ImageNetNormalize(input_channels),
        )
        self.encoder_name = encoder
        self.pretrained = pretrained
