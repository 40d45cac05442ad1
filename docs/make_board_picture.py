"""Makes docs/omniboard.png: Omniboard comparing the runs of a sweep.

Records a small real sweep (`sslx sweep experiments/moco.json --grid
trainer.lr=0.03,0.1 --seeds 2 -- --mongo URI`: four short runs on the CPU) to
a SecantusDB server (MongoDB's wire protocol) in a temporary folder, starts
`sslx board`'s Omniboard over it, and in headless Chromium does what a user
does: filters the runs table by the sweep's tag (`sweep:<id>`), selects its
runs, opens "Compare" and plots their `train.loss` curves labelled by learning
rate and seed. The picture is that view. It reuses the browser test's driver
(plugins/mongo/tests/test_board.py), so it needs what `make test-browser`
needs: Node.js and npm (Omniboard is installed on first use) and Chromium
(`make chromium`). Nothing but the picture is written into the working tree.

    .venv/bin/python docs/make_board_picture.py              # about 2 minutes on 2 CPU cores
    .venv/bin/python docs/make_board_picture.py --out /tmp/board.png --steps 40
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "plugins" / "mongo" / "tests"), str(REPO / "tests")]

from sslx_mongo.board import default_folder, start_board  # noqa: E402
from sslx_mongo.server import ServerProcess  # noqa: E402
from sslx_mongo.target import MongoTarget  # noqa: E402
from test_board import (  # noqa: E402
    SWEEP_SETTINGS,
    Page,
    add_metric_column,
    compare_all,
    filter_by_tag,
    free_port,
    record_sweep,
)

WIDTH, HEIGHT = 1400, 900


def sweep_settings(steps: int) -> list[str]:
    """The test's tiny MoCo settings, trained ``steps`` steps with a loss
    point every ``steps // 20`` so that each run draws a curve."""
    longer = {
        "trainer.max_steps": steps,
        "trainer.log_every": max(1, steps // 20),
        "trainer.warmup_steps": max(1, steps // 10),
        "trainer.checkpoint_every": steps,
    }
    kept = [s for s in SWEEP_SETTINGS if s.split("=", 1)[0] not in longer]
    return kept + [f"{key}={value}" for key, value in longer.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "omniboard.png", help="the PNG to write")
    parser.add_argument("--steps", type=int, default=80, help="training steps of each run of the sweep")
    args = parser.parse_args()
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sslx-board-picture-") as tmp:
        folder = Path(tmp)
        server = ServerProcess(folder / "db")
        server.start()
        try:
            sweep_id = record_sweep(server.uri, folder, sweep_settings(args.steps))
            print(f"sweep {sweep_id}: 4 runs recorded ({time.monotonic() - start:.0f} s)", flush=True)
            with start_board(MongoTarget(server.uri), free_port(), default_folder()) as board:
                add_metric_column(board.url, "eval_knn_top1", "eval.knn_top1")
                with Page(folder / "chromium", width=WIDTH, height=HEIGHT) as page:
                    page.open(board.url)
                    filter_by_tag(page, f"sweep:{sweep_id}")
                    page.wait("document.body.innerText.includes('4 experiments')", "the sweep's 4 runs")
                    curves = compare_all(page, "train.loss", ("config.trainer.lr", "config.seed"))
                    time.sleep(1.0)  # let Plotly finish drawing
                    picture = page.screenshot()
        finally:
            server.kill()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(picture)
    names = ", ".join(sorted(c["name"] for c in curves))
    print(f"{args.out}: {len(curves)} curves ({names}), {WIDTH}x{HEIGHT}, {time.monotonic() - start:.0f} s")


if __name__ == "__main__":
    main()
