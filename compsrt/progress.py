"""Progress display shared by the commands and the pipeline (one place below both)."""

from __future__ import annotations

import sys


class Spinner:
    """A one-line "still working" indicator on stderr for long silent calls (TensorRT's builder).

    On a terminal it redraws ``msg | 12 s`` in place and erases itself at the end; elsewhere (logs, pipes)
    it stays silent: the command's own summary line carries the time, and an error stays one line.
    """

    FRAMES = "|/-\\"

    def __init__(self, msg: str, enabled: bool = True, stream=None):
        self.msg, self.enabled, self.stream = msg, enabled, stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def __enter__(self):
        import threading
        import time

        self.t0, self._stop = time.perf_counter(), threading.Event()
        if not (self.enabled and self.tty):
            return self

        def spin():
            i = 0
            while not self._stop.wait(0.2):
                self.stream.write(f"\r{self.msg} {self.FRAMES[i % 4]} {time.perf_counter() - self.t0:.0f} s")
                self.stream.flush()
                i += 1

        self._thread = threading.Thread(target=spin, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.enabled and self.tty:
            self._stop.set()
            self._thread.join()
            self.stream.write("\r\033[K")
            self.stream.flush()
        return False
