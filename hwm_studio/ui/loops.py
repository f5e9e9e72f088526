"""How a view's background work is ticked: one definition for the served studio and for notebooks.

A served page ticks through its Bokeh document's periodic callbacks; a bare notebook kernel has no
document to do that, so `ui/notebook.py` swaps in a schedule on the kernel's own event loop. Views
that tick (Play's loop, the Train tab's poll) take a `Schedule` rather than calling Panel directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import panel as pn
from panel.io.callbacks import PeriodicCallback


class Ticker(Protocol):
    def stop(self) -> None: ...


# Run `tick` every `period_ms`: returns what stops it, or None where nothing can run it.
Schedule = Callable[[Callable[[], None], int], Ticker | None]


def served_schedule(tick: Callable[[], None], period_ms: int) -> Ticker | None:
    """A served page's periodic callback (none outside a Bokeh document: a test, a bare kernel).

    In the background (Panel's own flag for its housekeeping callbacks), unlogged: otherwise every
    tick adds and removes a busy event on `pn.state`, whose watchers took a quarter of the served
    Play loop's CPU at 30+ ticks a second (py-spy), and blinks the page's busy indicator each time.
    """
    if pn.state.curdoc is None:
        return None
    ticker = PeriodicCallback(callback=tick, period=period_ms, background=True, log=False)
    ticker.start()
    return ticker
