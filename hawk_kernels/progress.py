"""Progress bars for long work (many images, distillation, training, one image's tokens): tqdm on stderr, redrawn in
place on a terminal; in a log file or a pipe, plain lines instead of carriage-return redraws."""
from __future__ import annotations

import sys

LOG_INTERVAL_S = 30.0  # a progress bar written to a file or pipe: one line at most this often


class _Lines:
    """A progress bar's stream when it is not a terminal (a log file, a pipe): each refresh on a line of its own,
    without the carriage returns and padding a terminal redraws in place."""

    def __init__(self, stream):
        self.stream, self.flush = stream, stream.flush

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip()
        if text:
            self.stream.write(text + "\n")


def progress_bar(total: int, desc: str | None, disable: bool = False, **kwargs):
    """A tqdm bar on stderr: redrawn in place on a terminal; elsewhere (piped, a log file) a plain line every
    LOG_INTERVAL_S seconds and one at the end, so a log stays readable. A transient bar (leave=False: one image's
    tokens) writes nothing to a log unless its work outlasts LOG_INTERVAL_S."""
    from tqdm.auto import tqdm

    stream = sys.stderr
    if not disable and not (hasattr(stream, "isatty") and stream.isatty()):
        transient = kwargs.get("leave") is False
        kwargs = dict(file=_Lines(stream), mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S, ascii=True,
                      ncols=100, delay=LOG_INTERVAL_S if transient else 0, **kwargs)
    return tqdm(total=total, desc=desc, disable=disable, **kwargs)
