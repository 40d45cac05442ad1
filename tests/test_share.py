"""The machine's cores shared among the sslx trainings running on it."""

import os
import subprocess
import sys

import pytest
import torch

from sslx.engine import share
from sslx.records import process_start


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SSLX_SHARE_DIR", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(share, "_cores", lambda: 8)
    return tmp_path


@pytest.fixture
def other_training(folder):
    """A real second process, noted in the folder as a training."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    (folder / f"{proc.pid}.pid").write_text(f"{proc.pid} {process_start(proc.pid)}")
    yield proc
    proc.kill()
    proc.wait()


def test_alone_a_run_takes_every_allowed_thread_and_gives_them_back_when_another_starts(folder, other_training):
    other_training.kill()
    other_training.wait()
    with share.CoreShare("auto") as mine:
        assert (folder / f"{os.getpid()}.pid").exists()
        assert share.trainings() == 1  # the dead process's note is forgotten ...
        assert not (folder / f"{other_training.pid}.pid").exists()  # ... and removed
        assert mine.threads() == 4  # OMP_NUM_THREADS caps the 8 cores
    assert not (folder / f"{os.getpid()}.pid").exists()


def test_two_live_trainings_halve_threads_and_workers(folder, other_training):
    with share.CoreShare("auto") as mine:
        assert share.trainings() == 2
        assert mine.threads() == 2
        assert share.auto_workers("auto") == 3  # 8 cores / 2 trainings, one left to the trainer
        before = torch.get_num_threads()
        try:
            mine.apply()
            assert torch.get_num_threads() == 2
        finally:
            torch.set_num_threads(before)


def test_a_recycled_pid_is_not_a_training(folder):
    (folder / f"{os.getpid()}.pid").write_text(f"{os.getpid()} 1")  # this pid, but another process's start time
    assert share.trainings() == 1  # the floor: the asking process
    assert not list(folder.glob("*.pid"))


def test_launched_processes_share_what_the_launcher_gave_them(folder, other_training, monkeypatch):
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the launcher's per-process value: 6 threads for the launch
    with share.CoreShare("auto") as mine:
        assert mine.threads() == 3


def test_fixed_and_default_settings_are_kept(folder, other_training):
    assert share.CoreShare(3).threads() == 3
    assert share.CoreShare(None).threads() is None
    assert share.auto_workers(2) == 2


def test_a_training_recounts_at_most_every_half_second(folder, other_training, monkeypatch):
    mine = share.CoreShare("auto")
    before = torch.get_num_threads()
    try:
        with mine:
            mine.apply()
            assert torch.get_num_threads() == 2
            other_training.kill()
            other_training.wait()
            mine.recheck()  # too soon: the dead training is not seen gone yet
            assert torch.get_num_threads() == 2
            monkeypatch.setattr(mine, "checked", mine.checked - share.RECHECK_S)
            mine.recheck()
            assert torch.get_num_threads() == 4  # alone again: every thread OMP_NUM_THREADS allows
    finally:
        torch.set_num_threads(before)
