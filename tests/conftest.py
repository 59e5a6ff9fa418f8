"""Shared fixtures: the tiny demo world, generated once per test session."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

TINY_SEED = 0


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(
            src, dst
        )  # stages replace files by rename, so a shared inode is never written through
    except OSError:
        shutil.copy2(src, dst)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    """A tiny demo world (seed 0, free port picked at generation); read it, do not modify it."""
    from pipeline.demo_world.generate import generate_world

    world = tmp_path_factory.mktemp("tiny_world")
    generate_world(str(world), seed=TINY_SEED, size="tiny", port=0)
    return world


@pytest.fixture
def tiny_out(tmp_path, tiny_world) -> Path:
    """A fresh output directory whose ``world/`` holds the tiny demo world."""
    out = tmp_path / "out"
    shutil.copytree(tiny_world, out / "world", copy_function=_link_or_copy)
    return out


def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def one_torch_thread():
    """Trainer tests use small tensors: extra OpenMP threads only wait on a busy machine."""
    yield from _one_torch_thread()


@pytest.fixture(scope="module")
def one_torch_thread_module():
    """:func:`one_torch_thread` for a module's shared fixtures (a checkpoint trained once)."""
    yield from _one_torch_thread()


@pytest.fixture(scope="module")
def worker():
    """A child process that runs hostile cases under an address-space limit (property tests)."""
    from tests.hostile_worker import HostileWorker

    w = HostileWorker()
    yield w
    w.close()
