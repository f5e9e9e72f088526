"""How a view's background work is ticked: one definition for the served studio and for notebooks.

A served page ticks through its Bokeh document's periodic callbacks; a bare notebook kernel has no
document to do that, so `ui/notebook.py` swaps in a schedule on the kernel's own event loop. Views
that tick (Play's loop, the Train tab's poll) take a `Schedule` rather than calling Panel directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import panel as pn


class Ticker(Protocol):
    def stop(self) -> None: ...


# Run `tick` every `period_ms`: returns what stops it, or None where nothing can run it.
Schedule = Callable[[Callable[[], None], int], Ticker | None]


def served_schedule(tick: Callable[[], None], period_ms: int) -> Ticker | None:
    """A served page's periodic callback (none outside a Bokeh document: a test, a bare kernel).

    Registered by Panel (so it is stopped with its session), then marked as running in the
    background (`_background`, the flag Panel sets for its own housekeeping callbacks) and unlogged:
    otherwise every tick adds and removes a busy event on `pn.state`, whose watchers took a quarter
    of the served Play loop's CPU at 30+ ticks a second (py-spy), and blinks the busy indicator.
    """
    if pn.state.curdoc is None:
        return None
    ticker = pn.state.add_periodic_callback(tick, period=period_ms, start=False)
    ticker._background, ticker.log = True, False
    ticker.start()
    return ticker
