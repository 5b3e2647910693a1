"""Start the review app: what ``safe-trpo review [--reports DIR] [--port N]`` calls."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from safe_trpo.errors import UserError
from safe_trpo.record import keys, signoff
from safe_trpo.review import runs, serve

APP = Path(__file__).resolve().with_name("app.py")


def build_command(reports_dir: Path, port: int, host: str = "127.0.0.1",
                  reviewers_file: Path | None = None,
                  keyring_file: Path | None = None) -> list[str]:
    """The ``streamlit run`` command line for the app, after checking its inputs.

    reports_dir: folder of run folders (must exist). port: TCP port, 1-65535 (Streamlit's
    usual is 8501). host: address to listen on; the default keeps the app on this machine, and
    anything else exposes the app to the network (sign-off needs a reviewer's key file and
    passphrase).
    reviewers_file: optional allow-list of reviewer names (see ``signoff.load_reviewers``);
    it is read here too, so a bad list fails now with a clear message rather than in the page.
    keyring_file: optional keyring (``record.keys``) sign-offs are checked against, and whose
    keys alone may sign in the app; read here too, for the same reason.
    """
    root = runs.reports_root(reports_dir)
    if not isinstance(port, int) or not 0 < port < 65536:
        raise UserError(f"--port: expected a TCP port number 1-65535, got {port!r}")
    # serve.py is Streamlit's CLI behind a Host/Origin guard: only pages served from this
    # address can open the app's websocket (no other local page, no DNS rebinding).
    guard = [arg for name in serve.allowed_hosts(host, port) for arg in ("--allow-host", name)]
    cmd = [sys.executable, "-m", "safe_trpo.review.serve", *guard, "run", str(APP),
           "--server.address", host, "--server.port", str(port),
           "--server.headless", "true", "--browser.gatherUsageStats", "false",
           # The app never needs to watch its own source; watching costs a thread per file.
           "--server.fileWatcherType", "none",
           # Reviewers need no "Deploy" button or developer menu.
           "--client.toolbarMode", "minimal",
           "--", "--reports", str(root)]
    if reviewers_file is not None:
        signoff.load_reviewers(Path(reviewers_file))
        cmd += ["--reviewers", str(Path(reviewers_file).resolve())]
    if keyring_file is not None:
        keys.load_keyring(Path(keyring_file))
        cmd += ["--keyring", str(Path(keyring_file).resolve())]
    return cmd


def launch(reports_dir: Path, port: int, host: str = "127.0.0.1",
           reviewers_file: Path | None = None, keyring_file: Path | None = None) -> int:
    """Run the app in the foreground until it stops (Ctrl-C); returns its exit code."""
    cmd = build_command(reports_dir, port, host, reviewers_file, keyring_file)
    print(f"safe-trpo review: serving {cmd[cmd.index('--reports') + 1]} at "
          f"http://{host}:{port}  (Ctrl-C to stop)", flush=True)
    proc = subprocess.Popen(cmd)
    # A service manager stops us with SIGTERM, which (unlike Ctrl-C) reaches only this process:
    # pass it on, or the server would outlive its launcher.
    previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        # Ctrl-C reached Streamlit too (same process group); give it time to shut down cleanly.
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
