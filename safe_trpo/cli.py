"""``safe-trpo``: train, resume, evaluate, verify, report, backtest, review, sweep.

Bad input ends in one line on stderr naming the file/key and what was expected, and exit code 2;
a run that did not complete exits 1; success exits 0. Never a bare traceback for user errors.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from safe_trpo.errors import UserError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="safe-trpo", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a scenario in a new run folder")
    t.add_argument("scenario", type=Path)
    t.add_argument("--seed", type=int, help="override [run] seed")
    t.add_argument("--out", type=Path, help="override [run] out_dir")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a scenario value (repeatable), e.g. --set algo.target_kl=0.02")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    r = sub.add_parser("resume", help="continue a run from its last verified checkpoint")
    r.add_argument("run", type=Path)
    r.add_argument("--no-progress", action="store_true")

    e = sub.add_parser("evaluate", help="evaluate a run's policy on fresh seeds")
    e.add_argument("run", type=Path)
    e.add_argument("--episodes", type=_positive_int)
    e.add_argument("--seed", type=_seed)

    v = sub.add_parser("verify", help="check a run's audit chain and recorded files")
    v.add_argument("run", type=Path)

    rep = sub.add_parser("report", help="write the run's self-contained report.html")
    rep.add_argument("run", type=Path)

    b = sub.add_parser("backtest", help="backtest a policy or baseline on a price file")
    b.add_argument("--prices", type=Path, required=True)
    b.add_argument("--policy", required=True,
                   help="run folder, or equal-weight | buy-and-hold | min-variance | "
                        "mean-variance")
    b.add_argument("--start")
    b.add_argument("--end")
    b.add_argument("--cost-bps", type=float)
    b.add_argument("--json", type=Path)
    b.add_argument("--allow-implausible-prices", action="store_true",
                   help="accept prices outside [1e-9, 1e12] or moving x1000 overnight")

    rv = sub.add_parser("review", help="start the Streamlit review app")
    rv.add_argument("--reports", type=Path, default=Path("reports"))
    rv.add_argument("--port", type=int, default=8501)
    rv.add_argument("--host", default="127.0.0.1")
    rv.add_argument("--reviewers", type=Path, help="file of allowed reviewer names")

    sw = sub.add_parser("sweep", help="run scenarios over seeds and settings")
    sw.add_argument("scenarios", type=Path, nargs="+")
    sw.add_argument("--seeds", default="0", help="e.g. 0-9 or 0,3,7")
    sw.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=V1,V2",
                    help="values to sweep (repeatable); every combination runs")
    sw.add_argument("--backend", choices=("local", "ray"), default="local")
    sw.add_argument("--address", help="Ray cluster address (default: start a local one)")
    sw.add_argument("--workers", type=int, default=2)
    sw.add_argument("--out", type=Path, default=Path("reports"))

    sub.add_parser("keys", help="list every scenario key with its default and meaning")
    for command in (t, r, e, sw):
        command.add_argument("--trust-module", action="append", default=[], metavar="MODULE",
                             help="let [env] id = 'MODULE:...' import MODULE (repeatable); "
                                  "see safe_trpo/run/trust.py")
    return p


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def _seed(text: str) -> int:
    from safe_trpo.config import MAX_SEED

    value = int(text)
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a seed from 0 to 2**63-1, got {text}")
    return value


def _train(args: argparse.Namespace) -> int:
    from safe_trpo.config import load_scenario
    from safe_trpo.run.trainer import start_run

    overrides = list(args.set)
    if args.seed is not None:
        overrides.append(f"run.seed={args.seed}")
    if args.out is not None:
        overrides.append(f"run.out_dir={json.dumps(str(args.out))}")  # a TOML basic string
    scenario = load_scenario(args.scenario, overrides)
    outcome = start_run(scenario, progress=not args.no_progress)
    return _finish(outcome)


def _finish(outcome: object) -> int:
    print(f"run {outcome.status}: {outcome.updates} updates, {outcome.env_steps} env steps"
          + (f" ({outcome.reason})" if outcome.reason else ""))
    print(outcome.run_dir)
    return 0 if outcome.status == "completed" else 1


def _verify(run: Path) -> int:
    from safe_trpo.record.audit import verify_run

    verdict = verify_run(run)
    print(verdict.summary)
    for problem in verdict.file_problems[1:]:
        print(f"  also: {problem}")
    return 0 if verdict.ok else 1


def _dispatch(args: argparse.Namespace) -> int:
    if getattr(args, "trust_module", None):
        from safe_trpo.run.trust import trust_from_flags

        trust_from_flags(args.trust_module)
    if args.command == "train":
        return _train(args)
    if args.command == "resume":
        from safe_trpo.run.trainer import resume_run

        return _finish(resume_run(args.run, progress=not args.no_progress))
    if args.command == "evaluate":
        from safe_trpo.run.evaluate import evaluate_run

        summary = evaluate_run(args.run, args.episodes, args.seed)
        print(f"return {summary['return_mean']:.3f} +- {summary['return_std']:.3f} over "
              f"{summary['episodes']} episodes")
        for c in summary["constraints"]:
            print(f"  {c['name']}: episode cost mean {c['ep_cost_mean']:.3f}, max "
                  f"{c['ep_cost_max']:.3f}, limit {c['limit']}, over limit in "
                  f"{100 * c['frac_over_limit']:.0f}% of episodes")
        return 0
    if args.command == "verify":
        return _verify(args.run)
    if args.command == "report":
        from safe_trpo.report.build import write_report

        print(write_report(args.run))
        return 0
    if args.command == "backtest":
        from safe_trpo.finance.backtest import run_backtest_command

        return run_backtest_command(args.prices, args.policy, args.start, args.end,
                                    args.cost_bps, args.json, args.allow_implausible_prices)
    if args.command == "review":
        from safe_trpo.review.launch import launch

        return launch(args.reports, args.port, args.host, args.reviewers)
    if args.command == "sweep":
        from safe_trpo.sweep.runner import run_sweep_command

        return run_sweep_command(args.scenarios, args.seeds, args.set, args.backend,
                                 args.address, args.workers, args.out)
    if args.command == "keys":
        from safe_trpo.config import describe_fields

        print(describe_fields())
        return 0
    raise AssertionError(args.command)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _dispatch(args)
    except UserError as exc:
        print(f"safe-trpo {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"safe-trpo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
