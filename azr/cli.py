"""The `azr` command line: `azr train`, `azr report`, `azr eval`.

    azr train [--preset cpu|quick|tiny-test|paper] [--run.steps 3] [--model.name ...] ...
    azr train --ray [--ray-address auto] ...           executor and rollouts in Ray actors (README "Scaling out")
    torchrun --nproc-per-node N -m azr.cli train ...   data-parallel learner over N processes (GPUs)
    azr report RUN_DIR                                 curves + HTML page in RUN_DIR/report
    azr report RUN_A RUN_B ... [--out DIR]             runs compared, one line per run (default runs/compare)
    azr eval [--model default|HF id|path|run dir] [--suite cruxeval-o,cruxeval-i,humaneval,math] [--compare A B] ...

`azr train --preset P --help` and `azr eval --help` list every field of the typed config with its docstring.

Errors: a problem the user can fix (a bad config value or flag combination, a missing or corrupt model, missing
or malformed data, a corrupt checkpoint, a full disk, Ctrl-C) ends the command with one line on stderr,
``azr <command>: <what is wrong and how to fix it>``, and a non-zero exit code: 2 for usage errors, 130 for
Ctrl-C, 1 otherwise. Anything else is a bug, reported the same way. ``--debug`` (anywhere on the command line)
or ``AZR_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import sys
from pathlib import Path

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEBUG_ENV = "AZR_DEBUG"

# Errors whose message already says what is wrong and how to fix it, by defining module, class name and exit
# code. Looked up in sys.modules rather than imported: an exception of a class whose module was never imported
# cannot have been raised, and importing torch-heavy modules only to format an error would be slow.
USER_ERRORS = (
    ("azr.config", "ConfigError", EXIT_USAGE),
    ("azr.eval.suite", "EvalDataError", EXIT_ERROR),
    ("azr.policy.base", "PolicyLoadError", EXIT_ERROR),
    ("azr.checkpoint", "CheckpointError", EXIT_ERROR),
    ("azr.memory", "MemoryPlanError", EXIT_ERROR),
)
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


class CommandError(Exception):
    """A failure whose message says what to fix, raised by a command here when its library raised a generic type."""


def one_line(text: str) -> str:
    """A message as one line: multi-line messages (a list of what was tried, a fix) joined by spaces."""
    return " ".join(str(text).split())


def describe_error(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for an exception that ends a command."""
    if isinstance(exc, KeyboardInterrupt):
        return EXIT_INTERRUPTED, one_line(str(exc)) or "interrupted (Ctrl-C)"
    if isinstance(exc, CommandError):
        return EXIT_ERROR, one_line(str(exc))
    for module, name, code in USER_ERRORS:
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            return code, one_line(str(exc))
    if isinstance(exc, OSError):
        where = f": {exc.filename}" if exc.filename else ""
        what = one_line(exc.strerror or str(exc))
        if exc.errno in _DISK_FULL:
            return EXIT_ERROR, f"disk full ({what}){where}; free some space and run the same command again"
        return EXIT_ERROR, f"{what}{where}"
    return EXIT_ERROR, f"internal error: {type(exc).__name__}: {one_line(str(exc))} (rerun with --debug for the traceback)"


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _parse(cls, prog: str, args: list[str], **kw):
    """tyro.cli, with a parse error turned into one line: tyro draws a box of help around the message, which the
    command's --help shows anyway."""
    import tyro

    from azr.config import ConfigError

    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            return tyro.cli(cls, args=args, prog=prog, **kw)
    except SystemExit as e:
        if e.code in (0, None):
            raise
        raise ConfigError(f"{_tyro_message(captured.getvalue())}; see `{prog} --help`") from None


def _tyro_message(text: str) -> str:
    """The message in tyro's error box: its title and the lines before the argument's help text."""
    lines = []
    for raw in text.splitlines():
        line = raw.strip().strip("│╭╮╰╯").strip()
        if set(line) <= set("─ "):
            if lines and not raw.strip().startswith("╭"):
                break  # the rule before "Argument helptext"
            line = ""
        title = re.match(r"╭─+ (.*?) ─+╮?$", raw.strip())
        lines.append(title.group(1) + ":" if title else line)
    body = one_line(" ".join(lines[1:]))
    if lines and body.startswith(lines[0]):  # "Unrecognized options: Unrecognized options: --foo"
        lines = lines[1:]
    return one_line(" ".join(lines)) or "bad arguments"


def _split_preset(argv: list[str]) -> tuple[str, list[str]]:
    from azr.config import PRESETS, ConfigError

    preset, rest, it = "cpu", [], iter(argv)
    for arg in it:
        if arg == "--preset":
            preset = next(it, "")
        elif arg.startswith("--preset="):
            preset = arg.split("=", 1)[1]
        elif arg == "--eval-every" or arg.startswith("--eval-every="):
            rest.append(arg.replace("--eval-every", "--eval.every"))
        elif arg == "--ray":
            rest.append("--dist.ray")
        elif arg == "--ray-address" or arg.startswith("--ray-address="):
            rest.append(arg.replace("--ray-address", "--dist.ray-address"))
        else:
            rest.append(arg)
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    return preset, rest


def _train(rest: list[str]) -> int:
    from azr.config import PRESETS, TrainConfig
    from azr.train import main_train

    preset, rest = _split_preset(rest)
    cfg = _parse(TrainConfig, f"azr train --preset {preset}", rest, default=PRESETS[preset](),
                 description=f"Self-play training (preset {preset}).")
    return main_train(cfg)


REPORT_USAGE = """usage: azr report RUN_DIR  |  azr report RUN_A RUN_B ... [--out DIR]

  RUN_DIR                 learning-curve PNGs and one self-contained HTML page, written to RUN_DIR/report
  RUN_A RUN_B ...         runs compared (an ablation against its recipe): a panel per metric, a line per run
  --out DIR               where the comparison goes (default runs/compare)"""


def _report(rest: list[str]) -> int:
    from azr.config import ConfigError

    if "-h" in rest or "--help" in rest:
        print(REPORT_USAGE)
        return 0
    out = None
    if "--out" in rest:
        i = rest.index("--out")
        if i + 1 >= len(rest):
            raise ConfigError("--out needs a directory")
        out, rest = rest[i + 1], rest[:i] + rest[i + 2:]
    if not rest:
        raise ConfigError(REPORT_USAGE.splitlines()[0])
    if out and len(rest) == 1:
        raise ConfigError("--out is for comparing two or more runs; one run's report goes in RUN_DIR/report")
    from azr.report import write_report, write_comparison

    try:
        print(write_report(rest[0]) if len(rest) == 1 else write_comparison(rest, Path(out or "runs/compare")))
    except ValueError as e:  # a run directory without steps or with a corrupt metrics line
        raise CommandError(str(e)) from None
    return 0


def _eval(rest: list[str]) -> int:
    import tyro

    from azr.config import EvalCommand
    from azr.eval.command import main_eval

    ecmd = _parse(EvalCommand, "azr eval", rest, config=(tyro.conf.OmitArgPrefixes,),
                  description="Evaluate a model (or compare two) on CRUXEval-O/I, HumanEval-style and math suites.")
    return main_eval(ecmd)


COMMANDS = {"train": _train, "report": _report, "eval": _eval}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = _debug_requested(argv)
    argv = [a for a in argv if a != "--debug"]
    cmd, rest = (argv[0], argv[1:]) if argv else ("--help", [])
    if cmd not in COMMANDS:
        print(__doc__)
        return 0 if cmd in ("--help", "-h", "help") else EXIT_USAGE
    try:
        return COMMANDS[cmd](rest)
    except SystemExit:
        raise  # --help, or a message already formatted for the user
    except BrokenPipeError:
        # The reader of our output went away (`azr eval --help | head`): stop quietly, as a SIGPIPE'd tool does.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + 13
    except BaseException as exc:  # noqa: BLE001 - every failure ends as one line, unless --debug asks for more
        if debug:
            raise
        code, message = describe_error(exc)
        print(f"azr {cmd}: {message}", file=sys.stderr, flush=True)
        return code


if __name__ == "__main__":
    raise SystemExit(main())
