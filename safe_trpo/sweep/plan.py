"""A sweep's plan: scenarios x ``--set`` values x seeds, expanded into named, deterministic jobs.

Pure bookkeeping: parsing ``--seeds`` and ``--set``, and naming each job folder from a digest of
its resolved scenario, so a re-run finds what an earlier one did. Running the jobs is
``runner``'s; reading their results is ``summary``'s.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any

from safe_trpo.errors import UserError

DataFiles = tuple[tuple[str, str, str], ...]


def data_files_key(files: Iterable[Any] | None) -> DataFiles:
    """A comparable form of a ``data_files`` list ({name, path, sha256} dicts, as recorded in
    ``run_started`` and returned by ``config.data_file_hashes``): sorted (name, path, sha256)."""
    return tuple(sorted((str(d.get("name")), str(d.get("path")), str(d.get("sha256")))
                        for d in files or () if isinstance(d, dict)))


RESERVED_KEYS = {"run.seed": "--seeds", "run.out_dir": "--out"}


@dataclass(frozen=True)
class Job:
    """One run of a sweep: a configuration (scenario + overrides) at one seed."""

    scenario: str  # absolute path of the scenario file
    overrides: tuple[str, ...]  # this configuration's --set assignments, e.g. "algo.target_kl=0.02"
    seed: int
    label: str  # readable name of the configuration, e.g. "cstr[target_kl=0.02]"
    config: str  # folder-safe unique name of the configuration
    job_dir: str  # absolute; the parent of this job's run folders
    make_report: bool = True  # write each completed run's report.html
    # (name, path, sha256) of the scenario's data files when planned; a done run must have
    # recorded the same. None (a hand-made Job) skips that check.
    data_files: DataFiles | None = None


@dataclass(frozen=True)
class SweepPlan:
    sweep_id: str
    sweep_dir: Path
    scenarios: tuple[Path, ...]
    seeds: tuple[int, ...]
    sets: tuple[tuple[str, tuple[str, ...]], ...]
    jobs: tuple[Job, ...]


def parse_seeds(text: str) -> list[int]:
    """``"0-9"``, ``"0,3,7"``, ``"5"``, ``"0-2,8"`` -> seeds in the order given (no repeats)."""
    seeds: list[int] = []
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise UserError(f"--seeds {text!r}: expected non-negative integers and ranges like "
                            f"0-9 or 0,3,7, got {part.strip()!r}")
        lo, hi = int(m[1]), int(m[2] if m[2] is not None else m[1])
        if hi < lo:
            raise UserError(f"--seeds {text!r}: range {lo}-{hi} runs backwards")
        for seed in range(lo, hi + 1):
            if seed in seeds:
                raise UserError(f"--seeds {text!r}: seed {seed} is listed twice")
            seeds.append(seed)
    return seeds


def split_values(text: str) -> list[str]:
    """Split on commas outside brackets, braces and quotes: ``1,[32,32]`` -> ``1``, ``[32,32]``."""
    values, depth, quote, start = [], 0, "", 0
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    if quote or depth:
        raise UserError(f"--set values {text!r}: unbalanced quotes or brackets")
    if any(not v for v in values):
        raise UserError(f"--set values {text!r}: empty value (expected v1,v2,...)")
    return values


def parse_sets(sets: list[str]) -> list[tuple[str, list[str]]]:
    """``["algo.target_kl=0.01,0.02"]`` -> ``[("algo.target_kl", ["0.01", "0.02"])]``."""
    out: list[tuple[str, list[str]]] = []
    for item in sets:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or "." not in key:
            raise UserError(f"--set {item!r}: expected section.key=v1,v2,...")
        if key in RESERVED_KEYS:
            raise UserError(f"--set {item!r}: use {RESERVED_KEYS[key]} for {key} in a sweep")
        if key in (k for k, _ in out):
            raise UserError(f"--set {item!r}: {key} is given twice")
        values = split_values(raw)
        if len(set(values)) != len(values):
            raise UserError(f"--set {item!r}: a value is listed twice")
        out.append((key, values))
    return out


def _slug(text: str, limit: int = 60) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", text).strip("_")[:limit] or "x"


def _short_keys(keys: list[str]) -> list[str]:
    """Last key component (``target_kl``) unless two keys share it, then the full key."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return [s if last.count(s) == 1 else k for s, k in zip(last, keys, strict=True)]


def plan_sweep(scenarios: list[Path], seeds: str, sets: list[str], out: Path,
               make_reports: bool = True) -> SweepPlan:
    """Every (scenario, --set values, seed) job, in a deterministic folder under ``out``.

    scenarios: scenario files; seeds: ``--seeds`` text (``0-9``, ``0,3,7``); sets: ``--set``
    items ``section.key=v1,v2``, every combination becomes a configuration; out: the reports
    root (the sweep goes in ``out/sweeps/<id>``); make_reports: write each completed run's
    report.html. A configuration that does not load (a bad value, an unknown key) is a
    UserError before anything runs; runs that fail later are reported per job.
    """
    from safe_trpo.config import data_file_hashes, load_scenario
    from safe_trpo.run.env_catalog import check_constraint_names
    from safe_trpo.run.trainer import scenario_digest

    paths = tuple(Path(p).resolve() for p in scenarios)
    seed_list, set_list = parse_seeds(seeds), parse_sets(sets)
    texts = []
    for p in paths:
        try:
            texts.append(hashlib.sha256(p.read_bytes()).hexdigest())
        except OSError:
            raise UserError(f"{p}: scenario file not found") from None
    ident = json.dumps({"scenarios": texts, "seeds": seed_list, "sets": set_list})
    prefix = _slug("+".join(p.stem for p in paths), 40)
    sweep_id = f"{prefix}-{hashlib.sha256(ident.encode()).hexdigest()[:10]}"
    sweep_dir = Path(out).resolve() / "sweeps" / sweep_id
    keys = [k for k, _ in set_list]
    jobs, seen = [], {}
    for path in paths:
        for values in product(*(v for _, v in set_list)):
            overrides = tuple(f"{k}={v}" for k, v in zip(keys, values, strict=True))
            scenario = load_scenario(path, overrides)
            check_constraint_names(scenario)  # a wrong cost name stops the sweep up front
            digest = scenario_digest(scenario)
            data = data_files_key(data_file_hashes(scenario))
            shown = ",".join(f"{s}={v}" for s, v in zip(_short_keys(keys), values, strict=True))
            label = path.stem + (f"[{shown}]" if keys else "")
            if digest in seen:
                raise UserError(f"sweep: configurations {seen[digest]} and {label} resolve to "
                                f"the same scenario")
            seen[digest] = label
            config = f"{_slug(label)}-{digest[:6]}"
            jobs += [Job(str(path), overrides, seed, label, config,
                         str(sweep_dir / "runs" / f"{config}-s{seed}"), make_reports, data)
                     for seed in seed_list]
    return SweepPlan(sweep_id, sweep_dir, paths, tuple(seed_list),
                     tuple((k, tuple(v)) for k, v in set_list), tuple(jobs))
