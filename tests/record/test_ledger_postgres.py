"""The PostgreSQL ledger against a real server these tests start in a temp dir (Debian's
``postgresql`` package; ``.ci/run`` installs it). Skipped, saying why, only without binaries."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from safe_trpo.cli import main
from safe_trpo.record.audit import AuditLog, read_lines
from safe_trpo.record.ledger import WRITER_ROLE, open_ledger


def _bindir() -> Path | None:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                             timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        out = ""
    for candidate in [out, *sorted(map(str, Path("/usr/lib/postgresql").glob("*/bin")))]:
        if candidate and (Path(candidate) / "initdb").is_file():
            return Path(candidate)
    return None


@pytest.fixture(scope="module")
def pg() -> Iterator[str]:
    """Admin URL of a fresh PostgreSQL cluster on a free port (stopped afterwards)."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not installed: "
                    "apt-get install postgresql")
    folder = Path(tempfile.mkdtemp(prefix="safe-trpo-pg-"))
    # initdb refuses to run as root: run the server as the postgres user then.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = folder / "data"
    subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True, timeout=120)
    subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l",
                    str(folder / "log"), "-o", f"-p {port} -k {folder} -c "
                    f"listen_addresses=127.0.0.1", "start"], check=True, capture_output=True,
                   timeout=120)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate",
                        "stop"], capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


def test_training_role_can_insert_and_read_but_never_rewrite(pg, tmp_path, capsys):
    import psycopg

    assert main(["ledger", "init", pg]) == 0
    assert "SELECT, INSERT on ledger_entries" in capsys.readouterr().out
    writer = pg.replace("postgres@", f"{WRITER_ROLE}@", 1)
    run_dir = tmp_path / "run-pg"
    run_dir.mkdir()
    with AuditLog(run_dir, writer) as log:
        for i in range(5):
            log.append("event", i=i)
    assert main(["verify", str(run_dir), "--ledger", writer]) == 0
    with psycopg.connect(writer, autocommit=True) as db:
        for sql in ("UPDATE ledger_entries SET line_hash = 'x' WHERE run_id = 'run-pg'",
                    "DELETE FROM ledger_entries WHERE run_id = 'run-pg' AND seq = 4",
                    "TRUNCATE ledger_entries"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege,
                               match="permission denied for table ledger_entries"):
                db.execute(sql)
    with open_ledger(writer) as led:
        assert [e.seq for e in led.entries("run-pg")] == list(range(5))
    # Truncating the file is caught against the PostgreSQL ledger, named by seq.
    lines = (run_dir / "audit.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "audit.jsonl").write_text("".join(lines[:3]))
    capsys.readouterr()
    assert main(["verify", str(run_dir), "--ledger", writer]) == 1
    assert "TRUNCATED: the ledger anchors seq 0-4 but the file ends at seq 2: line seq 3-4 " \
           "missing" in capsys.readouterr().out
    with pytest.raises(Exception, match="line seq 3 on are missing"):
        AuditLog(run_dir, writer)


def test_concurrent_appends_on_postgres_stay_one_sequence(pg, tmp_path):
    main(["ledger", "init", pg])
    writer = pg.replace("postgres@", f"{WRITER_ROLE}@", 1)
    run_dir = tmp_path / "run-pg2"
    run_dir.mkdir()
    code = ("import sys; from safe_trpo.record.audit import AuditLog\n"
            "log = AuditLog(sys.argv[1], sys.argv[3])\n"
            "for i in range(25): log.append('event', writer=sys.argv[2], i=i)\n")
    root = str(Path(__file__).resolve().parents[2])
    procs = [subprocess.Popen([sys.executable, "-c", code, str(run_dir), w, writer],
                              env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"})
             for w in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    lines = read_lines(run_dir)
    with open_ledger(writer) as led:
        entries = led.entries("run-pg2")
    assert len(lines) == 50 and [e.seq for e in entries] == list(range(50))
    assert [e.line_hash for e in entries] == [ln["hash"] for ln in lines]
    assert main(["verify", str(run_dir), "--ledger", writer]) == 0


def test_training_does_not_start_without_its_ledger(tmp_path, capsys):
    scenario = Path(__file__).resolve().parents[2] / "scenarios" / "speed_limit_cpo.toml"
    rc = main(["train", str(scenario), "--out", str(tmp_path / "out"), "--no-progress",
               "--set", 'run.ledger="postgresql://nobody@127.0.0.1:1/none"'])
    err = capsys.readouterr().err
    assert rc == 2 and "ledger postgresql://nobody@127.0.0.1:1/none: cannot reach it" in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
