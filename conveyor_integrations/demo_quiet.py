"""Keep other libraries' output off the demo's screen, and show it when something fails.

vLLM, torch and transformers write warnings, log lines and progress bars to the process's
stdout and stderr, from Python and from C++ (some from threads or the engine core's own
process). :class:`QuietOutput` points file descriptors 1 and 2, and ``sys.stdout`` and
``sys.stderr``, at a log file for its duration; what the demo itself prints goes to
:attr:`QuietOutput.terminal`, a copy of the original stdout. When the block fails, the descriptors are put back first and the log's telling part
(from its first error or traceback line, else its last lines) is written to the real stderr,
with the path of the whole log, so a root cause printed by a library is still seen. With
``enabled=False`` nothing is redirected (``conveyor demo --verbose``). Example::

    >>> import os
    >>> with QuietOutput() as quiet:        # ours: print(..., file=quiet.terminal)
    ...     _ = os.write(1, b"a library's warning\\n")     # to the log, not the screen
    >>> "a library's warning" in quiet.captured()
    True
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
from types import TracebackType
from typing import IO, Self

__all__ = ["QuietOutput", "telling_lines"]

_TELLING = re.compile(r"Traceback \(most recent call last\)|\bERROR\b|Error:|error:")


def telling_lines(log: str, *, limit: int = 40) -> list[str]:
    """The part of ``log`` that explains a failure: from its first error or traceback line (at
    most ``limit`` lines from there), else its last ``limit`` lines.

    >>> telling_lines("noise\\nmore noise\\nTraceback (most recent call last):\\n  boom", limit=5)
    ['Traceback (most recent call last):', '  boom']
    >>> telling_lines("a\\nb\\nc", limit=2)
    ['b', 'c']
    """
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if _TELLING.search(line):
            return lines[i:i + limit]
    return lines[-limit:]


class QuietOutput:
    """Redirects descriptors 1 and 2 (and ``sys.stdout``, ``sys.stderr``) into a log file while
    the ``with`` block runs.

    ``terminal`` writes to the original stdout (the screen), also inside the block. On a
    failure inside the block the log is kept and its telling lines go to the original stderr;
    on success (or an ``expected`` exception) the log file is removed. ``enabled=False``: no redirection, ``terminal`` is
    ``sys.stdout``.
    """

    def __init__(self, enabled: bool = True, *, failure_lines: int = 40,
                 expected: tuple[type[BaseException], ...] = ()) -> None:
        self.enabled = enabled
        self.expected = expected
        """Exceptions that explain themselves: no log is shown for them."""
        self.failure_lines = failure_lines
        self.terminal: IO[str] = sys.stdout
        self.log_path: str | None = None
        self._saved: dict[int, int] = {}
        self._log_fd: int | None = None
        self._log_text: IO[str] | None = None
        self._sys: tuple[IO[str], IO[str]] | None = None
        self._text = ""

    def __enter__(self) -> Self:
        if not self.enabled:
            return self
        _flush()
        fd, self.log_path = tempfile.mkstemp(prefix="conveyor-demo-", suffix=".log")
        self._log_fd = fd
        try:
            self._saved = {n: os.dup(n) for n in (1, 2)}
            encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
            self.terminal = open(os.dup(self._saved[1]), "w", encoding=encoding,
                                 errors="replace", buffering=1)
            for n in (1, 2):
                os.dup2(fd, n)
            # Python-level writers (warnings, tqdm) write to whatever sys.stderr is when they
            # write, which need not be descriptor 2 (a test's capture): point both at the log
            self._sys = (sys.stdout, sys.stderr)
            self._log_text = open(fd, "w", encoding="utf-8", errors="replace", buffering=1,
                                  closefd=False)
            sys.stdout = sys.stderr = self._log_text
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.enabled:
            return
        self._restore()
        quiet: tuple[type[BaseException], ...] = (KeyboardInterrupt, SystemExit, *self.expected)
        if et is not None and not issubclass(et, quiet):
            self.report_failure()
        elif self.log_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)
            self.log_path = None

    def captured(self) -> str:
        """Everything written to descriptors 1 and 2 so far (``""`` when not enabled)."""
        if not self._saved:
            return self._text
        _flush()
        return self._read()

    def report_failure(self, file: IO[str] | None = None) -> None:
        """Write the log's telling lines and its path (to the real stderr by default)."""
        out = file or sys.stderr
        lines = telling_lines(self._text, limit=self.failure_lines)
        if not lines:
            return
        print(f"--- what the libraries printed before the failure (whole log: {self.log_path})",
              file=out)
        for line in lines:
            print(line, file=out)
        print("---", file=out)
        out.flush()

    def _read(self) -> str:
        if self.log_path is None:
            return ""
        with open(self.log_path, encoding="utf-8", errors="replace") as fh:
            return fh.read().replace("\r", "\n")

    def _restore(self) -> None:
        _flush()
        if self._sys is not None:
            sys.stdout, sys.stderr = self._sys
            self._sys = None
        if self._log_text is not None:
            with contextlib.suppress(OSError, ValueError):
                self._log_text.close()
            self._log_text = None
        with contextlib.suppress(OSError, ValueError):
            self.terminal.flush()
        for n, saved in self._saved.items():
            os.dup2(saved, n)
            os.close(saved)
        if self._saved:
            self._text = self._read()
            with contextlib.suppress(OSError):
                self.terminal.close()
            self.terminal = sys.stdout
        self._saved = {}
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
