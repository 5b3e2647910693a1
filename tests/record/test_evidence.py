"""An attacker with write access to a run folder, through the CLI: each attack ends in a named
failure and a non-zero exit (issue 13). Uses the default SQLite ledger beside the run folders."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from safe_trpo.cli import main
from safe_trpo.record import keys, signoff
from safe_trpo.record.audit import canonical_json, line_hash, read_lines
from safe_trpo.record.ledger import open_ledger
from tests.record.keyfix import make_key
from tests.review.fixtures import head, make_run

PASS = "correct horse"


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "out", "run1", checkpoint=True)


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out + out.err


def rechain(run_dir: Path, objs: list[dict]) -> None:
    """Write ``objs`` as a fully re-hashed, valid chain: what a careful attacker does."""
    prev = "0" * 64
    text = []
    for i, obj in enumerate(objs):
        obj = {k: v for k, v in obj.items() if k != "hash"} | {"seq": i, "prev_hash": prev}
        obj["hash"] = prev = line_hash(obj)
        text.append(canonical_json(obj))
    (run_dir / "audit.jsonl").write_text("\n".join(text) + "\n", encoding="utf-8")


def test_intact_run_verifies_and_prints_its_head(run, capsys):
    rc, out = cli(capsys, "verify", str(run))
    seq, hash_ = head(run)
    assert rc == 0 and f"head: seq {seq} hash {hash_}" in out
    assert out.strip().splitlines()[-2] == "VERIFIED: chain, files, ledger hold"
    assert out.strip().splitlines()[-1].startswith("INTEGRITY OK: run completed")
    assert cli(capsys, "verify", str(run), "--expect-head", hash_)[0] == 0


def test_truncation_is_caught(run, capsys):
    lines = (run / "audit.jsonl").read_text().splitlines(keepends=True)
    n = len(lines)
    (run / "audit.jsonl").write_text("".join(lines[:-3]))  # drop the last three lines
    rc, out = cli(capsys, "verify", str(run))
    assert rc == 1
    assert (f"TRUNCATED: the ledger anchors seq 0-{n - 1} but the file ends at seq {n - 4}: "
            f"line seq {n - 3}-{n - 1} missing") in out


def test_expect_head_catches_truncation_even_with_the_ledger_gone(run, capsys, tmp_path):
    kept = head(run)[1]
    lines = (run / "audit.jsonl").read_text().splitlines(keepends=True)
    (run / "audit.jsonl").write_text("".join(lines[:-1]))
    (run.parent / "ledger.sqlite").unlink()  # the attacker could write the folder above too
    rc, out = cli(capsys, "verify", str(run))
    assert rc == 2 and "no such file; pass --ledger URL" in out
    open_ledger(str(tmp_path / "fresh.sqlite"), create=True).close()
    rc, out = cli(capsys, "verify", str(run), "--ledger", str(tmp_path / "fresh.sqlite"),
                  "--expect-head", kept)
    assert rc == 1 and f"the kept head {kept[:16]}... is not in this chain" in out
    assert "does not know run 'run1'" in out


@pytest.mark.parametrize("attack", ["edit", "insert", "duplicate", "reorder"])
@pytest.mark.parametrize("at", [0, 2, -2])
def test_a_rechained_record_is_caught_by_the_ledger(run, capsys, attack, at):
    objs = read_lines(run)
    k = at % len(objs)
    if attack == "edit":
        objs[k] = objs[k] | {"forged": True}
    elif attack == "insert":
        objs.insert(k, {"type": "evaluation", "return_mean": 1e9, "time": "2026-01-01T00:00:00Z"})
    elif attack == "duplicate":
        objs.insert(k, dict(objs[k]))
    else:
        objs[k], objs[k + 1] = objs[k + 1], objs[k]
    rechain(run, objs)
    assert cli(capsys, "verify", "--ledger", str(run.parent / "ledger.sqlite"), str(run))[0] == 1
    rc, out = cli(capsys, "verify", str(run))
    first = k + 1 if attack == "duplicate" else k
    assert rc == 1 and out.startswith("INTACT")  # the chain alone is fooled...
    assert f"line seq {first}: hash differs from the ledger's" in out  # ...the ledger is not
    assert out.strip().splitlines()[-2].startswith(f"FAILED: line seq {first}: hash differs")
    assert out.strip().splitlines()[-1].startswith("INTEGRITY NOT OK:")


def test_swapped_checkpoint(run, capsys):
    ckpt = next((run / "checkpoints").iterdir())
    ckpt.write_bytes(b"other weights")
    rc, out = cli(capsys, "verify", str(run))
    rel = ckpt.relative_to(run).as_posix()
    assert rc == 1 and f"FILES DO NOT MATCH: {rel}: changed since recorded" in out


def test_swapped_checkpoint_bound_as_report_makes_approval_stale(run):
    approved = signoff.append_signoff(run, key=make_key(), decision="approve", comment="ok",
                                      displayed_seq=head(run)[0], displayed_hash=head(run)[1])
    ckpt = next((run / "checkpoints").iterdir())
    ckpt.write_bytes(b"other weights")
    with signoff.AuditLog(run) as log:
        log.append_file(run, ckpt, role="report")  # today's loophole (issue 14)
    states = signoff.signoff_states(read_lines(run))
    assert states[0].seq == approved["seq"] and states[0].stale
    assert "the run changed after review: file line" in states[0].stale_reason


def test_forged_signoff_with_a_valid_hash(run, capsys):
    seq, hash_ = head(run)
    forged = {"seq": seq + 1, "type": "signoff", "prev_hash": hash_, "reviewer": "Ada",
              "role": "model-risk reviewer", "decision": "approve", "comment": "",
              "reviewed_seq": seq, "reviewed_head_hash": hash_, "time": "2026-01-01T00:00:00Z"}
    forged["hash"] = line_hash(forged)
    with open(run / "audit.jsonl", "a") as f:
        f.write(canonical_json(forged) + "\n")
    rc, out = cli(capsys, "verify", str(run))
    assert rc == 1
    assert f"line seq {seq + 1}: not in the ledger (1 line(s) at the end were never anchored" \
        in out
    assert f"sign-off seq {seq + 1}: approve by Ada (model-risk reviewer): signature unsigned: " \
           "carries no signature" in out


def test_forged_signoff_through_the_ledger_still_fails_without_a_key(run, capsys):
    # An attacker who can also write the ledger appends a proper-looking, unsigned approval.
    seq, hash_ = head(run)
    with signoff.AuditLog(run) as log:
        log.append("signoff", reviewer="Ada", role="r", decision="approve", comment="",
                   reviewed_seq=seq, reviewed_head_hash=hash_)
    rc, out = cli(capsys, "verify", str(run))
    assert rc == 1 and "FAILED: sign-off seq" in out and "signature unsigned" in out


def test_signature_by_a_key_outside_the_keyring(run, capsys, tmp_path):
    team = tmp_path / "team.toml"
    keys.new_reviewer("Ada", "reviewer", PASS, tmp_path / "ada.key", team, scrypt_n=2**10)
    mallory = make_key("Ada", "reviewer")  # same printed name, another key
    seq, hash_ = head(run)
    signoff.append_signoff(run, key=mallory, decision="approve", comment="",
                           displayed_seq=seq, displayed_hash=hash_)
    rc, out = cli(capsys, "verify", str(run))
    assert rc == 0 and "signature unverified identity" in out  # no keyring: identity unknown
    rc, out = cli(capsys, "verify", str(run), "--keyring", str(team))
    assert rc == 1
    assert f"signature key not in keyring: key {mallory.fingerprint[:16]} is not in the " \
           "keyring" in out


def test_cli_signoff_signs_and_verifies_and_refuses_a_wrong_passphrase(run, capsys, tmp_path,
                                                                     monkeypatch):
    team, key = tmp_path / "team.toml", tmp_path / "ada.key"
    monkeypatch.setenv("SAFE_TRPO_PASSPHRASE", PASS)
    rc, out = cli(capsys, "reviewer", "new", "Ada Lovelace", "--role", "model-risk reviewer",
                  "--key-out", str(key), "--keyring", str(team))
    assert rc == 0 and key.stat().st_mode & 0o077 == 0
    assert "PRIVATE" not in key.read_text() and "ciphertext" in key.read_text()
    before = (run / "audit.jsonl").read_bytes()
    monkeypatch.setenv("SAFE_TRPO_PASSPHRASE", "not the passphrase")
    rc, out = cli(capsys, "signoff", str(run), "--key", str(key), "--decision", "approve")
    assert rc == 2 and f"{key}: wrong passphrase" in out
    assert (run / "audit.jsonl").read_bytes() == before
    monkeypatch.setenv("SAFE_TRPO_PASSPHRASE", PASS)
    rc, out = cli(capsys, "signoff", str(run), "--key", str(key), "--decision", "approve",
                  "--head", head(run)[1])
    assert rc == 0 and "signed: approve by Ada Lovelace (model-risk reviewer)" in out
    rc, out = cli(capsys, "verify", str(run), "--keyring", str(team))
    assert rc == 0 and "signature verified: signed by Ada Lovelace" in out
    # Editing a signed field breaks the signature (re-chained and re-anchored: only the
    # signature is left to catch it).
    objs = read_lines(run)
    objs[-1]["decision"] = "reject"
    objs[-1]["comment"] = "no"
    rechain(run, objs)
    rc, out = cli(capsys, "verify", str(run), "--keyring", str(team))
    assert rc == 1 and "signature INVALID: the Ed25519 signature does not verify" in out


def test_unreachable_ledger_is_a_clear_error(run, capsys):
    rc, out = cli(capsys, "verify", str(run), "--ledger", "postgresql://nobody@127.0.0.1:1/x")
    assert rc == 2 and "ledger postgresql://nobody@127.0.0.1:1/x: cannot reach it" in out


def _bundle(run: Path, tmp_path: Path, capsys) -> tuple[Path, Path]:
    team = tmp_path / "team.toml"
    keys.new_reviewer("Ada", "r", PASS, tmp_path / "ada.key", team, scrypt_n=2**10)
    key = keys.load_reviewer_key(tmp_path / "ada.key", PASS)
    seq, hash_ = head(run)
    signoff.append_signoff(run, key=key, decision="approve", comment="ok", displayed_seq=seq,
                           displayed_hash=hash_)
    out = tmp_path / "b.zip"
    assert cli(capsys, "bundle", str(run), "--out", str(out))[0] == 0
    return out, team


def verify_bundle(bundle: Path, *args: str) -> tuple[int, str]:
    with zipfile.ZipFile(bundle) as z:
        script = z.read("verify_bundle.py")
    path = bundle.with_name("verify_bundle.py")
    path.write_bytes(script)
    # Run with -I (isolated: no PYTHONPATH, no cwd on the path): standard library + cryptography.
    proc = subprocess.run([sys.executable, "-I", str(path), str(bundle), *args],
                          capture_output=True, text=True, timeout=60)
    return proc.returncode, proc.stdout + proc.stderr


def rewrite_zip(src: Path, dst: Path, name: str, edit) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            zout.writestr(item, edit(data) if item == name else data)


def test_bundle_verifies_standalone_and_tampering_is_named(run, tmp_path, capsys):
    bundle, team = _bundle(run, tmp_path, capsys)
    rc, out = verify_bundle(bundle, "--keyring", str(team))
    assert rc == 0 and out.strip().endswith("BUNDLE VERIFIED"), out
    ckpt = next((run / "checkpoints").iterdir()).relative_to(run).as_posix()
    cases = {
        f"run1/{ckpt}": (lambda b: b + b"x", f"files: {ckpt}: differs from its hash"),
        "ledger.json": (lambda b: b.replace(b'"seq": 0', b'"seq": 9', 1),
                        "ledger: entries are not one chain at seq 0"),
        "run1/audit.jsonl": (lambda b: b"".join(b.splitlines(keepends=True)[:-2]),
                             "ledger: TRUNCATED"),
    }
    for i, (name, (edit, message)) in enumerate(cases.items()):
        bad = tmp_path / f"bad{i}.zip"
        rewrite_zip(bundle, bad, name, edit)
        rc, out = verify_bundle(bad, "--keyring", str(team))
        assert rc == 1 and f"BUNDLE FAILED: {message}" in out, out
    other = tmp_path / "other.toml"
    keys.new_reviewer("Eve", "r", PASS, tmp_path / "eve.key", other, scrypt_n=2**10)
    rc, out = verify_bundle(bundle, "--keyring", str(other))
    assert rc == 1 and "is not in the keyring" in out


def test_concurrent_appends_from_two_processes_stay_one_chain(tmp_path):
    run_dir = tmp_path / "out" / "r"
    run_dir.mkdir(parents=True)
    code = ("import sys; from safe_trpo.record.audit import AuditLog\n"
            "log = AuditLog(sys.argv[1])\n"
            "for i in range(40): log.append('event', writer=sys.argv[2], i=i)\n")
    root = str(Path(__file__).resolve().parents[2])
    procs = [subprocess.Popen([sys.executable, "-c", code, str(run_dir), w],
                              env={"PYTHONPATH": root, "PATH": "/usr/bin:/bin"})
             for w in ("a", "b")]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    lines = read_lines(run_dir)
    assert len(lines) == 80 and signoff.verify_contained(run_dir).ok
    with open_ledger(str(run_dir.parent / "ledger.sqlite")) as led:
        entries = led.entries("r")
    assert [e.seq for e in entries] == list(range(80))
    assert [e.line_hash for e in entries] == [ln["hash"] for ln in lines]
    assert [e.ledger_seq for e in entries] == sorted(e.ledger_seq for e in entries)
    assert json.dumps(sorted((ln["writer"], ln["i"]) for ln in lines)) == json.dumps(
        sorted((w, i) for w in "ab" for i in range(40)))


def test_report_of_a_run_away_from_its_ledger_is_written_unbound(run, tmp_path):
    from safe_trpo.report.build import write_report

    moved = tmp_path / "elsewhere" / "run1"
    moved.parent.mkdir()
    run.rename(moved)
    before = (moved / "audit.jsonl").read_bytes()
    path = write_report(moved)
    assert path.name == "report.unbound.html"
    assert "its ledger disagrees: ledger" in path.read_text()
    assert (moved / "audit.jsonl").read_bytes() == before


def test_a_scenario_ledger_path_is_used_and_found_by_verify(tmp_path, capsys):
    scenario = Path(__file__).resolve().parents[2] / "scenarios" / "speed_limit_cpo.toml"
    ledger = tmp_path / "elsewhere" / "team-ledger.sqlite"
    rc = main(["train", str(scenario), "--out", str(tmp_path / "out"), "--no-progress",
               "--set", "algo.total_steps=1024", "--set", "algo.steps_per_update=1024",
               "--set", f'run.ledger="{ledger}"'])
    run_dir = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0 and ledger.is_file() and not (tmp_path / "out" / "ledger.sqlite").exists()
    rc, out = cli(capsys, "verify", str(run_dir))
    assert rc == 0 and f"ledger {ledger}: all" in out
    rc, out = cli(capsys, "resume", str(run_dir))  # appends through the same ledger
    assert "already completed" in out
