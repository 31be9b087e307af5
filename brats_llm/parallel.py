"""Process pools for per-case work (one process per core, no fork of a threaded parent)."""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext


def process_context() -> BaseContext:
    """``forkserver`` where available (safe with threads in the parent, cheap per worker), else ``spawn``."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
