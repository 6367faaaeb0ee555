"""Explanations only a model with a decoder can give: what the decision axis looks like in pixels (traversal), the
smallest move in latent space that flips the decision (latent counterfactual), and the training images nearest in
latent space (explanation by example).

The decision axis is the linear classifier's direction in latent space, ``w = W[class_a] - W[class_b]``: the logit
difference is ``w . z + b``, so moving ``z`` along ``w`` is the shortest way to change the decision. Since the
prior of ``z`` is N(0, I), distances in ``z`` are in prior standard deviations.

Every decoded image is compared with the decoded original (the reconstruction), never with the original pixels: the
decoder's blur is in both, so their difference shows what the move changed, not what the decoder loses. When the
decoder has skip connections, every moved ``z`` is decoded with the skip activations of the original image: they
carry image detail that ``z`` does not, which keeps the image's layout but can also hold a change back.

Images may be given on any device: the model runs on its own. Results are for figures and reports: the tensors of
:class:`AxisTraversal` and :class:`LatentCounterfactuals` are on the CPU, :class:`LatentNeighbours` holds NumPy
arrays; :class:`DecisionAxis` stays on the model's device.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Literal

import numpy as np
import torch
from pytorch_msssim import ssim
from torch import Tensor, nn

from .._utils.classifier import eval_mode
from .._utils.devices import module_device
from .latents import LatentSplit
from .model import EncoderWithAAEBlocks

__all__ = [
    "DecisionAxis",
    "decision_axis",
    "AxisTraversal",
    "traverse_decision_axis",
    "traverse_class_means",
    "LatentCounterfactuals",
    "latent_counterfactual",
    "LatentNeighbours",
    "latent_neighbours",
]

logger = logging.getLogger(__name__)

# How far the traversal goes by default: +-3 prior standard deviations along the axis covers 99.7 % of the prior.
DEFAULT_SPAN = 3.0
# A counterfactual stops once the target class leads by this many logits (probability 0.88).
DEFAULT_MARGIN = 2.0


@dataclass(frozen=True)
class DecisionAxis:
    """The classifier's direction in latent space: ``logit(class_a) - logit(other) = scale * (direction . z) +
    offset``.

    ``direction`` is a unit vector (D,), so ``position(z)``, the signed distance of ``z`` from the decision boundary
    toward class A, is in prior standard deviations.
    """

    direction: Tensor
    scale: float
    offset: float
    class_a: int

    def logit_gap(self, z: Tensor) -> Tensor:
        """``logit(class_a) - logit(other)`` for latent vectors (N, D)."""
        return self.scale * (z @ self.direction.to(z)) + self.offset

    def position(self, z: Tensor) -> Tensor:
        """Signed distance (N,) of each ``z`` from the decision boundary, toward class A, in prior standard
        deviations."""
        return self.logit_gap(z) / self.scale


def decision_axis(model: EncoderWithAAEBlocks, class_a: int = 1) -> DecisionAxis:
    """The decision axis of an xAAEnet's linear classifier (``model.linear``, two outputs), toward ``class_a``."""
    head = model.linear
    if not isinstance(head, nn.Linear) or head.out_features != 2:
        raise TypeError(f"The decision axis needs a linear classifier with two outputs (nn.Linear); this model's is "
                        f"{head!r}. Use latent_counterfactual(..., method='gradient') for another head.")
    if class_a not in (0, 1):
        raise ValueError(f"class_a must be 0 or 1, got {class_a}.")
    weight = head.weight.detach().float()
    w = weight[class_a] - weight[1 - class_a]
    bias = head.bias.detach().float() if head.bias is not None else torch.zeros(2, device=weight.device)
    scale = float(w.norm())
    if scale == 0:
        raise ValueError("The classifier's two weight rows are equal: it has no decision axis (is it trained?).")
    return DecisionAxis(w / scale, scale, float(bias[class_a] - bias[1 - class_a]), class_a)


# -- encoding and decoding in batches, eval mode, no gradients --------------------------------------------------------


def _plain(images: Tensor) -> Tensor:
    # fastai's TensorImage would dispatch every op through __torch_function__ and leak into the results.
    return images.as_subclass(Tensor) if type(images) is not Tensor else images


@torch.no_grad()
def _encode(model: EncoderWithAAEBlocks, images: Tensor, batch_size: int) -> tuple[Tensor, list[Tensor] | None]:
    images = _plain(images).to(module_device(model))
    parts, skip_parts = [], []
    for start in range(0, len(images), batch_size):
        z, skips = model.encode_with_skips(images[start : start + batch_size])
        parts.append(z)
        if skips is not None:
            skip_parts.append(skips)
    skips = [torch.cat(level) for level in zip(*skip_parts)] if skip_parts else None
    return torch.cat(parts), skips


@torch.no_grad()
def _decode(model: EncoderWithAAEBlocks, z: Tensor, skips: list[Tensor] | None, source: Tensor,
            batch_size: int) -> Tensor:
    """Decode ``z`` (N, D); row ``i`` takes the skip activations of image ``source[i]`` (when there are skips)."""
    parts = []
    for start in range(0, len(z), batch_size):
        rows = source[start : start + batch_size]
        parts.append(model.decode(z[start : start + batch_size], [s[rows] for s in skips] if skips else None))
    return torch.cat(parts).float()


@torch.no_grad()
def _probabilities(model: EncoderWithAAEBlocks, images: Tensor, batch_size: int) -> Tensor:
    """The model's class probabilities (N, 2) for images, through the encoder and the classifier."""
    z, _ = _encode(model, images, batch_size)
    return torch.softmax(model.linear(z), 1)


def _ssim(reconstruction: Tensor, images: Tensor) -> Tensor:
    return ssim(reconstruction, images.to(reconstruction), data_range=1.0, size_average=False).cpu()


# -- traversal ------------------------------------------------------------------------------------------------------


@dataclass
class AxisTraversal:
    """Latent vectors moved along the decision axis and decoded.

    Column ``k`` of every row moves that row's ``z`` to the same place on the axis, ``positions[k]`` prior
    standard deviations from the decision boundary (negative: the other class's side; positive: class A's), so
    the columns of different rows line up: the classifier gives them the same probability of class A. Every
    tensor is on the CPU, whatever the model's device.

    Attributes
    ----------
    positions
        (S,) places on the axis, in prior standard deviations from the boundary toward class A.
    t
        (N, S) how far each ``z`` moved along the axis to get there (``z + t * direction``).
    z
        (N, D) the latent vectors traversed (an image's ``z``, or a class mean).
    decoded
        (N, S, C, H, W) the decoded images, in [0, 1].
    reconstruction
        (N, C, H, W) ``z`` itself decoded: what every frame is compared with.
    probability
        (N, S) the classifier's probability of class A for each moved ``z``.
    decoded_probability
        (N, S) the model's probability of class A for each decoded image, read back through the encoder: where it
        follows ``probability``, the decoded frames carry what the classifier reads.
    axis
        The decision axis.
    uses_skips
        Whether the decoder read skip activations (those of the original image, or the class's mean ones).
    """

    positions: Tensor
    t: Tensor
    z: Tensor
    decoded: Tensor
    reconstruction: Tensor
    probability: Tensor
    decoded_probability: Tensor
    axis: DecisionAxis
    uses_skips: bool

    @property
    def changes(self) -> Tensor:
        """(N, S, C, H, W) what would change: ``decoded(z + t w) - decoded(z)``."""
        return self.decoded - self.reconstruction[:, None]


def _traverse(model: EncoderWithAAEBlocks, z: Tensor, skips: list[Tensor] | None, positions: Tensor,
              axis: DecisionAxis, batch_size: int) -> AxisTraversal:
    rows, steps = len(z), len(positions)
    positions = positions.to(z)
    t = positions[None] - axis.position(z)[:, None]
    moved = (z[:, None] + t[..., None] * axis.direction.to(z)).reshape(rows * steps, -1)
    source = torch.arange(rows, device=z.device)
    decoded = _decode(model, moved, skips, source.repeat_interleave(steps), batch_size)
    reconstruction = _decode(model, z, skips, source, batch_size)
    with torch.no_grad():
        probability = torch.softmax(model.linear(moved), 1)[:, axis.class_a].reshape(rows, steps)
    decoded_probability = _probabilities(model, decoded, batch_size)[:, axis.class_a].reshape(rows, steps)
    return AxisTraversal(positions.cpu(), t.cpu(), z.cpu(), decoded.reshape(rows, steps, *decoded.shape[1:]).cpu(),
                         reconstruction.cpu(), probability.cpu(), decoded_probability.cpu(), axis, skips is not None)


def _positions(steps: int, span: float) -> Tensor:
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}.")
    if not span > 0:
        raise ValueError(f"span must be positive, got {span}.")
    return torch.linspace(-span, span, steps)


def traverse_decision_axis(
    model: EncoderWithAAEBlocks,
    images: Tensor,
    steps: int = 7,
    span: float = DEFAULT_SPAN,
    class_a: int = 1,
    batch_size: int = 32,
) -> AxisTraversal:
    """Move each image's ``z`` along the decision axis, from ``span`` prior standard deviations on the other
    class's side of the boundary to ``span`` on class A's side, in ``steps`` places, and decode each.

    ``images`` (N, C, H, W) are in [0, 1], as the model takes them. With skip connections, each image's frames are
    decoded with its own skip activations. The model's modes are left as they were.
    """
    axis = decision_axis(model, class_a)
    with eval_mode(model):
        z, skips = _encode(model, images, batch_size)
        return _traverse(model, z, skips, _positions(steps, span), axis, batch_size)


def traverse_class_means(
    model: EncoderWithAAEBlocks,
    images: Tensor,
    labels: Tensor | Sequence[int],
    steps: int = 7,
    span: float | None = None,
    class_a: int = 1,
    batch_size: int = 32,
) -> AxisTraversal:
    """The traversal of :func:`traverse_decision_axis` from each class's mean ``z`` (row ``c`` is class ``c``).

    ``labels`` (N,) are the images' classes (0 or 1). ``span`` None goes past both class means (to the next half
    SD), and at least ``DEFAULT_SPAN``. With skip connections, a class mean is decoded with the mean skip
    activations of the class's images.
    """
    labels = torch.as_tensor(labels).reshape(-1).cpu()
    if len(labels) != len(images):
        raise ValueError(f"{len(labels)} labels for {len(images)} images.")
    missing = [c for c in (0, 1) if not (labels == c).any()]
    if missing:
        raise ValueError(f"No image of class {missing}: a class mean needs at least one.")
    axis = decision_axis(model, class_a)
    with eval_mode(model):
        z, skips = _encode(model, images, batch_size)
        members = [(labels == c).to(z.device) for c in (0, 1)]
        means = torch.stack([z[m].mean(0) for m in members])
        mean_skips = [torch.stack([s[m].mean(0) for m in members]) for s in skips] if skips else None
        if span is None:
            span = max(DEFAULT_SPAN, math.ceil(2 * float(axis.position(means).abs().max())) / 2)
        return _traverse(model, means, mean_skips, _positions(steps, span), axis, batch_size)


# -- counterfactuals ------------------------------------------------------------------------------------------------


@dataclass
class LatentCounterfactuals:
    """For each image, the smallest move of its ``z`` found that flips the classifier's decision, decoded. Every
    tensor is on the CPU, whatever the model's device.

    Attributes
    ----------
    images
        (N, C, H, W) the original images.
    reconstruction
        (N, C, H, W) their ``z`` decoded: the counterfactual is compared with it, not with the image.
    counterfactual
        (N, C, H, W) the moved ``z`` decoded.
    z, z_counterfactual
        (N, D) the latent vectors before and after the move.
    original_class, target_class
        (N,) the classifier's decision for the image, and the other class, toward which ``z`` moved.
    distance
        (N,) ``||dz||``, in prior standard deviations (the prior is N(0, I)).
    probability
        (N,) the classifier's probability of the target class at the moved ``z``.
    decoded_class
        (N,) the model's decision for the decoded counterfactual, read back through the encoder.
    critic_score, critic_score_original
        (N,) the critic's probability that the moved (and the original) ``z`` came from the prior: how plausible
        the move left it, beside how plausible it was.
    reconstruction_ssim
        (N,) SSIM of the reconstruction against the image: low values mean a blurry or unfaithful decoder, whose
        counterfactuals show less than the classifier reads.
    reached
        (N,) whether the search reached the target class with the margin (always, for ``method="axis"``).
    method
        ``"axis"`` or ``"gradient"``.
    uses_skips
        Whether the decoder read the original image's skip activations.
    """

    images: Tensor
    reconstruction: Tensor
    counterfactual: Tensor
    z: Tensor
    z_counterfactual: Tensor
    original_class: Tensor
    target_class: Tensor
    distance: Tensor
    probability: Tensor
    decoded_class: Tensor
    critic_score: Tensor
    critic_score_original: Tensor
    reconstruction_ssim: Tensor
    reached: Tensor
    method: str
    uses_skips: bool

    def select(self, rows: Sequence[int]) -> LatentCounterfactuals:
        """The counterfactuals of these images only (rows in the given order)."""
        index = torch.as_tensor(list(rows), dtype=torch.long)
        return replace(self, **{f.name: getattr(self, f.name)[index] for f in fields(self)
                                if isinstance(getattr(self, f.name), Tensor)})

    @property
    def difference(self) -> Tensor:
        """(N, C, H, W) what the move changed: counterfactual minus reconstruction."""
        return self.counterfactual - self.reconstruction

    @property
    def flipped(self) -> Tensor:
        """(N,) whether the model classifies the decoded counterfactual as the target class."""
        return self.decoded_class == self.target_class

    @property
    def flip_rate(self) -> float:
        """The share of decoded counterfactuals that the model classifies as the target class."""
        return float(self.flipped.float().mean()) if len(self.flipped) else float("nan")

    def flip_rate_toward(self, target: int) -> float:
        """The flip rate of the moves toward class ``target`` alone (NaN when no image moved that way): a decoder
        that draws the same image whatever ``z`` is flips one way only."""
        toward = self.target_class == target
        return float(self.flipped[toward].float().mean()) if toward.any() else float("nan")

    def summary(self) -> dict[str, float | int | str | bool]:
        """The numbers a report states: flip rate, reconstruction SSIM, distances and critic scores (medians)."""
        return {
            "images": len(self.images),
            "method": self.method,
            "uses_skips": self.uses_skips,
            "flip_rate": self.flip_rate,
            "reached_rate": float(self.reached.float().mean()),
            "reconstruction_ssim": float(self.reconstruction_ssim.mean()),
            "median_distance": float(self.distance.median()),
            "median_critic_score": float(self.critic_score.median()),
            "median_critic_score_original": float(self.critic_score_original.median()),
        }


def _gap(model: EncoderWithAAEBlocks, z: Tensor, target: Tensor) -> Tensor:
    """Logit of the target class minus the other's, (N,)."""
    logits = model.linear(z)
    return logits.gather(1, target[:, None])[:, 0] - logits.gather(1, (1 - target)[:, None])[:, 0]


def _move_along_axis(model: EncoderWithAAEBlocks, z: Tensor, target: Tensor, margin: float) -> Tensor:
    """Closed form: the distance to the boundary plus ``margin`` logits, along the axis (the shortest move for a
    linear classifier)."""
    axis = decision_axis(model, class_a=1)
    sign = torch.where(target == 1, 1.0, -1.0).to(z)
    needed = (margin - sign * axis.logit_gap(z)) / axis.scale  # prior SDs still to go toward the target
    return z + (needed.clamp(min=0) * sign)[:, None] * axis.direction.to(z)


def _move_by_gradient(model: EncoderWithAAEBlocks, z: Tensor, target: Tensor, margin: float, prior_weight: float,
                      step: float, max_distance: float) -> tuple[Tensor, Tensor]:
    """Steps of ``step`` prior SDs down the gradient of ``-gap + prior_weight * ||z'||^2 / 2`` (the target's logit
    lead, and the prior's negative log-likelihood), each ``z`` stopping as soon as the target leads by ``margin``.

    Normalised steps: every step moves the same distance, so the path length does not depend on how steep the
    classifier is. Returns the moved ``z`` and whether each one reached the margin."""
    moved = z.clone()
    reached = torch.zeros(len(z), dtype=torch.bool, device=z.device)
    for _ in range(int(np.ceil(max_distance / step))):
        with torch.no_grad():
            reached |= _gap(model, moved, target) >= margin
        if reached.all():
            break
        with torch.enable_grad():
            current = moved.detach().requires_grad_(True)
            loss = -_gap(model, current, target) + prior_weight * 0.5 * (current**2).sum(1)
            (gradient,) = torch.autograd.grad(loss.sum(), current)
        direction = gradient / gradient.norm(dim=1, keepdim=True).clamp(min=1e-12)
        moved = torch.where(reached[:, None], moved, moved - step * direction).detach()
    with torch.no_grad():
        reached |= _gap(model, moved, target) >= margin
    return moved, reached


def latent_counterfactual(
    model: EncoderWithAAEBlocks,
    images: Tensor,
    method: Literal["axis", "gradient"] = "axis",
    margin: float = DEFAULT_MARGIN,
    prior_weight: float = 0.1,
    step: float = 0.05,
    max_distance: float = 20.0,
    batch_size: int = 32,
) -> LatentCounterfactuals:
    """The smallest move of each image's ``z`` that flips the classifier's decision, decoded and checked.

    Parameters
    ----------
    model
        A trained xAAEnet (`AAE` or `EncoderWithAAEBlocks`); its modes are left as they were.
    images
        (N, C, H, W) images in [0, 1].
    method
        ``"axis"``: the closed form for a linear classifier, straight along the decision axis to the boundary and
        ``margin`` logits beyond (the shortest move there is). ``"gradient"``: normalised gradient steps of
        ``step`` prior SDs on the target class's logit lead plus ``prior_weight`` times the prior's negative
        log-likelihood, which bends the path toward likely ``z`` (longer than the axis move) and works for any
        classifier head; it gives up after ``max_distance``.
    margin
        How many logits the target class must lead by at the moved ``z`` (2: probability 0.88).

    The decoded counterfactual is read back through the encoder and the classifier (``decoded_class``): the share
    classified as the target class is the flip rate, the evidence that the images show what the classifier reads.
    """
    if method not in ("axis", "gradient"):
        raise ValueError(f"method must be 'axis' or 'gradient', got {method!r}.")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}.")
    images = _plain(images)
    with eval_mode(model):
        z, skips = _encode(model, images, batch_size)
        with torch.no_grad():
            original = model.linear(z).argmax(1)
        target = 1 - original
        if method == "axis":
            moved = _move_along_axis(model, z, target, margin)
            reached = torch.ones(len(z), dtype=torch.bool, device=z.device)
        else:
            moved, reached = _move_by_gradient(model, z, target, margin, prior_weight, step, max_distance)
            if not reached.all():
                logger.warning("latent_counterfactual: %d of %d images did not reach the other class within %.1f "
                               "prior SDs; lower prior_weight or raise max_distance.", int((~reached).sum()), len(z),
                               max_distance)
        rows = torch.arange(len(z), device=z.device)
        reconstruction = _decode(model, z, skips, rows, batch_size)
        counterfactual = _decode(model, moved, skips, rows, batch_size)
        with torch.no_grad():
            probability = torch.softmax(model.linear(moved), 1).gather(1, target[:, None])[:, 0]
            critic, critic_original = (torch.sigmoid(model.critic(v))[:, 0] for v in (moved, z))
        decoded_class = _probabilities(model, counterfactual, batch_size).argmax(1)
    return LatentCounterfactuals(
        images=images.detach().cpu(), reconstruction=reconstruction.cpu(), counterfactual=counterfactual.cpu(),
        z=z.cpu(), z_counterfactual=moved.cpu(), original_class=original.cpu(), target_class=target.cpu(),
        distance=(moved - z).norm(dim=1).cpu(), probability=probability.cpu(), decoded_class=decoded_class.cpu(),
        critic_score=critic.cpu(), critic_score_original=critic_original.cpu(),
        reconstruction_ssim=_ssim(reconstruction, images), reached=reached.cpu(), method=method,
        uses_skips=skips is not None,
    )


# -- explanation by example -----------------------------------------------------------------------------------------


@dataclass
class LatentNeighbours:
    """Training images near each explained image in latent space, and each class's most typical ones.

    Indices point into the reference set (``items``, the latents' rows).

    Attributes
    ----------
    query_class
        (M,) the classifier's decision for each explained image: "same" and "other" refer to it.
    same, same_distance
        (M, k) the nearest reference images of the decided class, and their distances in ``z`` (prior SDs).
    other, other_distance
        (M, k) the same for the other class: what the image is closest to on the other side.
    typical
        Class index -> (k,) the reference images of that class that lie deepest on its side of the decision
        boundary (the classifier's clearest examples of the class).
    typical_position
        Class index -> (k,) their signed distances from the boundary toward class A, in prior SDs.
    items
        The reference images (usually their paths), as in the latents.
    """

    query_class: np.ndarray
    same: np.ndarray
    same_distance: np.ndarray
    other: np.ndarray
    other_distance: np.ndarray
    typical: dict[int, np.ndarray]
    typical_position: dict[int, np.ndarray]
    items: list


def latent_neighbours(
    latents: LatentSplit,
    images: Tensor,
    k: int = 5,
    *,
    model: EncoderWithAAEBlocks,
    class_a: int = 1,
    batch_size: int = 32,
) -> LatentNeighbours:
    """Explanation by example: for each image, its ``k`` nearest reference images in latent space, of the class
    the model decides and of the other class; and for each class, the ``k`` most typical reference images along
    the decision axis.

    ``latents`` are the reference images' ``z``, classes and items (:func:`~tell_me_why.xaaenet.latents.
    extract_latents` over the training split, or a run's ``latents.parquet``); ``images`` (M, C, H, W) in [0, 1]
    are encoded with ``model``, whose classifier decides their class and gives the axis. Distances are Euclidean
    in ``z``: prior standard deviations.
    """
    bank = torch.from_numpy(np.array(latents.z, dtype=np.float32))  # a copy: a table's arrays can be read-only
    bank_classes = np.asarray(latents.targets).reshape(-1)
    counts = [int((bank_classes == c).sum()) for c in (0, 1)]
    if min(counts) < k:
        raise ValueError(f"k={k} neighbours per class, but the reference images hold {counts} per class.")
    axis = decision_axis(model, class_a)
    with eval_mode(model):
        z, _ = _encode(model, images, batch_size)
        with torch.no_grad():
            decided = model.linear(z).argmax(1).cpu().numpy()
    distances = torch.cdist(z.cpu(), bank).numpy()
    nearest: dict[str, list[np.ndarray]] = {"same": [], "other": []}
    for row, decision in enumerate(decided):
        for kind, wanted in (("same", decision), ("other", 1 - decision)):
            # Other classes' images are pushed past every distance, so the k nearest are the wanted class's.
            masked = np.where(bank_classes == wanted, distances[row], np.inf)
            nearest[kind].append(np.argsort(masked, kind="stable")[:k])
    same, other = np.array(nearest["same"]).reshape(-1, k), np.array(nearest["other"]).reshape(-1, k)
    position = axis.position(bank).numpy()
    typical, typical_position = {}, {}
    for c in (0, 1):
        toward = position if c == class_a else -position
        ranked = np.argsort(np.where(bank_classes == c, -toward, np.inf), kind="stable")[:k]
        typical[c], typical_position[c] = ranked, position[ranked]
    rows = np.arange(len(decided))[:, None]
    return LatentNeighbours(decided, same, distances[rows, same], other, distances[rows, other], typical,
                            typical_position, list(latents.items))
