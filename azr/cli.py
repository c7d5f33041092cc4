"""The `azr` command line: `azr train`, `azr report`, `azr eval`.

    azr train [--preset cpu|quick|tiny-test|paper] [--run.steps 3] [--model.name ...] ...
    azr train --ray [--ray-address auto] ...           executor and rollouts in Ray actors (README "Scaling out")
    torchrun --nproc-per-node N -m azr.cli train ...   data-parallel learner over N processes (GPUs)
    azr report RUN_DIR                                 curves + HTML page in RUN_DIR/report
    azr report RUN_A RUN_B ... [--out DIR]             runs compared, one line per run (default runs/compare)
    azr eval [--model default|HF id|path|run dir] [--suite cruxeval-o,cruxeval-i,humaneval,math] [--compare A B] ...

`azr train --preset P --help` and `azr eval --help` list every field of the typed config with its docstring.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _split_preset(argv: list[str]) -> tuple[str, list[str]]:
    from azr.config import PRESETS

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
        raise SystemExit(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    return preset, rest


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    cmd, rest = (argv[0], argv[1:]) if argv else ("--help", [])
    if cmd == "train":
        import tyro

        from azr.config import PRESETS, TrainConfig
        from azr.train import main_train

        preset, rest = _split_preset(rest)
        cfg = tyro.cli(TrainConfig, default=PRESETS[preset](), args=rest, prog=f"azr train --preset {preset}",
                       description=f"Self-play training (preset {preset}).")
        return main_train(cfg)
    if cmd == "report":
        out = None
        if "--out" in rest:
            i = rest.index("--out")
            if i + 1 >= len(rest):
                raise SystemExit("azr report: --out needs a directory")
            out, rest = rest[i + 1], rest[:i] + rest[i + 2:]
        if not rest:
            raise SystemExit("usage: azr report RUN_DIR  |  azr report RUN_A RUN_B ... [--out DIR]")
        if out and len(rest) == 1:
            raise SystemExit("azr report: --out is for comparing two or more runs; one run's report goes in "
                             "RUN_DIR/report")
        from azr.report import write_comparison, write_report

        try:
            print(write_report(rest[0]) if len(rest) == 1 else
                  write_comparison(rest, Path(out or "runs/compare")))
        except (FileNotFoundError, ValueError) as e:
            raise SystemExit(f"azr report: {e}") from None
        return 0
    if cmd == "eval":
        import tyro

        from azr.config import EvalCommand
        from azr.eval.command import main_eval

        ecmd = tyro.cli(EvalCommand, args=rest, prog="azr eval", config=(tyro.conf.OmitArgPrefixes,),
                        description="Evaluate a model (or compare two) on CRUXEval-O/I, HumanEval-style "
                                    "and math suites.")
        return main_eval(ecmd)
    print(__doc__)
    return 0 if cmd in ("--help", "-h", "help") else 2


if __name__ == "__main__":
    raise SystemExit(main())
