"""``tmw``: from a folder of images to a report that says why a binary classifier decides what it decides."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from .pipeline import STEPS, Run, RunSettings

EXAMPLES = {
    "run": """examples:
  tmw run                              # the embedded faces-vs-non-faces photos, into ./tmw_run
  tmw run photos/ --out runs/cats      # photos/<class>/*.jpg, exactly two classes
  tmw run labels.csv --class-a cat     # a CSV with columns path,label
  tmw run pets/ --data-format rule --label-rule pets
  tmw run photos/ --config tmw.toml    # settings from a TOML file (flags override it)
Running again with the same --out resumes after the last finished step.""",
    "step": """examples:
  tmw {step} --out runs/cats          # (re)do this step of an existing run (the earlier steps run if missing)""",
}


def _add_settings(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("tmw_run"), help="run directory (default: ./tmw_run)")
    parser.add_argument("--config", type=Path, help="TOML file of settings (flags override it)")
    for field in fields(RunSettings):
        if field.name == "data":
            continue
        flag = "--" + field.name.replace("_", "-")
        if field.type in ("bool", "bool | None"):
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = {"int": int, "float": float}.get(str(field.type), str)
            parser.add_argument(flag, dest=field.name, type=kind, default=None,
                                help=f"default: {field.default}")


def _settings(args: argparse.Namespace) -> RunSettings:
    given = {f.name: getattr(args, f.name) for f in fields(RunSettings)
             if f.name != "data" and getattr(args, f.name, None) is not None}
    if getattr(args, "data", None) is not None:
        given["data"] = str(Path(args.data).resolve())
    if args.config is not None:
        return RunSettings.from_toml(args.config, **given)
    return RunSettings.from_mapping(given, source="the command line")


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
        sub = commands.add_parser(step, help=f"the {step} step of a run", epilog=EXAMPLES["step"].format(step=step),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("data", nargs="?", help="as for tmw run (only needed for a new run)")
        _add_settings(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run = Run(args.out, _settings(args))
        if args.command == "run":
            report = run.run_all()
        else:
            target = STEPS.index(args.command)
            for step in STEPS[:target]:
                if step not in run.done:
                    print(f"[tmw] {step} (needed first)...", flush=True)
                    getattr(run, f"step_{step}")()
                    run._mark(step)
            print(f"[tmw] {args.command}...", flush=True)
            getattr(run, f"step_{args.command}")()
            run._mark(args.command)
            report = run.dir / "report.html"
    except (ValueError, FileNotFoundError) as error:
        print(f"tmw: error: {error}", file=sys.stderr)
        return 2
    print(f"\n[tmw] done. Run directory: {run.dir}" + (f"\n[tmw] report: {report}" if report.is_file() else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
