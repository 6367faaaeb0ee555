"""Explain any image or folder of images with any classifier: a saved ``tmw`` run, a TorchScript file, or a state
dict with its torchvision architecture. This is what ``tmw explain --images ...`` runs.

Maps are computed in pixel space: images are loaded to [0, 1] and a normalisation the model expects (ImageNet
mean and std, say) is applied inside :class:`PixelSpaceClassifier`, so every map lines up with the image shown.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .._utils.classifier import class_probabilities
from .._utils.files import atomic_path
from .._utils.images import IMAGENET_MEAN, IMAGENET_STD, pixel_relevance
from ..attribution import METHODS, build_method
from ..causal import CausalResponsibility  # noqa: F401  (registers "causal")
from ..cues.decoding import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image
from .data import IMAGE_SUFFIXES

__all__ = [
    "known_labels",
    "NORMALISATIONS",
    "IMAGE_METHODS",
    "PixelSpaceClassifier",
    "load_classifier",
    "image_paths",
    "load_images",
    "ImageExplanations",
    "explain_images",
]

NORMALISATIONS: dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None] = {
    "none": None,
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
}
# Every registered explanation method (attribution and causal responsibility), by name.
IMAGE_METHODS = tuple(METHODS)


class PixelSpaceClassifier(nn.Module):
    """A classifier that takes [0, 1] pixels and applies the normalisation its wrapped model was trained with."""

    def __init__(self, model: nn.Module, normalisation: str = "none") -> None:
        super().__init__()
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {sorted(NORMALISATIONS)}, got {normalisation!r}.")
        self.model = model
        stats = NORMALISATIONS[normalisation]
        mean, std = (torch.zeros(3), torch.ones(3)) if stats is None else map(torch.tensor, stats)
        self.register_buffer("mean", mean.view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        channels = x.shape[1]
        return self.model((x - self.mean[:, :channels]) / self.std[:, :channels])


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives are zip files with a ``code/`` folder; ``torch.save`` archives have none."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def _state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors only: safetensors, or ``torch.load(weights_only=True)``, which refuses pickled code."""
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise ValueError(f"{path} is not a safetensors file ({error}). Write it with safetensors' save_file, "
                             f"or give a .pt/.pth state dict or a TorchScript file.") from error
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # an unpickling error names the object it refused
        raise ValueError(f"Cannot load {path} as weights only ({error}). Save the model with "
                         f"torch.save(model.state_dict(), ...) or as TorchScript.") from error
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]  # the usual training-checkpoint layout
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} does not hold a state dict (a mapping of parameter names to tensors).")
    return state


def _architecture(arch: str, num_classes: int) -> nn.Module:
    """A randomly initialised torchvision model, or a timm one for ``timm/NAME`` (no download either way)."""
    if arch.startswith("timm/"):
        try:
            import timm
        except ImportError as error:
            raise ValueError(f"--arch {arch} needs timm: pip install timm.") from error
        name = arch.removeprefix("timm/")
        if name not in timm.list_models():
            raise ValueError(f"Unknown timm architecture {name!r}; see timm.list_models().")
        return timm.create_model(name, pretrained=False, num_classes=num_classes)
    import torchvision

    available = torchvision.models.list_models()
    if arch not in available:
        raise ValueError(f"Unknown architecture {arch!r}; torchvision models: {', '.join(available)}, "
                         f"or timm/NAME for a timm model.")
    return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)


def load_classifier(path: str | Path, arch: str | None = None, num_classes: int = 2) -> nn.Module:
    """A classifier from ``path``, in eval mode, on the CPU.

    A TorchScript file (``torch.jit.save``) loads as is. A state dict (``.safetensors``, or ``.pt``/``.pth`` read
    with ``weights_only=True``) needs ``arch``, a torchvision model name (``resnet18``, ``vit_b_16``, ...) or
    ``timm/NAME`` for a timm model, built with ``num_classes`` outputs; every key must match.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Model file {str(path)!r} does not exist.")
    if _is_torchscript(path):
        try:
            return torch.jit.load(str(path), map_location="cpu").eval()
        except RuntimeError as error:
            raise ValueError(f"{path} looks like a TorchScript archive (a zip with a code/ folder) but cannot be "
                             f"loaded as one: {str(error).splitlines()[0]}") from error
    if arch is None:
        raise ValueError(f"{path} holds weights only (a state dict): name its architecture with --arch "
                         f"(a torchvision model name, e.g. resnet18), or save the model as TorchScript.")
    model = _architecture(arch, num_classes)
    try:
        model.load_state_dict(_state_dict(path))
    except RuntimeError as error:  # missing, unexpected or differently shaped parameters, all listed
        raise ValueError(f"{path} does not fit {arch} with {num_classes} classes: {error}") from error
    return model.eval()


def known_labels(paths: Sequence[Path], class_names: Sequence[str],
                 labelled: dict[Path, str] | None = None) -> list[str | None]:
    """Each image's true class when it is known: from ``labelled`` (a run's own images), else from a parent folder
    named like a class (``photos/cat/x.jpg``), else ``None``."""
    labelled = {Path(p).resolve(): label for p, label in (labelled or {}).items()}
    found = []
    for path in paths:
        resolved = Path(path).resolve()
        label = labelled.get(resolved)
        if label is None:
            label = next((parent.name for parent in resolved.parents if parent.name in class_names), None)
        found.append(label)
    return found


def image_paths(source: str | Path) -> list[Path]:
    """One image file, or every image under a folder (recursively, sorted)."""
    source = Path(source)
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise FileNotFoundError(f"{str(source)!r} is neither an image file nor a folder.")
    paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise ValueError(f"No images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {source}.")
    return paths


def load_images(paths: Sequence[str | Path], size: int, grey: bool = False,
                max_pixels: int | None = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """Images as (N, C, size, size) in [0, 1], resized without cropping (bilinear), read by the package's decoder
    (16-bit images scaled, never clipped; files above ``max_pixels`` refused; huge ones shrunk while read)."""
    from PIL import Image

    images = []
    for path in paths:
        try:
            decoded = decode_image(path, max_pixels=max_pixels, reduce_above=16 * size * size)
        except ImageDecodeError as error:
            raise ValueError(str(error)) from error
        pixels = np.asarray(Image.fromarray(decoded.to_uint8(1 if grey else 3)).resize((size, size), Image.BILINEAR))
        pixels = pixels[None] if grey else pixels.transpose(2, 0, 1)
        images.append(torch.from_numpy(pixels.astype(np.float32) / 255.0))
    return torch.stack(images)


@dataclass
class ImageExplanations:
    """Maps (method -> (N, H, W) relevance, or the layer map for CAMs) for images with their predictions."""

    paths: list[Path]
    images: torch.Tensor
    probabilities: torch.Tensor
    targets: torch.Tensor
    class_names: list[str]
    maps: dict[str, torch.Tensor] = field(default_factory=dict)
    true_labels: list[str | None] | None = None
    notes: dict[str, list[str | None]] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per image: path, true class (when known), predicted class, explained class and each class
        probability."""
        names = self.class_names
        frame = pd.DataFrame({"path": [str(p) for p in self.paths]})
        if self.true_labels is not None and any(label is not None for label in self.true_labels):
            frame["true"] = self.true_labels
        frame["predicted"] = [names[i] for i in self.probabilities.argmax(1).tolist()]
        frame["explained"] = [names[i] for i in self.targets.tolist()]
        for index, name in enumerate(names):
            frame[f"p_{name}"] = self.probabilities[:, index].numpy()
        for method, notes in self.notes.items():
            frame[f"note_{method}"] = [self._named(note) for note in notes]
        return frame

    def _named(self, note: str | None) -> str | None:
        return with_class_names(note, self.class_names) if note is not None else None

    def save(self, directory: str | Path) -> Path:
        """``predictions.csv``, ``maps.npz`` (one (N, H, W) array per method, at the images' size: channels summed,
        layer-resolution maps such as Grad-CAM's upsampled) and one comparison PNG per image, with colour bars."""
        from ..attribution.figures import plot_method_comparison

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / "predictions.csv") as tmp:
            self.to_frame().to_csv(tmp, index=False)
        with atomic_path(directory / "maps.npz") as tmp, open(tmp, "wb") as handle:
            size = self.images.shape[-2:]
            np.savez_compressed(handle, **{name: pixel_relevance(m, size).cpu().numpy()
                                           for name, m in self.maps.items()})
        frame = self.to_frame()
        for index, path in enumerate(self.paths):
            plot_method_comparison(
                self.images[index], {name: m[index] for name, m in self.maps.items()},
                notes={name: self._named(notes[index]) for name, notes in self.notes.items() if notes[index]},
                save_path=directory / f"{index:04d}_{Path(path).stem}.png", show=False,
                title=f"{Path(path).name}: predicted {frame['predicted'][index]}, "
                      f"explaining {frame['explained'][index]}")
        return directory


def with_class_names(text: str, class_names: Sequence[str]) -> str:
    """``text`` with each "class <index>" (how explainers name classes) replaced by that class's name."""
    return re.sub(r"\bclass (\d+)\b",
                  lambda m: class_names[int(m[1])] if int(m[1]) < len(class_names) else m[0], text)


def _target_indices(target: int | str | None, class_names: list[str]) -> int | None:
    if target is None or isinstance(target, int):
        return target
    if target.isdigit():
        return int(target)
    if target not in class_names:
        raise ValueError(f"target {target!r} is not a class; classes: {class_names}.")
    return class_names.index(target)


def explain_images(
    classifier: nn.Module,
    images: torch.Tensor,
    paths: Sequence[str | Path],
    methods: Sequence[str] = ("gradcam", "integrated_gradients", "causal"),
    target: int | str | None = None,
    class_names: Sequence[str] | None = None,
    batch_size: int = 16,
    causal_iterations: int | str = "auto",
    progress: bool = True,
    true_labels: Sequence[str | None] | None = None,
) -> ImageExplanations:
    """Predict ``images`` (N, C, H, W in the classifier's input space) and explain them with each method.

    ``target``: None explains each image's predicted class; an index or a class name explains that class.
    ``true_labels``: each image's class when it is known (``None`` where not), kept in ``predictions.csv``.
    """
    unknown = [m for m in methods if m not in IMAGE_METHODS]
    if unknown:
        raise ValueError(f"Unknown method(s) {unknown}; available: {', '.join(IMAGE_METHODS)}.")
    if len(paths) != len(images):
        raise ValueError(f"{len(paths)} paths for {len(images)} images.")
    classifier = classifier.eval()
    with torch.no_grad():
        probabilities = torch.cat([class_probabilities(classifier(images[i : i + batch_size]).float())
                                   for i in range(0, len(images), batch_size)])
    names = list(class_names) if class_names is not None else [f"class {i}" for i in range(probabilities.shape[1])]
    if len(names) != probabilities.shape[1]:
        raise ValueError(f"{len(names)} class names for a model with {probabilities.shape[1]} classes.")
    index = _target_indices(target, names)
    targets = probabilities.argmax(1) if index is None else torch.full((len(images),), index, dtype=torch.long)
    result = ImageExplanations([Path(p) for p in paths], images, probabilities, targets, names,
                               true_labels=list(true_labels) if true_labels is not None else None)
    options = {"causal": {"iterations": causal_iterations}}
    bar = tqdm(total=len(methods) * len(images), desc="Explaining", unit="map", disable=not progress)
    for method in methods:
        bar.set_postfix_str(method)
        attributor, call = build_method(classifier, method, **options.get(method, {}))
        if hasattr(attributor, "calibrate"):  # causal: masks chosen from all the images, not the first batch
            attributor.calibrate(images)
        chunks, notes = [], []
        for start in range(0, len(images), batch_size):
            batch, batch_targets = images[start : start + batch_size], targets[start : start + batch_size]
            chunks.append(attributor.attribute(batch, target=batch_targets, **call).detach())
            notes += getattr(attributor, "last_notes", None) or [None] * len(batch)
            bar.update(len(batch))
        result.maps[method] = torch.cat(chunks)
        if any(notes):
            result.notes[method] = notes
    bar.close()
    return result
