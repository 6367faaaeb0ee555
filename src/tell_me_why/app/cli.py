"""``tmw``: from a folder of images to a report that says why a binary classifier decides what it decides."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import fields
from pathlib import Path

from .._utils.devices import available_cpus
from .._utils.files import CheckpointError, DirectoryLocked
from ..xaaenet.encoders import PretrainedWeightsUnavailable
from .explain_images import IMAGE_METHODS, NORMALISATIONS, PixelSpaceClassifier
from .latent import LATENT_METHOD
from .pipeline import NOT_DEFINING, QUICK, Run, RunSettings, old_defaults_for

EXAMPLES = {
    "run": """examples:
  tmw run                              # the embedded faces-vs-non-faces photos, into ./tmw_run
  tmw run photos/ --out runs/cats      # photos/<class>/*.jpg, exactly two classes
  tmw run labels.csv --class-a cat     # a CSV with columns path,label
  tmw run pets/ --data-format rule --label-rule pets
  tmw run photos/ --config tmw.toml    # settings from a TOML file (flags override it)
  tmw run photos/ --cues my_cues:leaf_area,my_cues:stem_width   # pixel cues of your own (module:function)
  tmw run --quick                      # a first look in about a minute (small images, few epochs)
  tmw run photos/ --baseline           # also train the same encoder with cross-entropy alone, to compare
  tmw run --out runs/cats --baseline   # add that baseline to a finished run (the only setting it may add)
Running again with the same --out resumes after the last finished step.""",
    "step": """examples:
  tmw {step} --out runs/cats          # (re)do this step of an existing run (the earlier steps run if missing)""",
    "explain": """examples:
  tmw explain --out runs/cats                                   # the run's explain step (validation gallery)
  tmw explain --out runs/cats --images new_photos/              # any image or folder, with the run's model
  tmw explain --out runs/cats --methods counterfactual          # the decision axis decoded, latent
                                                                # counterfactuals, neighbours (a run's xAAEnet)
  tmw explain --images x.jpg --model model.ts --size 224 --normalisation imagenet   # a TorchScript model
  tmw explain --images photos/ --model weights.safetensors --arch resnet18 --classes cat,dog \\
              --methods gradcam,integrated_gradients,causal --save explanations/   # a state dict
Maps, predictions.csv and one comparison PNG per image go to --save (default: <run>/explanations/images or
./tmw_explanations).""",
}


def _true_false_or_auto(value: str) -> bool | str:
    words = {"auto": "auto", "true": True, "yes": True, "false": False, "no": False}
    if value.lower() not in words:
        raise argparse.ArgumentTypeError(f"expected auto, true or false, got {value!r}")
    return words[value.lower()]


def _int_or_word(value: str) -> int | str:
    """A number of something, or a word such as ``auto``."""
    return int(value) if value.lstrip("-").isdigit() else value


def _add_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("tmw_run"), help="run directory (default: ./tmw_run)")
    parser.add_argument("--config", type=Path, help="TOML file of settings (flags override it)")
    parser.add_argument("--quick", action="store_true",
                        help="a first look in about a minute on the demo: "
                             + ", ".join(f"--{name.replace('_', '-')} {value}" for name, value in QUICK.items())
                             + " (--config and flags override these; see docs/tmw.md)")
    for field in fields(RunSettings):
        if field.name == "data":
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.type in ("bool", "bool | None"):
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None)
        elif field.type == "bool | Literal['auto']":
            # --flag and --no-flag as for the other switches, and --flag auto|true|false.
            parser.add_argument(flag, dest=field.name, nargs="?", const=True, type=_true_false_or_auto, default=None,
                                metavar="auto|true|false", help=f"default: {field.default}")
            parser.add_argument("--no-" + flag[2:], dest=field.name, action="store_const", const=False,
                                default=None)
        else:
            kind = {"int": int, "float": float, "int | str": _int_or_word}.get(str(field.type), str)
            parser.add_argument(flag, dest=field.name, type=kind, default=None,
                                help=f"default: {field.default}")


def _add_image_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("explaining images of your own")
    group.add_argument("--images", type=Path, help="an image file or a folder of images to explain")
    group.add_argument("--model", type=Path, help="a TorchScript file or a state dict (.safetensors/.pt/.pth) "
                                                  "instead of the run's model")
    group.add_argument("--arch", help="architecture of a state dict: a torchvision name (e.g. resnet18) or timm/NAME")
    group.add_argument("--num-classes", type=int, default=2, help="outputs of --arch (default: 2)")
    group.add_argument("--classes", help="comma-separated class names of --model, in output order")
    group.add_argument("--normalisation", choices=sorted(NORMALISATIONS), default="none",
                       help="input normalisation --model expects (default: none, pixels in [0, 1])")
    group.add_argument("--methods", default="gradcam,integrated_gradients,causal",
                       help=f"comma-separated, from: {', '.join(IMAGE_METHODS)}, {LATENT_METHOD} (a run's model "
                            f"only: the latent explanations, of --images or of the validation images)")
    group.add_argument("--target", help="class (name or index) to explain (default: each image's prediction)")
    group.add_argument("--save", type=Path, help="output folder")


def _methods(args: argparse.Namespace) -> list[str]:
    return [m.strip() for m in args.methods.split(",") if m.strip()]


def _explain_latent(args: argparse.Namespace) -> Path:
    """``--methods counterfactual``: the latent explanations of the run's xAAEnet, for ``--images`` or for its
    validation images (into ``explanations/latent``, which the report shows)."""
    from .explain_images import image_paths
    from .latent import LATENT_FOLDER, explain_latents

    if args.model is not None:
        raise ValueError(f"--methods {LATENT_METHOD} explains the xAAEnet of a tmw run (--out RUN): a model given "
                         f"with --model has no decoder to draw its latent space with.")
    run = Run.open(args.out)
    if "train" not in run.done:
        raise ValueError(f"The run in {args.out} has no trained model yet; run tmw train --out {args.out}.")
    paths = image_paths(args.images) if args.images is not None else None
    if args.save is not None:
        return explain_latents(run, paths, args.save)
    with run.writing():  # into the run directory: one writer at a time
        return explain_latents(run, paths, run.dir / (LATENT_FOLDER if paths is None else "explanations/images/latent"))


def _explain_images(args: argparse.Namespace, methods: list[str] | None = None) -> Path:
    import pandas as pd

    from .explain_images import explain_images, image_paths, known_labels, load_classifier, load_images

    if args.images is None:
        raise ValueError("--model needs --images: the images to explain.")
    size = 224 if args.size is None else args.size
    if size < 1:
        raise ValueError(f"--size must be a positive number of pixels, got {size}.")
    paths = image_paths(args.images)
    if args.model is not None:
        classifier = PixelSpaceClassifier(load_classifier(args.model, args.arch, args.num_classes),
                                          args.normalisation)
        images = load_images(paths, size, grey=bool(args.grey))
        names = args.classes.split(",") if args.classes else None
        save = args.save or Path("tmw_explanations")
    else:
        run = Run.open(args.out)
        if "train" not in run.done:
            raise ValueError(f"The run in {args.out} has no trained model yet; run tmw train --out {args.out}.")
        classifier, images = run.model().eval(), run.inputs(paths)
        names = list(run.dataloaders().vocab)
        save = args.save or run.dir / "explanations" / "images"
    labelled = None
    if args.model is None:
        table = pd.read_csv(run.dir / "data.csv")
        labelled = dict(zip(map(Path, table["path"]), table["label"]))
    truth = known_labels(paths, names, labelled) if names else None
    result = explain_images(classifier, images, paths, methods=methods or _methods(args),
                            target=args.target, class_names=names, true_labels=truth)
    if args.model is None and args.save is None:
        with run.writing():  # into the run directory: one writer at a time
            result.save(save)
    else:
        result.save(save)
    print(result.to_frame().to_string(index=False))
    return save


def _settings(args: argparse.Namespace, base: dict | None = None) -> RunSettings:
    """Settings from ``base`` (a run's saved ones), then the ``--quick`` preset, then ``--config``, then the flags
    given: what is said explicitly overrides the preset."""
    given = {f.name: getattr(args, f.name) for f in fields(RunSettings)
             if f.name != "data" and getattr(args, f.name, None) is not None}
    if getattr(args, "data", None) is not None:
        given["data"] = str(Path(args.data).resolve())
    from_file = RunSettings.toml_values(args.config) if args.config is not None else {}
    preset = QUICK if getattr(args, "quick", False) else {}
    source = str(args.config) if args.config is not None else "the command line"
    return RunSettings.from_mapping({**(base or {}), **preset, **from_file, **given}, source=source)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tmw", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=EXAMPLES["run"])
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="everything, end to end", epilog=EXAMPLES["run"],
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("data", nargs="?", help="a folder with one subfolder per class, a CSV (path,label), or a "
                                             "folder of images with --data-format rule (default: embedded faces)")
    _add_settings(run)
    for step in ("train", "features", "interpret", "explain", "report"):
        epilog = EXAMPLES["explain"] if step == "explain" else EXAMPLES["step"].format(step=step)
        sub = commands.add_parser(step, help=f"the {step} step of a run" + (", or explain any images"
                                  if step == "explain" else ""), epilog=epilog,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("data", nargs="?", help="as for tmw run (only needed for a new run)")
        _add_settings(sub)
        if step == "explain":
            _add_image_options(sub)
    return parser


def _open_run(args: argparse.Namespace) -> Run:
    """The run in ``--out``: with its saved settings when no setting is given, else with the given ones."""
    exists = (args.out / "settings.json").is_file()
    if args.command != "run" and not exists:
        raise FileNotFoundError(f"{args.out} holds no tmw run: tmw {args.command} works on an existing run "
                                f"directory. Check --out, or start a run with tmw run DATA --out {args.out}.")
    given = {f.name for f in fields(RunSettings) if getattr(args, f.name, None) is not None}
    if not given and not args.quick and args.config is None and exists:
        return Run.open(args.out)
    saved = json.loads((args.out / "settings.json").read_text()) if exists else {}
    if args.command != "run" or (exists and given <= NOT_DEFINING and not args.quick and args.config is None):
        # A step of an existing run, or `tmw run --out DIR --baseline`, starts from the run's settings (those it
        # predates at the values it used); the flags change only what they name.
        base = {**old_defaults_for(saved), **saved}
    else:
        # The settings are the ones given: only those the run predates keep the values it used.
        base = old_defaults_for(saved) if exists else {}
    return Run(args.out, _settings(args, base))


def _print_progress() -> logging.Handler:
    """Show the package's progress messages (its ``logging`` records) on standard output while the command runs."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[tmw] %(message)s"))
    package = logging.getLogger("tell_me_why")
    package.addHandler(handler)
    package.setLevel(logging.INFO)
    return handler


def _use_available_cpus() -> None:
    """No more torch threads than the CPUs this process may use (torch counts the machine's cores, which a
    container or a batch job may not have: extra threads then wait on each other)."""
    import torch

    cpus = available_cpus()
    if torch.get_num_threads() > cpus:
        torch.set_num_threads(cpus)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _use_available_cpus()
    handler = _print_progress()
    try:
        return _run_command(args)
    finally:
        logging.getLogger("tell_me_why").removeHandler(handler)


def _run_command(args: argparse.Namespace) -> int:
    try:
        if args.command == "explain" and LATENT_METHOD in _methods(args):
            others = [m for m in _methods(args) if m != LATENT_METHOD]
            if others and args.images is None:
                raise ValueError(f"--methods {','.join(others)} explain images given with --images; without "
                                 f"them only {LATENT_METHOD} runs (on the validation images). Add --images or "
                                 f"drop {','.join(others)}.")
            print(f"\n[tmw] done. Latent explanations: {_explain_latent(args)}")
            if others:
                print(f"\n[tmw] done. Explanations: {_explain_images(args, others)}")
            return 0
        if args.command == "explain" and (args.images is not None or args.model is not None):
            saved = _explain_images(args)
            print(f"\n[tmw] done. Explanations: {saved}")
            return 0
        run = _open_run(args)
        if args.command == "run":
            run.run_all()
        else:
            run.run_step(args.command)
    except (ValueError, FileNotFoundError, DirectoryLocked) as error:
        print(f"tmw: error: {error}", file=sys.stderr)
        return 2
    except PermissionError as error:
        print(f"tmw: error: cannot write {error.filename or 'a file'}: permission denied. Point --out (or --save) "
              f"at a folder you can write to, or copy the run there.", file=sys.stderr)
        return 2
    except (CheckpointError, PretrainedWeightsUnavailable) as error:
        print(f"tmw: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file where a folder should be, a full disk ...
        print(f"tmw: error: {error.strerror or error}{f': {error.filename}' if error.filename else ''}",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ntmw: interrupted. Finished steps are kept: run the same command again to resume.", file=sys.stderr)
        return 130
    print("\n" + run.summary())
    return 0

