"""How a view's background work is ticked: one definition for the served studio and for notebooks.

A served page ticks through its Bokeh document's periodic callbacks; a bare notebook kernel has no
document to do that, so `ui/notebook.py` swaps in a schedule on the kernel's own event loop. Views
that tick (Play's loop, the Train tab's poll) take a `Schedule` rather than calling Panel directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

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


def under_lock(action: Callable[[], object]) -> None:
    """Run `action` where a served page's Bokeh models may be changed: as its document's next-tick
    callback, which Bokeh runs holding the document lock; at once outside a served page (a
    notebook's own loop, a test).

    Why: Panel 1.9 hands a browser event that arrives while a change of the same page is still
    pending (a tab switched just before a button is clicked) to a bare coroutine holding no lock
    (panel/reactive.py `_server_event` -> `state.execute` -> param's async executor); a Bokeh
    model changed there raises Bokeh's "_pending_writes should be non-None" error. Seen in
    benchmarks/soak.py: the Train tab's Start, clicked right after its tab, failed 1-2 times an hour.
    """
    doc = pn.state.curdoc
    if doc is not None and doc.session_context is not None:
        pn.state.execute(action, schedule=True)
    else:
        action()


def clicked(action: Callable[[], object]) -> Callable[[Any], None]:
    """A button's on_click handler running `action` under the page's lock (see `under_lock`)."""
    return lambda _event: under_lock(action)
