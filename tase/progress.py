"""Progress for long jobs that works in a terminal, in JupyterLab and headless under papermill.

``TASE_PROGRESS`` picks the display:

- ``bar``: a tqdm bar (``tqdm.auto``: a widget in JupyterLab, text in a terminal);
- ``log``: one plain line per epoch (what ``run_all.sh`` uses: readable logs, notebooks that do
  not fill up with carriage returns);
- ``off``: nothing.

Unset, it is ``bar`` when attached to a terminal or a Jupyter front end and ``log`` otherwise.
"""

from __future__ import annotations

import os
import sys
import time


def mode() -> str:
    value = os.environ.get("TASE_PROGRESS", "").strip().lower()
    if value in ("bar", "log", "off"):
        return value
    if value:
        raise ValueError(f"TASE_PROGRESS must be bar, log or off, got {value!r}")
    interactive = sys.stderr.isatty() or "ipykernel" in sys.modules
    return "bar" if interactive else "log"


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h:d}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class EpochProgress:
    """Reports epochs ``start..end`` with their metrics and an ETA from the mean epoch time.

    >>> bar = EpochProgress(0, 10, desc="warm-up")
    >>> bar.update(0, loss=5.1, tau="0.20")   # after each epoch
    >>> bar.close()
    """

    def __init__(self, start: int, end: int, desc: str = "train", stream=None, enabled=True):
        self.start, self.end, self.desc = start, end, desc
        self.mode = mode() if enabled else "off"  # e.g. off on every rank but 0
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self.done = 0
        self._bar = None
        if self.mode == "bar":
            from tqdm.auto import tqdm

            self._bar = tqdm(total=end - start, desc=desc, unit="ep", leave=True)

    def eta(self) -> float:
        if self.done == 0:
            return float("nan")
        per_epoch = (time.perf_counter() - self.t0) / self.done
        return per_epoch * (self.end - self.start - self.done)

    def update(self, epoch: int, **metrics) -> None:
        self.done += 1
        shown = {k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in metrics.items()}
        if self.mode == "bar":
            self._bar.set_postfix(shown, refresh=False)
            self._bar.update(1)
        elif self.mode == "log":
            text = " ".join(f"{k}={v}" for k, v in shown.items())
            print(
                f"[{self.desc}] epoch {epoch + 1}/{self.end} {text} "
                f"eta={format_seconds(self.eta())}",
                file=self.stream,
                flush=True,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
