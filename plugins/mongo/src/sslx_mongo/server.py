"""A MongoDB-wire server in its own process, for tests and benchmarks.

SecantusDB (PyPI ``secantusdb``, a test dependency) started as
``python -m secantus`` on a port chosen once, so that a restart after
:meth:`ServerProcess.kill` (SIGKILL: nothing flushed) keeps its URL and its
storage, as a database server that crashed and came back would.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


class ServerProcess:
    """SecantusDB on ``uri``, its data in ``storage``, its output in ``storage``'s
    sibling ``secantus.log``."""

    def __init__(self, storage: Path):
        self.storage = Path(storage)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.uri = f"mongodb://127.0.0.1:{self.port}/"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.storage.parent / "secantus.log"

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and return once it answers a ping."""
        import pymongo

        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(self.port)]
                + ["--storage-path", str(self.storage), "--log-level", "WARNING"],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client: pymongo.MongoClient = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=500)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    client.admin.command("ping")
                    return
                except pymongo.errors.PyMongoError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"SecantusDB did not start: {self.log.read_text()[-2000:]}") from None
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to flush anything."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
