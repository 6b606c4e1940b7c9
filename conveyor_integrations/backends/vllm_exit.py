"""Starting and ending an in-process vLLM engine from a plain script.

vLLM's ``AsyncLLM`` runs its engine core in a child process, started with multiprocessing's
*spawn* method on CPU (vLLM's CPU platform insists on it). A spawned child normally re-runs the
parent's ``__main__`` script first, so a script without an ``if __name__ == "__main__":`` guard
starts a second engine in the child, and vLLM fails with "Engine core initialization failed".
:func:`spawn_without_main` spawns the children that the current thread starts without that
re-run: the engine core needs only vLLM's own modules (a consequence: an object defined in
your ``__main__`` cannot be handed to the engine core, e.g. in ``engine_args``).

:func:`close_at_exit` closes an object (the engine) when the interpreter exits, before
multiprocessing's own exit hook and the interpreter's teardown, so that an engine not closed
by its user shuts its child down in order rather than dying with tracebacks. Example::

    >>> import multiprocessing.spawn as spawn
    >>> with spawn_without_main():
    ...     "init_main_from_path" in spawn.get_preparation_data("x")
    False
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing.spawn
import threading
from collections.abc import Callable, Iterator
from typing import Any, Protocol

__all__ = ["close_at_exit", "spawn_without_main"]

_local = threading.local()
_patch_lock = threading.Lock()
_original: Callable[[str], dict[str, Any]] | None = None


def _preparation_data(name: str) -> dict[str, Any]:
    assert _original is not None
    data = _original(name)
    if getattr(_local, "depth", 0):
        data.pop("init_main_from_path", None)
        data.pop("init_main_from_name", None)
    return data


def _install() -> None:
    global _original
    with _patch_lock:
        if _original is None:
            _original = multiprocessing.spawn.get_preparation_data
            multiprocessing.spawn.get_preparation_data = _preparation_data


@contextlib.contextmanager
def spawn_without_main() -> Iterator[None]:
    """Within the block, processes spawned by this thread do not re-run ``__main__``.

    Other threads' spawns are untouched. The stdlib hook stays installed (as a pass-through)
    once used."""
    _install()
    _local.depth = getattr(_local, "depth", 0) + 1
    try:
        yield
    finally:
        _local.depth -= 1


class _Closable(Protocol):
    def _close_at_exit(self) -> None: ...


def close_at_exit(obj: _Closable) -> Callable[[], None]:
    """Call ``obj._close_at_exit()`` at interpreter exit; returns the function that cancels this
    (for a ``close()`` that ran first).

    The reference is strong: an engine dropped without ``close()`` keeps running on its thread
    anyway, and is closed at exit all the same. Register after vLLM is imported: atexit runs
    the last registered first, so this runs before the exit hooks that vLLM's imports installed
    (multiprocessing's, which kills the children)."""
    atexit.register(obj._close_at_exit)
    return lambda: atexit.unregister(obj._close_at_exit)
