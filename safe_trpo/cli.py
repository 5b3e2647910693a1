"""``safe-trpo``: train, resume, evaluate, compare, verify, report, backtest, review, sweep,
sign off.

Bad input ends in one line on stderr naming the file/key and what was expected, and exit code 2;
a run that did not complete exits 1; success exits 0. Never a bare traceback for user errors.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
from collections.abc import Iterator
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

    cmp = sub.add_parser("compare", help="a run's policy vs PID / MPC on the same episodes")
    cmp.add_argument("run", type=Path)
    cmp.add_argument("--controllers", default="pid,mpc", help="comma-separated: pid, pid-ff, "
                     "mpc, hold")
    cmp.add_argument("--episodes", type=_positive_int, default=20)
    cmp.add_argument("--seed", type=_seed)

    v = sub.add_parser("verify", help="check a run's chain, files, ledger and signatures")
    v.add_argument("run", type=Path)
    v.add_argument("--ledger", help="ledger URL (default: the run's own, see docs/audit.md)")
    v.add_argument("--expect-head", help="a head hash kept from an earlier verify")
    v.add_argument("--keyring", type=Path, help="TOML keyring of trusted reviewer keys")

    lg = sub.add_parser("ledger", help="ledger administration").add_subparsers(
        dest="ledger_command", required=True)
    li = lg.add_parser("init", help="create the ledger schema (and an insert-only role)")
    li.add_argument("url")
    li.add_argument("--role", default="safe_trpo_writer", help="PostgreSQL role for training")

    rw = sub.add_parser("reviewer", help="reviewer keys").add_subparsers(
        dest="reviewer_command", required=True)
    rn = rw.add_parser("new", help="make a reviewer's key pair and add it to a keyring")
    rn.add_argument("name")
    rn.add_argument("--role", required=True)
    rn.add_argument("--key-out", type=Path, required=True)
    rn.add_argument("--keyring", type=Path, required=True)

    so = sub.add_parser("signoff", help="sign a run's record with your reviewer key")
    so.add_argument("run", type=Path)
    so.add_argument("--key", type=Path, required=True)
    so.add_argument("--decision", choices=("approve", "reject", "needs_changes"), required=True)
    so.add_argument("--comment", default="")
    so.add_argument("--head", help="the head hash you reviewed (refused if it moved)")
    so.add_argument("--ledger")

    bu = sub.add_parser("bundle", help="zip a run with its ledger entries and a verifier")
    bu.add_argument("run", type=Path)
    bu.add_argument("--out", type=Path, required=True)
    bu.add_argument("--ledger")

    rep = sub.add_parser("report", help="write the run's self-contained report.html")
    rep.add_argument("run", type=Path)
    rep.add_argument("--keyring", type=Path, help="keyring the sign-offs are checked against")

    b = sub.add_parser("backtest", help="backtest a policy or baseline on a price file")
    b.add_argument("--prices", type=Path, required=True)
    b.add_argument("--policy", required=True,
                   help="run folder, or equal-weight | buy-and-hold | inverse-vol | risk-parity "
                        "| min-variance | mean-variance")
    b.add_argument("--start")
    b.add_argument("--end")
    b.add_argument("--json", type=Path)
    b.add_argument("--allow-implausible-prices", action="store_true",
                   help="accept prices outside [1e-9, 1e12] or moving x1000 overnight")
    _market_args(b)

    wf = sub.add_parser("walkforward", help="train on rolling windows, backtest each on the next")
    wf.add_argument("scenario", type=Path)
    wf.add_argument("--prices", type=Path, required=True)
    wf.add_argument("--train-years", type=float, required=True)
    wf.add_argument("--test-years", type=float, required=True)
    wf.add_argument("--seeds", default="0", help="e.g. 0-4 or 0,3")
    wf.add_argument("--windows", type=_positive_int, help="at most this many (the latest)")
    wf.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    wf.add_argument("--out", type=Path, default=Path("reports"))
    _market_args(wf)

    rv = sub.add_parser("review", help="start the Streamlit review app")
    rv.add_argument("--reports", type=Path, default=Path("reports"))
    rv.add_argument("--port", type=int, default=8501)
    rv.add_argument("--host", default="127.0.0.1")
    rv.add_argument("--reviewers", type=Path, help="file of allowed reviewer names")
    rv.add_argument("--keyring", type=Path, help="TOML keyring the sign-offs are checked against")

    sw = sub.add_parser("sweep", help="run scenarios over seeds and settings")
    sw.add_argument("scenarios", type=Path, nargs="+")
    sw.add_argument("--seeds", default="0", help="e.g. 0-9 or 0,3,7")
    sw.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=V1,V2",
                    help="values to sweep (repeatable); every combination runs")
    sw.add_argument("--backend", choices=("local", "ray"), default="local")
    sw.add_argument("--address", help="Ray cluster address (default: start a local one)")
    sw.add_argument("--workers", type=int, default=2)
    sw.add_argument("--out", type=Path, default=Path("reports"))

    sub.add_parser("keys", help="list every scenario key with its default and meaning "
                                "(environment kwargs and cost names: safe-trpo envs)")
    sub.add_parser("envs", help="list every environment: cost names, kwargs, episode length, "
                                "an example scenario")
    for command in (t, r, e, sw, cmp, wf):
        command.add_argument("--trust-module", action="append", default=[], metavar="MODULE",
                             help="let [env] id = 'MODULE:...' import MODULE (repeatable); "
                                  "see safe_trpo/run/trust.py")
    return p


def _market_args(p: argparse.ArgumentParser) -> None:
    """Execution and cost options shared by backtest and walkforward (see envs.portfolio)."""
    p.add_argument("--cost-bps", type=float, help="fees, bps of the traded amount (default 10)")
    p.add_argument("--execution-lag-days", type=int, help="fill at close t+lag (default 1)")
    p.add_argument("--half-spread-bps", type=float, help="half the bid-ask spread (default 0)")
    p.add_argument("--impact-coef", type=float, help="square-root impact coefficient (0 = off)")
    p.add_argument("--aum-to-adv", type=float, help="portfolio value / daily traded value")
    p.add_argument("--cash-rate", type=float, help="annual rate earned by cash (default 0)")


def _market(args: argparse.Namespace) -> dict[str, object]:
    hs = args.half_spread_bps
    return {"execution_lag_days": args.execution_lag_days,
            "half_spread": None if hs is None else hs / 1e4, "impact_coef": args.impact_coef,
            "aum_to_adv": args.aum_to_adv, "cash_rate": args.cash_rate}


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


# Set by ``entry``: this process runs one command and exits (not a caller of ``main``).
_WHOLE_PROCESS = False


@contextlib.contextmanager
def _imports_without_gc() -> Iterator[None]:
    """Import torch and the training stack with the cycle collector off, then freeze what
    they built.

    Importing torch builds ~170,000 long-lived objects and nothing to collect, yet the
    collector runs ~370 times meanwhile, twice over everything (about 0.1 s per command).
    Frozen objects are left out of later collections; reference counting still frees them.
    Freezing is for a whole process only: a caller of ``main`` that goes on (the tests) keeps
    its garbage collected as before.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if _WHOLE_PROCESS:
            gc.freeze()
        if was_enabled:
            gc.enable()


def _train(args: argparse.Namespace) -> int:
    with _imports_without_gc():
        from safe_trpo.config import load_scenario
        from safe_trpo.run.trainer import start_run

    overrides = list(args.set)
    if args.seed is not None:
        overrides.append(f"run.seed={args.seed}")
    if args.out is not None:
        overrides.append(f"run.out_dir={json.dumps(str(args.out))}")  # a TOML basic string
    scenario = load_scenario(args.scenario, overrides)
    from safe_trpo.run.env_catalog import warn

    warn(scenario, "train")
    outcome = start_run(scenario, progress=not args.no_progress)
    return _finish(outcome)


def _finish(outcome: object) -> int:
    print(f"run {outcome.status}: {outcome.updates} updates, {outcome.env_steps} env steps"
          + (f" ({outcome.reason})" if outcome.reason else ""))
    print(outcome.run_dir)
    return 0 if outcome.status == "completed" else 1


def _record_command(args: argparse.Namespace) -> int:
    from safe_trpo.record import commands

    if args.command == "verify":
        return commands.verify_command(args.run, args.ledger, args.expect_head, args.keyring)
    if args.command == "ledger":
        return commands.ledger_init_command(args.url, args.role)
    if args.command == "reviewer":
        return commands.reviewer_new_command(args.name, args.role, args.key_out, args.keyring)
    if args.command == "signoff":
        return commands.signoff_command(args.run, args.key, args.decision, args.comment,
                                        args.head, args.ledger)
    return commands.bundle_command(args.run, args.out, args.ledger)


def _dispatch(args: argparse.Namespace) -> int:
    if getattr(args, "trust_module", None):
        from safe_trpo.run.trust import trust_from_flags

        trust_from_flags(args.trust_module)
    if args.command == "train":
        return _train(args)
    if args.command == "resume":
        with _imports_without_gc():
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
    if args.command == "compare":
        from safe_trpo.run.compare import compare_run, format_table, parse_controllers

        print(format_table(compare_run(args.run, parse_controllers(args.controllers),
                                       args.episodes, args.seed)))
        return 0
    if args.command in ("verify", "ledger", "reviewer", "signoff", "bundle"):
        return _record_command(args)
    if args.command == "report":
        from safe_trpo.report.build import write_report

        if args.keyring is not None:  # read by the sign-off section (record.keys)
            os.environ["SAFE_TRPO_KEYRING"] = str(args.keyring.resolve())
        print(write_report(args.run))
        return 0
    if args.command == "backtest":
        from safe_trpo.finance.backtest import run_backtest_command

        return run_backtest_command(args.prices, args.policy, args.start, args.end,
                                    args.cost_bps, args.json, _market(args),
                                    args.allow_implausible_prices)
    if args.command == "walkforward":
        from safe_trpo.finance.walkforward import run_walkforward_command

        return run_walkforward_command(args, _market(args))
    if args.command == "review":
        from safe_trpo.review.launch import launch

        return launch(args.reports, args.port, args.host, args.reviewers, args.keyring)
    if args.command == "sweep":
        from safe_trpo.sweep.runner import run_sweep_command

        return run_sweep_command(args.scenarios, args.seeds, args.set, args.backend,
                                 args.address, args.workers, args.out)
    if args.command == "keys":
        from safe_trpo.config import describe_fields

        print(describe_fields())
        print("\n[env] kwargs and the cost names a [[constraints]] name may take depend on "
              "the environment: run `safe-trpo envs`.")
        return 0
    if args.command == "envs":
        from safe_trpo.run.env_catalog import describe_envs

        print(describe_envs())
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


def entry() -> None:
    """The ``safe-trpo`` console script (and ``python -m safe_trpo.cli``): ``main`` as a
    process, which then exits with its code."""
    global _WHOLE_PROCESS
    _WHOLE_PROCESS = True
    code = main()
    # At exit the interpreter tears down torch's ~1000 modules, and its cycle collector walks
    # all ~170,000 objects they made, again and again: about half a second of every command
    # here, as much as a short training run's updates. Frozen objects are skipped by the
    # collector only; reference counting still frees them, and every file the command wrote
    # was closed before ``main`` returned. Only here, never in ``main``: a process that calls
    # ``main`` and goes on (the tests) must keep its garbage collected.
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
