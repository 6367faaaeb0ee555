"""``report.html``: one self-contained page (images embedded) that says why the model decides what it decides."""

from __future__ import annotations

import base64
import html
import json
import math
import platform
from pathlib import Path

import pandas as pd

from .._utils.files import atomic_path

__all__ = ["write_report", "trust_table", "SECTIONS"]

SECTIONS = ("data", "training", "latent-space", "pixel-cues", "axis-images", "local-explanations", "trust-checks",
            "settings")
FOLDED = ("settings",)

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}
h1{font-size:1.8em;margin-bottom:.2em} h2{border-bottom:2px solid #eee;padding-bottom:.2em;margin-top:2em}
img{max-width:100%;height:auto;border:1px solid #eee;margin:.4em 0}
table{border-collapse:collapse;margin:.6em 0} td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f6f6f6} td:first-child,th:first-child{text-align:left}
.verdict{padding:.7em 1em;border-radius:6px;margin:.8em 0}
.bad{background:#fde8e8;color:#8a1c1c} .good{background:#e7f6ec;color:#1d5e32}
.text-last td:last-child,.text-last th:last-child{text-align:left;max-width:28em}
nav{position:sticky;top:0;background:#fff;padding:.5em 0;border-bottom:1px solid #eee;z-index:1}
nav a{margin-right:1em} .muted{color:#777;font-size:.9em}
details>summary{cursor:pointer;list-style:none} details>summary::-webkit-details-marker{display:none}
details>summary h2{display:inline-block} details>summary h2::before{content:"▾ ";color:#999}
details:not([open])>summary h2::before{content:"▸ "}
"""


def _image(path: Path, alt: str, width: int | None = None) -> str:
    if not path.is_file():
        return f'<p class="muted">({html.escape(alt)}: not produced by this run)</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    size = f' style="width:{width}px"' if width else ""
    return f'<img alt="{html.escape(alt)}"{size} src="data:image/png;base64,{data}">'


def _table(frame: pd.DataFrame, floats: str = "{:.3f}", classes: str | None = None) -> str:
    return frame.to_html(float_format=lambda v: floats.format(v), border=0, escape=True, classes=classes)


# A map's deletion and insertion curves count as better than chance when no more than this share of random
# orderings of the pixels does as well; the cascading randomisation must bring the maps' rank correlation with the
# original below RANDOMISED_RHO.
CHANCE_LEVEL = 0.05
RANDOMISED_RHO = 0.5


def trust_table(metrics: dict) -> pd.DataFrame:
    """Deletion and insertion AUC per method, read against random orderings of the pixels (``p_vs_random``), and,
    for Grad-CAM, whether its maps changed when every layer of the model had been randomised (the
    ``metrics.json`` of a run)."""
    table = pd.DataFrame({"deletion AUC (lower is better)": metrics["deletion_auc"],
                          "insertion AUC (higher is better)": metrics["insertion_auc"]})
    orderings = len(metrics.get("random_gaps", []))
    p_values = metrics.get("p_vs_random", {})
    table["p vs random orderings"] = [p_values.get(name, math.nan) for name in table.index]
    table["reading"] = [
        f"its top pixels carry the decision: insertion beats deletion by more than for any of {orderings} random "
        f"orderings of the pixels" if p <= CHANCE_LEVEL
        else "no better than a random ordering of the pixels: read its maps with care"
        for p in table["p vs random orderings"]]
    steps = metrics.get("randomisation") or []
    if steps and "Grad-CAM" in table.index:
        rho = steps[-1]["spearman"]
        if rho is None or math.isnan(rho):
            reading = ("; its maps are blank (every pixel equally relevant), so the randomisation check fails: "
                       "nothing shows that they depend on the model")
        elif rho < RANDOMISED_RHO:
            reading = f"; its maps change with the weights (rank correlation {rho:.2f} once all are random)"
        else:
            reading = (f"; but its maps barely change with random weights (rank correlation {rho:.2f}): they show "
                       f"the image more than the model")
        table.loc["Grad-CAM", "reading"] += reading
    for name, note in metrics.get("notes", {}).items():
        if name in table.index:
            table.loc[name, "reading"] += f". {note}"
    return table


# The share of decoded counterfactuals the model must read as the other class for the pictures of the axis to
# count as pictures of what the classifier reads.
FLIP_RATE_NEEDED = 0.9


def _axis_images(directory: Path) -> str:
    """The "What the axis looks like" section: the latent explanations that the explain step wrote."""
    folder = directory / "explanations" / "latent"
    if not (folder / "latent.json").is_file():
        return ('<p class="muted">(No latent explanations in this run: make them with <code>tmw explain --out RUN '
                '--methods counterfactual</code>, then <code>tmw report --out RUN</code>.)</p>')
    found = json.loads((folder / "latent.json").read_text())
    flips, ssim = found["flip_rate"], found["reconstruction_ssim"]
    directions = {name: rate for name, rate in found.get("flip_rate_toward", {}).items() if not math.isnan(rate)}
    toward = ", ".join(f"toward {html.escape(name)} {rate:.0%}" for name, rate in directions.items())
    # Both ways: a decoder that flips one way only would pass on the overall rate when the classes are unequal.
    faithful = min(flips, *directions.values()) >= FLIP_RATE_NEEDED
    reading = (f'<div class="verdict {"good" if faithful else "bad"}">Flip rate '
               f'<b>{flips:.0%}</b>{f" ({toward})" if toward else ""}: of the {found["images"]} validation images '
               f'moved just past the decision boundary in latent space, decoded and given to the model again, that '
               f'share is read as the other class (a decoder that draws the same image whatever z is flips one way '
               f'only). Reconstruction SSIM <b>{ssim:.2f}</b> (1: a perfect copy; the lower, the blurrier the '
               f'decoder). ')
    reading += ("The decoded images carry what the classifier reads: the pictures below show its axis.</div>"
                if faithful else
                f"Below {FLIP_RATE_NEEDED:.0%} (overall or one way): the decoded images do not carry all that the "
                f"classifier reads, so read the pictures below as the decoder's impression of the axis, not as "
                f"evidence.</div>")
    skips = ("The decoder has skip connections: each moved z is decoded with the skip activations of the original "
             "image (class means: the class's mean ones), which hold the layout in place and can hold a change "
             "back." if found["uses_skips"] else "The decoder has no skip connections: every image comes from z "
             "alone.")
    numbers = pd.DataFrame({"value": {
        "median move to flip (prior SDs)": found["median_distance"],
        "median critic score, moved z": found["median_critic_score"],
        "median critic score, original z": found["median_critic_score_original"]}})
    return (
        f"<p>The classifier reads the class from the latent vector z along one direction, its decision axis. Moving "
        f"z along that axis and decoding it shows the axis in pixels: the mean image of each class walked from "
        f"{html.escape(found['other_class'])} to {html.escape(found['class_a'])}, what would change on the way "
        f"(red: brighter), the smallest move that flips single images (latent counterfactuals), and the training "
        f"images nearest in z. Distances are in standard deviations of the prior N(0, I); the critic's score says "
        f"how plausible a moved z still is. {html.escape(skips)}</p>{reading}"
        f"<p>Read it beside the pixel cues: a cue ranked high there that visibly grows along the walk is two kinds "
        f"of evidence agreeing; a change seen here that no cue measures is worth a cue of its own "
        f"(<code>--cues</code>). This axis is the classifier's own weights, the pixel-cue axis a PLS fit to the "
        f"labels: they agree when both separate the classes.</p>"
        + _table(numbers, "{:.2f}")
        + _image(folder / "traversal_class_means.png", "class means along the decision axis")
        + _image(folder / "counterfactuals.png", "latent counterfactuals")
        + _image(folder / "neighbours.png", "nearest training images in latent space"))


def _pixel_map(directory: Path, axis: dict) -> str:
    """The axis's global "where" map: pixels whose brightness goes with the axis score (none in older runs)."""
    found = axis.get("pixel_map")
    if found is None:
        return ""
    text = (f"<p><b>Where</b>: each pixel's brightness on the validation images correlated with their held-out "
            f"axis scores. {found['significant_pixels']} of {found['pixels']} pixels beat the family-wise "
            f"permutation threshold |r| = {found['threshold']:.2f} (p &lt; {found['alpha']:g}); no model gradient "
            f"is involved.</p>")
    return text + _image(directory / "interpretation" / "axis_pixel_map.png", "pixel map of the axis")


def _versions() -> dict[str, str]:
    import importlib.metadata as metadata

    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("tell-me-why", "torch", "torchvision", "fastai", "scikit-learn", "pandas", "captum"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def write_report(run) -> Path:
    """Draw the report's own figures and write ``report.html`` in the run directory (atomically)."""
    from .report_figures import save_confusion_matrix, save_loss_curves, save_randomisation_curve, save_samples

    directory = run.dir
    figures = directory / "report_figures"
    figures.mkdir(exist_ok=True)
    data = json.loads((directory / "data.json").read_text())
    table = pd.read_csv(directory / "data.csv")
    save_samples({c: table.loc[table["label"] == c, "path"].head(6).tolist() for c in data["classes"]},
                 figures / "samples.png")
    history = json.loads((directory / "training.json").read_text())
    save_loss_curves(history, figures / "losses.png")
    _, _, targets, predicted = run.validation_predictions()
    vocab = list(run.dataloaders().vocab)
    save_confusion_matrix(targets.numpy(), predicted.numpy(), vocab, figures / "confusion.png")
    axis = json.loads((directory / "interpretation" / "axis.json").read_text())
    stats = pd.read_csv(directory / "interpretation" / "stats.csv", index_col=0)
    metrics = json.loads((directory / "metrics.json").read_text())
    settings = json.loads((directory / "settings.json").read_text())
    class_a = run.class_a

    from .pipeline import baseline_sentence, chance_warning, channels_note, pretrained_note

    chance = run.chance_verdict()
    accuracy = (baseline_sentence(chance) if chance is not None
                else f"validation accuracy {metrics['validation_accuracy']:.1%}")
    channels = channels_note(run.settings.grey, data.get("grey"), run.grey)
    # Which epoch each phase kept (early stopping) and what --pretrained came to: runs older than them say nothing.
    training_notes = [note for note in (run.kept_epochs(), pretrained_note((chance or {}).get("encoder_weights")))
                      if note]
    warning = ""
    if chance is not None and not chance["better_than_chance"]:
        warning = f'<div class="verdict bad"><b>Read this first</b>: {html.escape(chance_warning(chance))}</div>'
    # Cues by their labels, e.g. "lower-band texture (jaw_texture)" (a run older than labels: by name).
    labels = stats["label"] if "label" in stats.columns else pd.Series(stats.index, index=stats.index)
    cue_table = stats[["r2_signed", "ci_low", "ci_high", "q_value", "significant"]].head(12).set_axis(
        labels.head(12).rename("cue"))
    if "category" in stats.columns:
        cue_table.insert(0, "category", stats["category"].head(12).fillna("").to_numpy())
    cue_notes = "".join(f'<p class="muted">{html.escape(note)}.</p>' for note in axis.get("notes", []))
    if axis["reliable"]:
        significant = labels[stats["significant"]].tolist()
        verdict = (f'<div class="verdict good">The decision axis predicts the label on held-out images '
                   f'(r = {axis["r"]:.2f}, permutation p = {axis["p_value"]:.3f}). Cues that line up with it '
                   f'significantly: {html.escape(", ".join(significant[:8]) or "none")}.</div>')
    else:
        reason = axis.get("not_reliable_because") or (
            f"held-out r = {axis['r']:.2f}, permutation p = {axis['p_value']:.3f}: it does not predict the label on "
            f"images it was not fitted on")
        verdict = (f'<div class="verdict bad">The decision axis is <b>not reliable</b> ({html.escape(reason)}), so '
                   f'the cue ranking below is not evidence about the model.</div>')
    trust = trust_table(metrics)
    save_randomisation_curve(metrics["randomisation"], figures / "randomisation.png")
    counts = pd.DataFrame({"images": data["counts"]})
    sections = {
        "data": ("The data", f"<p>Source: <code>{html.escape(data['source'])}</code>; {len(data['skipped'])} "
                 f"unreadable file(s) skipped{html.escape(f'; {channels}' if channels else '')}.</p>"
                 f"{_table(counts, '{:.0f}')}"
                 f"{_image(figures / 'samples.png', 'samples')}"),
        "training": ("Training", f"<p>Three phases (adversarial, denoising autoencoder, classifier); "
                     f"{html.escape(accuracy)} on {len(targets)} validation images.</p>"
                     + "".join(f'<p class="muted">{html.escape(note)}.</p>' for note in training_notes)
                     + _image(figures / "losses.png", "loss curves")
                     + _image(figures / "confusion.png", "confusion matrix", width=360)),
        "latent-space": ("The latent space", _image(directory / "models" / "tsne_xaaenet_ae.png", "t-SNE")
                         + _image(directory / "models" / "pls_xaaenet_classif.png", "PLS")),
        "pixel-cues": ("Pixel cues and the decision axis", verdict + cue_notes
                       + _image(directory / "interpretation" / "feature_importance_ranking.png", "ranking")
                       + _image(directory / "interpretation" / "feature_alignment_panels.png", "alignment")
                       + _table(cue_table) + _pixel_map(directory, axis)),
        "axis-images": ("What the axis looks like", _axis_images(directory)),
        "local-explanations": ("Local explanations", "<p>Validation images (misclassified first), with Grad-CAM, "
                               "Integrated Gradients and causal responsibility maps.</p>"
                               + _image(directory / "explanations" / "gallery.png", "gallery")),
        "trust-checks": ("Trust checks", "<p>Deletion and insertion curves (target probability as the most "
                         "relevant pixels are removed or revealed) and cascading model randomisation of Grad-CAM "
                         "(Spearman correlation with the original maps; it should fall). Each map's curves are read "
                         "against the same curves for 19 random orderings of the pixels: beating all of them is "
                         "p = 0.05.</p>"
                         + _table(trust, classes="text-last")
                         + _image(figures / "randomisation.png", "cascading randomisation")),
        "settings": ("Settings and versions", _table(pd.DataFrame({"value": {k: str(v) for k, v in settings.items()}}))
                     + _table(pd.DataFrame({"version": _versions()}))),
    }
    nav = "".join(f'<a href="#{key}">{title}</a>' for key, (title, _) in sections.items())
    # Each section folds away (click its title); the settings, long and rarely needed, start folded.
    body = "".join(f'<section id="{key}"><details{"" if key in FOLDED else " open"}><summary><h2>{title}</h2>'
                   f'</summary>{content}</details></section>'
                   for key, (title, content) in sections.items())
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Tell Me Why report</title>'
            f"<style>{_STYLE}</style></head><body><h1>Why does this classifier decide what it decides?</h1>"
            f'<p class="muted">Class A (the class the axis points to): <b>{html.escape(class_a)}</b></p>'
            f"{warning}<nav>{nav}</nav>{body}</body></html>")
    path = directory / "report.html"
    with atomic_path(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
