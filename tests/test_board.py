"""``sslx board``: Omniboard (the real npm package) serving runs that sslx
recorded to a real MongoDB-wire server (SecantusDB), checked through its HTTP
API and a headless-Chromium screenshot of the board page.

Marked ``browser`` and skipped by ``make test``: it needs Node.js/npm (it
installs omniboard on first use) and Chromium. Run it with ``make test-browser``.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.parse
import urllib.request

import pytest
from helpers import REPO, read_run
from PIL import Image
from secantus import SecantusDBServer

from sslx.board import default_folder, start_board
from sslx.mongo import MongoTarget
from sslx.records import record_run

pytestmark = pytest.mark.browser


@pytest.fixture
def server(tmp_path):
    with SecantusDBServer(storage_path=str(tmp_path / "db")) as s:
        yield s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    proc = subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--window-size=1400,900", "--virtual-time-budget=15000", *args, url],
                          capture_output=True, text=True, timeout=120, check=True)
    return proc.stdout


def test_board_serves_recorded_runs_and_their_metrics(tiny, host, server, tmp_path):
    """Two runs recorded live to the database are served by Omniboard with
    their names, status and ``train.loss`` series; Chromium renders the board
    page with both runs listed, and its screenshot is kept as
    docs/omniboard.png."""
    target = MongoTarget(server.uri)
    records = [record_run(tiny("simclr"), host, runs_dir=tmp_path / "runs", name=name, mongo=target)
               for name in ("board-a", "board-b")]
    ids = {r.mongo["run_id"]: r for r in records}
    assert all(r.mongo["status"] == "ok" for r in records) and len(ids) == 2

    with start_board(target, free_port(), default_folder()) as board:
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
        assert "eval.knn_top1" in {m["name"] for m in get_json(board.url, "/sacred/api/v1/Metrics")}

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


def test_board_without_npm_says_what_to_install(tmp_path, monkeypatch):
    """No Omniboard in --dir and no npm on PATH: a UserError that names
    Node.js and npm and the folder, and nothing is started."""
    from sslx.errors import UserError

    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(UserError) as err:
        start_board(MongoTarget("mongodb://127.0.0.1:1/"), free_port(), tmp_path / "omniboard")
    text = str(err.value)
    assert "Node.js" in text and "npm" in text and "apt-get install" in text and str(tmp_path / "omniboard") in text
    assert not (tmp_path / "omniboard").exists()
