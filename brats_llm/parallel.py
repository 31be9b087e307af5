"""Process pools for per-case work (one process per core, no fork of a threaded parent)."""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext


def process_context(preload: tuple[str, ...] = ()) -> BaseContext:
    """``forkserver`` where available (safe with threads in the parent), else ``spawn``.

    Args:
        preload: modules the fork server imports once, so each worker starts already warm.
    """
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    if preload:
        context.set_forkserver_preload(list(preload))
    return context
