"""``sslx board``: Omniboard (the real npm package) over a real MongoDB-wire
server (SecantusDB).

The process tests start ``sslx board`` as a real subprocess and need Node.js
and npm (Omniboard is installed into the cache folder on first use, once per
machine); they are skipped where node or npm is missing. The browser tests
also need Chromium (one drives it through the DevTools protocol, as a user
would click: filter, select, compare): they are marked ``browser`` and run by
``make test-browser``. docs/make_board_picture.py reuses that driver to make
the picture in the docs; no test writes into the working tree.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
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
from helpers import EXPERIMENTS, SSLX, read_run, tiny_overrides
from secantus import SecantusDBServer
from sslx_mongo.board import OMNIBOARD_VERSION, default_folder, ensure_omniboard, installed_version, start_board
from sslx_mongo.server import ServerProcess
from sslx_mongo.target import MongoTarget

from sslx.errors import UserError
from sslx.records import list_runs, record_run

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
        out, _ = self.proc.communicate(timeout=60)
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
    page with both runs listed (its screenshot stays in ``tmp_path``: the
    picture in the docs is made by docs/make_board_picture.py)."""
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


# A sweep of tiny MoCo runs: seconds each on a CPU (tests/helpers.py), four points with the grid and seeds below.
SWEEP_SETTINGS = tiny_overrides("moco")
SWEEP_GRID = ("trainer.lr=0.03,0.1",)
SWEEP_SEEDS = "2"


def sslx_env() -> dict[str, str]:
    """This environment without the user's SSLX_MONGO_* settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SSLX_MONGO")}


def record_sweep(uri: str, folder: Path, settings: list[str] = SWEEP_SETTINGS) -> str:
    """``sslx sweep experiments/moco.json`` over ``SWEEP_GRID`` times
    ``SWEEP_SEEDS`` with ``settings``, every run recorded to ``uri`` too
    (``-- --mongo URI``), its runs and plan in ``folder``; the sweep's id."""
    sets = [a for s in settings for a in ("--set", s)]
    grid = [a for g in SWEEP_GRID for a in ("--grid", g)]
    proc = subprocess.run(
        [SSLX, "sweep", str(EXPERIMENTS / "moco.json"), *sets, *grid, "--seeds", SWEEP_SEEDS]
        + ["--runs-dir", str(folder / "runs"), "--sweeps-dir", str(folder / "sweeps"), "--", "--mongo", uri],
        capture_output=True,
        text=True,
        env=sslx_env(),
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (plan,) = (folder / "sweeps").iterdir()
    return plan.name


def tag_query(tag: str) -> dict:
    """The runs query Omniboard's page builds for the filter "Tags in TAG"
    (config.tags are Sacred's own tags, omniboard.tags those set in Omniboard
    or by sslx)."""
    return {"$and": [{"$or": [{"config.tags": {"$in": [tag]}}, {"omniboard.tags": {"$in": [tag]}}]}]}


def add_metric_column(url: str, name: str, metric: str, extrema: str = "last") -> None:
    """A metric column in Omniboard (as its "+/- Metric Columns" dialog adds
    one): ``name`` shows ``extrema`` of each run's ``metric`` series."""
    body = json.dumps({"name": name, "metric_name": metric, "extrema": extrema}).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/sacred/api/v1/Omniboard.Metric.Columns",
        data=body,
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status in (200, 201), resp.status


class Page:
    """Headless Chromium showing one page, driven through the DevTools
    protocol over a pipe (``--remote-debugging-pipe``: JSON messages ending
    in NUL, read by Chromium from fd 3 and written to fd 4), so that a test
    can type into Omniboard's filter, click and read what the page shows."""

    def __init__(self, profile: Path, width: int = 1400, height: int = 900, timeout: float = 60.0):
        binary = shutil.which("chromium") or shutil.which("chromium-browser")
        assert binary, "Chromium is not installed: run `make chromium` (Debian's chromium)"
        self.timeout = timeout
        self.requests: list[str] = []  # every URL the page requested
        profile.mkdir(parents=True, exist_ok=True)
        self.log = profile / "chromium.log"
        chrome_in, self._out = os.pipe()
        self._in, chrome_out = os.pipe()

        def plumb() -> None:  # in the child: its ends of the pipes as fds 3 and 4 (via fds >= 10: no clash)
            a, b = fcntl.fcntl(chrome_in, fcntl.F_DUPFD, 10), fcntl.fcntl(chrome_out, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)

        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]
                + [f"--window-size={width},{height}", f"--user-data-dir={profile}", "--remote-debugging-pipe"]
                + ["about:blank"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                close_fds=False,  # fds 3 and 4 stay open; every other fd of ours is close-on-exec
                preexec_fn=plumb,
            )
        os.close(chrome_in)
        os.close(chrome_out)
        self._buffer = b""
        self._id = 0
        self.session = None
        try:
            target = next(t for t in self.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
            self.session = self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)["sessionId"]
            self.call("Page.enable")
            self.call("Network.enable")
            self.call(
                "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
            )
        except BaseException:
            self.close()
            raise

    def _failure(self, what: str) -> AssertionError:
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        return AssertionError(f"Chromium: {what}; its output ends with:\n{tail}")

    def _message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise self._failure("no answer in time")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise self._failure("it closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, **params):
        """One DevTools command (to the page once attached); its result."""
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._message(deadline)
            if reply.get("method") == "Network.requestWillBeSent":
                self.requests.append(reply["params"]["request"]["url"])
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise self._failure(f"{method} failed: {reply['error']}")
                return reply["result"]

    def js(self, expression: str):
        """The value of a JavaScript expression in the page (promises awaited)."""
        reply = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in reply:
            raise self._failure(f"{expression} threw {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def wait(self, expression: str, what: str, timeout: float = 60.0):
        """The first truthy value of ``expression``, polled."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.js(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what} ({expression})")
            time.sleep(0.2)

    def open(self, url: str) -> None:
        self.call("Page.navigate", url=url)
        self.wait("document.readyState === 'complete' && !!document.body", f"{url} to load")

    def text(self, selector: str = "body") -> str:
        return self.js(f"(document.querySelector({json.dumps(selector)}) || {{}}).innerText || ''").strip()

    def pick(self, inputs: str, index: int, text: str) -> None:
        """Type ``text`` into the ``index``-th of the react-select inputs
        ``inputs`` and click the menu's option that reads exactly ``text``."""
        self.js(f"document.querySelectorAll({json.dumps(inputs)})[{index}].focus()")
        self.call("Input.insertText", text=text)
        click = (
            f"(() => {{ const o = [...document.querySelectorAll('[id*=-option-]')].find(e => e.textContent === "
            f"{json.dumps(text)}); if (o) o.click(); return !!o; }})()"
        )
        self.wait(click, f"the option {text!r}")

    def screenshot(self) -> bytes:
        """The page as a PNG."""
        return base64.b64decode(self.call("Page.captureScreenshot", format="png")["data"])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("Browser.close")
                self.proc.wait(timeout=15)
            except (AssertionError, OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        for fd in (self._in, self._out):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def filter_by_tag(page: Page, tag: str) -> None:
    """In Omniboard's runs table, add the filter "Tags in TAG" as a user does:
    column Tags, operator "in", value TAG, Add Filter."""
    page.wait("document.body.innerText.includes('experiments')", "the runs table")
    inputs = ".filters-select-container input"
    for index, text in enumerate(("Tags", "in", tag)):
        page.pick(inputs, index, text)
    page.js("document.getElementById('add_filter').click()")
    page.wait(f"document.querySelector('.tags-container').innerText.includes({json.dumps(tag)})", "the filter")


def table(page: Page) -> list[dict[str, str]]:
    """The rows Omniboard's runs table shows, as {column header: cell text}."""
    rows = page.js(
        "[...document.querySelectorAll('.public_fixedDataTableRow_main')].map(r => "
        "[...r.querySelectorAll('.public_fixedDataTableCell_main')].map(c => c.innerText.trim()))"
    )
    header, *body = rows
    return [dict(zip(header, row, strict=True)) for row in body]


def compare_all(page: Page, metric: str, labels: tuple[str, ...]) -> list[dict]:
    """Select every run of the table, open Omniboard's "Compare" view, plot
    only ``metric``, label each curve with ``labels`` (run paths such as
    ``config.trainer.lr``); the plotted curves as Plotly traces."""
    page.js("document.querySelector('[test-attr=header-row_selection] input').click()")
    page.wait("!document.getElementById('compare_runs').disabled", "the Compare button")
    page.js("document.getElementById('compare_runs').click()")
    options = "#metric_names option"
    page.wait(f"document.querySelectorAll('{options}').length > 0", "the metrics of the compared runs")
    shown = page.js(f"[...document.querySelectorAll('{options}')].filter(o => o.selected).map(o => o.value)")
    assert metric in shown, shown
    for name in shown:
        if name != metric:  # every metric is plotted at first: keep ``metric`` only
            page.js(f"document.querySelector('#plot-metric-names input[value={json.dumps(name)}]').click()")
    for index, label in enumerate(labels):
        if index:
            page.js("document.querySelector('[test-attr=add-label-btn]').click()")
        page.pick(".metric-label-options-wrapper input", index, label)
    page.js("document.activeElement.blur()")
    traces = (
        "((document.querySelector('.compare-runs-modal .js-plotly-plot') || {}).data || [])"
        ".filter(t => t.showlegend !== false).map(t => ({name: t.name, x: t.x, y: t.y}))"
    )
    suffix = "-".join(["[^-]+"] * len(labels))
    return page.wait(
        f"(() => {{ const t = ({traces}); return t.length && t.every(c => /^{suffix}-/.test(c.name) && "
        f"c.name.endsWith({json.dumps('-' + metric)})) ? t : null; }})()",
        f"the curves of {metric}",
    )


@pytest.mark.browser
def test_board_shows_a_sweep_as_a_comparison(tmp_path, omniboard):
    """A real sweep (4 points) and one plain run recorded to a SecantusDB
    server: Omniboard's API, queried as its page queries it for the filter
    "Tags in sweep:ID", answers the sweep's 4 runs with their tags, their
    final ``eval.*`` results and an ``eval.knn_top1`` metric column; in
    Chromium the page, filtered through its own filter widgets, lists those
    runs with the tag and the column's values, and its Compare view plots
    their ``train.loss`` curves labelled by learning rate and seed."""
    server = ServerProcess(tmp_path / "db")
    server.start()
    try:
        sweep_id = record_sweep(server.uri, tmp_path)
        alone = subprocess.run(
            [SSLX, "run", str(EXPERIMENTS / "moco.json"), *[a for s in SWEEP_SETTINGS for a in ("--set", s)]]
            + ["--name", "moco.alone", "--runs-dir", str(tmp_path / "runs"), "--mongo", server.uri],
            capture_output=True,
            text=True,
            env=sslx_env(),
            timeout=600,
        )
        assert alone.returncode == 0, alone.stdout + alone.stderr
        local = {}  # point -> the run's own records in the file store
        for run in list_runs(tmp_path / "runs"):
            local[run.info.get("tags", {}).get("point", "alone")] = read_run(run.path)
        assert sorted(local) == ["0", "1", "2", "3", "alone"]
        tag = f"sweep:{sweep_id}"

        with start_board(MongoTarget(server.uri), free_port(), default_folder()) as board:
            add_metric_column(board.url, "eval_knn_top1", "eval.knn_top1")
            everything = get_json(board.url, "/sacred/api/v1/Runs", select="_id,experiment.name")
            names = [f"moco.{sweep_id}.{k}" for k in range(4)]
            assert sorted(r["experiment"]["name"] for r in everything) == [*names, "moco.alone"]

            # (a) The API, queried as the page queries it once filtered by the sweep's tag.
            query = json.dumps(tag_query(tag))
            served = get_json(
                board.url,
                "/sacred/api/v1/Runs",
                query=query,
                select="_id,experiment.name,omniboard.tags,result,eval_knn_top1",
                sort_by="_id",
                order_by="1",
            )
            assert get_json(board.url, "/sacred/api/v1/Runs/count", query=query) == {"count": 4}
            by_point = {}
            for run in served:
                point = dict(t.split(":", 1) for t in run["omniboard"]["tags"])["point"]
                assert run["omniboard"]["tags"] == [f"point:{point}", tag]
                assert run["experiment"]["name"] == f"moco.{sweep_id}.{point}"
                record = local[point]["run"]["result"]
                finals = {k: v for k, v in record.items() if k.startswith("eval.")}
                assert finals and {k: run["result"][k] for k in finals} == pytest.approx(finals)
                assert run["eval_knn_top1"] == pytest.approx(record["eval.knn_top1"])  # the metric column
                by_point[point] = run
            assert sorted(by_point) == ["0", "1", "2", "3"]  # the sweep's runs, each once; not the plain one

            # (b) The page: filtered through its own widgets, it asks the API exactly that and shows the runs.
            with Page(tmp_path / "chromium", width=2600, height=900) as page:
                page.open(board.url)
                filter_by_tag(page, tag)
                page.wait("document.body.innerText.includes('4 experiments')", "the filtered count")
                assert page.text(".tags-container") == f"Tags in {tag}"
                asked = [
                    urllib.parse.parse_qs(urllib.parse.urlsplit(u).query)
                    for u in page.requests
                    if "/sacred/api/v1/Runs?" in u and "select=" in u
                ]
                assert asked and json.loads(asked[-1]["query"][0]) == tag_query(tag)
                assert "eval_knn_top1" in asked[-1]["select"][0].split(",")
                page.wait(
                    f"document.querySelectorAll('.public_fixedDataTableRow_main').length === 5 && "
                    f"document.body.innerText.includes({json.dumps(f'moco.{sweep_id}.0')})",
                    "the filtered rows",
                )
                rows = table(page)
                assert sorted(row["Experiment Name"] for row in rows) == names
                for row in rows:
                    run = next(r for r in served if str(r["_id"]) == row["Id"])
                    point = run["experiment"]["name"].rsplit(".", 1)[1]
                    assert row["Tags"].split() == [f"point:{point}", tag]
                    assert row["Status"] == "COMPLETED"
                    assert float(row["Eval Knn Top1"]) == pytest.approx(run["eval_knn_top1"])
                    assert json.loads(row["Result"])["eval.knn_top1"] == pytest.approx(run["eval_knn_top1"])

                # The Compare view of the 4 runs: one train.loss curve each, as recorded.
                curves = compare_all(page, "train.loss", ("config.trainer.lr", "config.seed"))
                assert "Compare 4 Runs" in page.text(".compare-runs-modal")
            proc = board.proc
        assert proc.poll() is not None
    finally:
        server.kill()
    expected = {}
    for point in ("0", "1", "2", "3"):
        config, series = local[point]["config"], local[point]["metrics"]["train.loss"]
        expected[f"{config['trainer']['lr']}-{config['seed']}-train.loss"] = series
    names = ["0.03-0-train.loss", "0.03-1-train.loss", "0.1-0-train.loss", "0.1-1-train.loss"]  # LR-SEED-metric
    assert sorted(c["name"] for c in curves) == sorted(expected) == names
    for curve in curves:
        assert curve["x"] == expected[curve["name"]]["steps"] == [2, 4, 6]
        assert curve["y"] == pytest.approx(expected[curve["name"]]["values"])  # smoothing 0: the values as logged


def test_board_without_npm_says_what_to_install(tmp_path, monkeypatch):
    """No Omniboard in --dir and no npm on PATH: a UserError that names
    Node.js and npm and the folder, and nothing is started."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(UserError) as err:
        start_board(MongoTarget("mongodb://127.0.0.1:1/"), free_port(), tmp_path / "omniboard")
    text = str(err.value)
    assert "Node.js" in text and "npm" in text and "apt-get install" in text and str(tmp_path / "omniboard") in text
    assert not (tmp_path / "omniboard").exists()
