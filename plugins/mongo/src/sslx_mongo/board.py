"""``sslx board``: Omniboard, the web UI for Sacred runs, over the runs that
``sslx run --mongo`` and ``sslx sync`` put in MongoDB.

Omniboard is a Node.js program (npm package ``omniboard``). It is installed on
first use into a local folder (``$XDG_CACHE_HOME/sslx/omniboard``, else
``~/.cache/sslx/omniboard``, or ``--dir``) so nothing global changes.

Omniboard has no authentication and a Delete button, and version 2.16.1 cannot
be told an address: it listens on every interface. sslx starts it with a
preload (``listen_host.js``, ``node --require``) that makes it listen on
``host`` only, the loopback address unless the user asks for more. Omniboard
runs in its own process group (stopping it reaches any child it spawned) and
dies with its parent (``PR_SET_PDEATHSIG``), so it never outlives ``sslx board``,
however that ends. :func:`start_board` returns once Omniboard's API answers.

The database URL may hold a password: it reaches Omniboard only, through its
environment (not its command line, which other users can read with ``ps``),
and every message shows it redacted.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from pymongo import uri_parser

from sslx.errors import UserError
from sslx_mongo.target import MongoTarget, redact_text

OMNIBOARD_VERSION = "2.16.1"
DEFAULT_PORT = 9000  # Omniboard's own default
LOOPBACK = "127.0.0.1"
API_PATH = "/sacred/api/v1/Runs"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
INSTALL_TIMEOUT_S = 600.0
PRELOAD = Path(__file__).with_name("listen_host.js")
PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>

_URL_PARTS = re.compile(r"^(?P<base>mongodb(?:\+srv)?://[^/?]*)(?:/[^?]*)?(?P<query>\?.*)?$")


def default_folder() -> Path:
    """Where Omniboard is installed unless ``--dir`` says otherwise."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "sslx" / "omniboard"


def url_with_db(target: MongoTarget) -> str:
    """The target's URL with its database as the path, as Omniboard's
    ``MONGO_URI`` wants it (query options such as authSource are kept)."""
    m = _URL_PARTS.match(target.url)
    if not m:
        raise UserError(f"--mongo / SSLX_MONGO_URL: {target.shown!r} is not a mongodb:// URL that Omniboard can use.")
    query = m["query"] or ""
    if "@" in m["base"] and not re.search(r"[?&]authSource=", query, re.IGNORECASE):
        # a database in the path is also where users authenticate unless authSource says otherwise: keep the
        # user's own authSource (the URL's database, else admin) now that the path names the runs' database
        parsed = uri_parser.parse_uri(target.url)
        auth_source = quote(parsed.get("database") or "admin", safe="")
        query = f"{query}&authSource={auth_source}" if query else f"?authSource={auth_source}"
    return f"{m['base']}/{target.db}{query}"


def _tail(text: str, lines: int = 12) -> str:
    """The last ``lines`` lines of ``text``, after its first error messages
    (a Node.js error's message comes before a long stack trace)."""
    all_lines = text.strip().splitlines()
    errors = [line for line in all_lines[:-lines] if re.search(r"Error\b", line) and not line.strip().startswith("at ")]
    return "\n".join(errors[:3] + (["..."] if errors else []) + all_lines[-lines:])


def installed_version(folder: Path) -> str | None:
    try:
        return json.loads((folder / "node_modules" / "omniboard" / "package.json").read_text()).get("version")
    except (OSError, ValueError):
        return None


def ensure_omniboard(folder: Path, say: Callable[[str], None] = print) -> Path:
    """Omniboard's start script in ``folder``, installed there with npm
    first when it is missing (or another version)."""
    script = folder / "node_modules" / "omniboard" / "dist" / "start.js"
    if script.exists() and installed_version(folder) == OMNIBOARD_VERSION:
        return script
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise UserError(
            "sslx board runs Omniboard, a Node.js program, and Node.js or npm is not on PATH. Install both "
            "(e.g. `apt-get install nodejs npm`, or from https://nodejs.org), then run `sslx board` again: it "
            f"installs omniboard@{OMNIBOARD_VERSION} into {folder} (choose the folder with --dir)."
        )
    folder.mkdir(parents=True, exist_ok=True)
    say(f"Installing omniboard@{OMNIBOARD_VERSION} into {folder} (first use; this takes a minute or two)...")
    try:
        proc = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(folder), f"omniboard@{OMNIBOARD_VERSION}"],
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise UserError(
            f"`npm install omniboard@{OMNIBOARD_VERSION}` into {folder} took over "
            f"{INSTALL_TIMEOUT_S:.0f} s; check the network and npm's registry, then retry."
        ) from None
    if proc.returncode != 0 or not script.exists():
        raise UserError(
            f"`npm install --prefix {folder} omniboard@{OMNIBOARD_VERSION}` failed (exit {proc.returncode}); "
            f"npm said:\n{_tail(proc.stdout + proc.stderr)}\nFix that (network, npm registry, disk), or install "
            "it yourself into a folder and give it with --dir."
        )
    return script


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise UserError(
                f"--host {host} --port {port}: cannot listen there ({exc.strerror}); give a free port "
                f"(e.g. --port {port + 1}) or an address of this machine."
            ) from None


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` that makes the child get SIGTERM when its parent
    dies, however it dies (Linux), and exit if the parent is already gone."""

    def preexec() -> None:
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:  # the parent died before prctl: nobody would signal us
                os._exit(1)

    return preexec


class BoardProcess:
    """A running Omniboard: ``url`` is its web page; ``stop()`` (or leaving
    the ``with`` block) terminates its process group, killing it after
    ``STOP_TIMEOUT_S``. Its output goes to a temporary log whose tail (the
    password removed) is in every error."""

    def __init__(self, target: MongoTarget, host: str, port: int, proc: subprocess.Popen, log: Path):
        self.target = target
        self.host = host
        self.port = port
        local = LOOPBACK if host in ("0.0.0.0", "::", "") else host
        self.url = f"http://{f'[{local}]' if ':' in local else local}:{port}/"
        self.proc = proc
        self.log = log

    def output_tail(self) -> str:
        """The last lines Omniboard printed, the password removed."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return redact_text(_tail(text), self.target.url)

    def api_ok(self) -> bool:
        """Whether Omniboard's runs API answers 200 now."""
        try:
            with urllib.request.urlopen(self.url.rstrip("/") + API_PATH, timeout=5) as resp:
                return resp.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Return once the API answers; a UserError (with Omniboard's output)
        if it exits first or does not answer within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self._failure(f"Omniboard exited (status {self.proc.returncode}) before it answered")
            if self.api_ok():
                return
            time.sleep(0.3)
        raise self._failure(f"Omniboard did not answer on {self.url.rstrip('/')}{API_PATH} within {timeout:.0f} s")

    def wait(self) -> None:
        """Block while Omniboard runs; a UserError if it stops on its own."""
        self.proc.wait()
        raise self._failure(f"Omniboard stopped (status {self.proc.returncode})")

    def _failure(self, what: str) -> UserError:
        return UserError(
            f"{what}, serving {self.target.where} on {self.host} port {self.port}. Its output ends with:\n"
            f"{self.output_tail() or '(nothing)'}\nCheck that the database is reachable with that URL "
            "(--mongo / SSLX_MONGO_URL) and that the port is free (--port)."
        )

    def stop(self) -> None:
        """Terminate Omniboard's process group; kill it if it lingers."""
        if self.proc.poll() is None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=STOP_TIMEOUT_S)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.log.unlink(missing_ok=True)

    def __enter__(self) -> BoardProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_board(
    target: MongoTarget,
    port: int = DEFAULT_PORT,
    folder: Path | None = None,
    host: str = LOOPBACK,
    say: Callable[[str], None] = print,
    timeout: float = START_TIMEOUT_S,
) -> BoardProcess:
    """Start Omniboard on ``host``:``port`` over ``target``'s database
    (installing it into ``folder`` first if needed) and return once its API
    answers."""
    script = ensure_omniboard(folder or default_folder(), say)
    node = shutil.which("node")
    if node is None:
        raise UserError(
            "sslx board runs Omniboard with Node.js, and `node` is not on PATH: install Node.js "
            "(e.g. `apt-get install nodejs`)."
        )
    _check_port_free(host, port)
    fd, log_name = tempfile.mkstemp(prefix="sslx-omniboard-", suffix=".log")
    with os.fdopen(fd, "wb") as log:
        # Omniboard takes its port only from PORT, and the URL from MONGO_URI when no --mu is given.
        env = {k: v for k, v in os.environ.items() if k != "OMNIBOARD_CONFIG"}
        env.update(PORT=str(port), MONGO_URI=url_with_db(target), SSLX_BOARD_HOST=host, SSLX_BOARD_PORT=str(port))
        proc = subprocess.Popen(
            [node, "--require", str(PRELOAD), str(script)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent(os.getpid()),
        )
    board = BoardProcess(target, host, port, proc, Path(log_name))
    try:
        board.wait_ready(timeout)
    except BaseException:
        board.stop()
        raise
    return board
