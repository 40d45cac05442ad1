"""``sslx board``: Omniboard (the real npm package) over a real MongoDB-wire
server (SecantusDB).

The process tests start ``sslx board`` as a real subprocess and need Node.js
and npm (Omniboard is installed into the cache folder on first use, once per
machine); they are skipped where node or npm is missing. The browser test also
needs Chromium: it is marked ``browser`` and run by ``make test-browser``.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from helpers import REPO, SSLX, read_run
from secantus import SecantusDBServer
from sslx_mongo.board import OMNIBOARD_VERSION, default_folder, ensure_omniboard, installed_version, start_board
from sslx_mongo.target import MongoTarget

from sslx.errors import UserError
from sslx.records import record_run

# The process tests need Omniboard installed (npm, about 2 minutes and 530 MB, once per machine). `make test`
# runs them where it is; `make test-browser` installs it and runs every test of this file.
needs_node = pytest.mark.skipif(
    shutil.which("node") is None
    or shutil.which("npm") is None
    or (
        installed_version(default_folder()) != OMNIBOARD_VERSION
        and os.environ.get("SSLX_TEST_INSTALL_OMNIBOARD") != "1"
    ),
    reason="Omniboard is not installed here (it needs Node.js and npm): `make test-browser` installs it and runs these",
)


@pytest.fixture(scope="module")
def db_uri(tmp_path_factory: pytest.TempPathFactory):
    """One SecantusDB server for the process tests (they only read it)."""
    with SecantusDBServer(storage_path=str(tmp_path_factory.mktemp("db"))) as server:
        yield server.uri


@pytest.fixture(scope="module")
def omniboard() -> Path:
    """Omniboard installed in the default folder (npm, on first use only)."""
    return ensure_omniboard(default_folder())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> set[str]:
    """The addresses something listens on at TCP ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                words = b"".join(
                    raw[i : i + 4][::-1] for i in range(0, len(raw), 4)
                )  # each 32-bit word is little-endian
                found.add(socket.inet_ntop(socket.AF_INET if width == 8 else socket.AF_INET6, words))
    return found


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) != "Z"
    except OSError:
        return False


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def api_ok(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/sacred/api/v1/Runs", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


class Board:
    """``sslx board`` in its own process, once it has said where the board
    is (Omniboard answers then); ``node`` is Omniboard's process."""

    def __init__(self, uri: str, *args: str):
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("SSLX_MONGO")}
        self.proc = subprocess.Popen(
            [SSLX, "board", "--mongo", uri, "--port", str(self.port), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**env, "PYTHONUNBUFFERED": "1"},
        )
        self.output = ""
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            deadline = time.monotonic() + 90
            while "Omniboard for" not in self.output:
                assert time.monotonic() < deadline and sel.select(timeout=1) is not None, self.output
                line = self.proc.stdout.readline()
                assert line, f"sslx board exited: {self.output}"
                self.output += line
        [self.node] = children(self.proc.pid)

    def end(self, sig: int) -> str:
        """Send ``sig`` to ``sslx board``; all it printed, once it has exited."""
        self.proc.send_signal(sig)
        out, _ = self.proc.communicate(timeout=30)
        return self.output + out


@needs_node
def test_board_listens_on_the_loopback_address_only(omniboard, db_uri):
    board = Board(db_uri)
    try:
        assert listening(board.port) == {"127.0.0.1"}
    finally:
        out = board.end(signal.SIGINT)
    assert f"at http://127.0.0.1:{board.port}/  (Ctrl-C stops it)" in out and "Stopping Omniboard." in out
    wait_until(lambda: not alive(board.node), 10, "Omniboard to end with Ctrl-C")


@needs_node
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_or_sighup_to_sslx_board_ends_omniboard(sig, omniboard, db_uri):
    board = Board(db_uri)
    out = board.end(sig)
    assert "Stopping Omniboard." in out
    wait_until(lambda: not alive(board.node), 10, "Omniboard to end with sslx board")
    assert not api_ok(board.port)


@needs_node
def test_a_wider_address_is_explicit_and_omniboard_dies_with_its_parent(omniboard, db_uri):
    """--host 0.0.0.0 listens on every IPv4 address (and says it has no
    authentication); killing `sslx board` outright (SIGKILL: no handler runs)
    still ends Omniboard, through the parent-death signal."""
    board = Board(db_uri, "--host", "0.0.0.0")
    assert listening(board.port) == {"0.0.0.0"}
    board.end(signal.SIGKILL)
    wait_until(lambda: not alive(board.node), 10, "Omniboard to die with its parent")


def test_help_of_host_warns_about_opening_the_board():
    from click.testing import CliRunner

    from sslx.cli import cli

    text = " ".join(CliRunner().invoke(cli, ["board", "--help"]).output.split())
    assert "no authentication and a Delete button" in text and "SSH tunnel" in text and "reverse proxy" in text


@pytest.mark.browser
def test_board_serves_recorded_runs_and_their_metrics(tiny, host, server, tmp_path, omniboard):
    """Two runs recorded live to the database are served by Omniboard with
    their names, status and ``train.loss`` series; Chromium renders the board
    page with both runs listed, and its screenshot is kept as
    docs/omniboard.png."""
    from PIL import Image

    records = [
        record_run(tiny("simclr"), host, runs_dir=tmp_path / "runs", name=name, options={"mongo_url": server.uri})
        for name in ("board-a", "board-b")
    ]
    ids = {r.reports[0].note["run_id"]: r for r in records}
    assert all(r.reports[0].complete for r in records) and len(ids) == 2

    with start_board(MongoTarget(server.uri), free_port(), default_folder()) as board:
        runs = get_json(board.url, "/sacred/api/v1/Runs")
        served = {run["_id"]: run for run in runs}
        assert set(served) == set(ids)
        for run_id, record in ids.items():
            assert served[run_id]["experiment"]["name"] == read_run(record.run_dir)["run"]["experiment"]["name"]
            assert served[run_id]["status"] == "COMPLETED"
            metrics = get_json(board.url, "/sacred/api/v1/Metrics", query=json.dumps({"run_id": run_id}))
            by_name = {m["name"]: m for m in metrics}
            local = read_run(record.run_dir)["metrics"]["train.loss"]
            assert {m["run_id"] for m in metrics} == {run_id}
            assert by_name["train.loss"]["steps"] == local["steps"] == [2, 4, 6]
            assert by_name["train.loss"]["values"] == pytest.approx(local["values"])
        page = chromium(board.url, "--dump-dom")  # the board as the browser rendered it
        assert "board-a" in page and "board-b" in page and "COMPLETED" in page
        shot = tmp_path / "omniboard.png"
        chromium(board.url, f"--screenshot={shot}")
        proc = board.proc
    assert proc.poll() is not None  # leaving the block stopped Omniboard
    with Image.open(shot) as image:
        assert image.format == "PNG" and image.size == (1400, 900)
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is None or len(colours) > 50  # a rendered page, not a blank or error screen
    shutil.copyfile(shot, REPO / "docs" / "omniboard.png")


def get_json(url: str, path: str, **query: str):
    full = url.rstrip("/") + path + ("?" + urllib.parse.urlencode(query) if query else "")
    with urllib.request.urlopen(full, timeout=30) as resp:
        assert resp.status == 200, full
        return json.loads(resp.read())


def chromium(url: str, *args: str) -> str:
    """Headless Chromium on ``url``; returns its stdout. The virtual-time
    budget lets the page fetch and render the runs first."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "Chromium is not installed: run `make test-browser`, which installs Debian's chromium"
    proc = subprocess.run(
        [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1400,900",
            "--virtual-time-budget=15000",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return proc.stdout


def test_board_without_npm_says_what_to_install(tmp_path, monkeypatch):
    """No Omniboard in --dir and no npm on PATH: a UserError that names
    Node.js and npm and the folder, and nothing is started."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(UserError) as err:
        start_board(MongoTarget("mongodb://127.0.0.1:1/"), free_port(), tmp_path / "omniboard")
    text = str(err.value)
    assert "Node.js" in text and "npm" in text and "apt-get install" in text and str(tmp_path / "omniboard") in text
    assert not (tmp_path / "omniboard").exists()
