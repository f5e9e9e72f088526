"""The Play view: drive the learned model live from the keyboard beside the truth.

Keys live in the browser (`PlaySurface`, a Panel JSComponent): the set of held keys is sent only
when it changes (auto-repeat ignored, cleared on blur and on a hidden tab, arrows kept from
scrolling, keys typed into inputs ignored), and the server samples the latest set each tick; space,
R and P are one-shot messages. Frames go the other way as raw RGBA bytes drawn into a canvas; the
browser acknowledges each frame it drew by message, and the server sends one only while fewer than
IN_FLIGHT are undrawn (frames are dropped, never queued). The ledger views (`LiveLedger`) are drawn
in the browser from a few numbers. One tick = the steps the pacer says are due, then at most one
frame and one ledger readout, in one batched update; while IN_FLIGHT frames are undrawn a tick
does nothing, so an overloaded server (two sessions on two cores) spends itself on frames the
player sees and plays slower, instead of stepping unseen states while the acks queue behind them.
The loop itself is `hwm_studio.play.Player`; this module only draws it and feeds it keys.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import panel as pn
import param
from panel.custom import JSComponent

from hwm_studio.models.base import WorldModel
from hwm_studio.play import Pacer, Player, live_dt
from hwm_studio.systems.base import System
from hwm_studio.ui.help import help_card
from hwm_studio.ui.loops import Schedule, served_schedule, under_lock
from hwm_studio.workspace import Workspace

# key -> (action dim, direction); space releases everything, r resets, p pauses (COMMANDS)
ACTION_KEYS = {"ArrowRight": (0, 1.0), "ArrowLeft": (0, -1.0), "ArrowUp": (1, 1.0), "ArrowDown": (1, -1.0)}
COMMANDS = ("release", "reset", "pause")
FRAME_SIZE = 160  # pixels per view (model | truth side by side)
TICK_MS = 16  # the loop's period: up to ~60 ticks a second (a tick still running skips the next)
TICK_BUDGET_S = 0.03  # the stepping a tick may spend (its frame and views come on top)
IN_FLIGHT = 2  # frames sent and not yet drawn, at most (jupyter_rfb's max_buffered_frames)
ACK_TIMEOUT_S = 0.5  # a frame not acknowledged by then counts as lost: the next one is sent
VIEWS_HZ = 20  # ledger readouts (bars, strip, trail, caption) per second
MAX_VIDEO_SECONDS = 120  # an exported video holds at most the newest this many seconds of play
STRIP = 600  # points kept in the scrolling ledger strip


class PlaySurface(JSComponent):
    """A canvas the server draws into and the keys the browser holds (focus it to play)."""

    keys = param.List(default=[], doc="keys held in the browser, sorted; sent on change only")
    frame = param.Bytes(default=None, allow_None=True, doc="RGBA bytes of frame_width x frame_height")
    frame_width = param.Integer(default=2 * FRAME_SIZE)
    frame_height = param.Integer(default=FRAME_SIZE)
    sent = param.Integer(default=0, doc="number of the frame in `frame`")
    focused = param.Boolean(default=False, doc="whether the surface has the keyboard")
    keys_seq = param.Integer(default=0, doc="counts the browser's key changes (sent after `keys`)")
    shown_seq = param.Integer(default=0, doc="the key change the frame in `frame` has stepped under")
    # the live numbers under the canvas, set in place: a Markdown pane changing at 10 Hz re-lays out the page
    caption = param.String(default="", doc="live numbers shown under the canvas")

    def __init__(self, on_command: Callable[[str], None] | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.on_command = on_command
        self._drawn = 0

    @property
    def drawn(self) -> int:
        """The last frame number the browser acknowledged. Kept off the synced properties: an ack
        then changes nothing in the document (nothing to send back for a frame drawn)."""
        return self._drawn

    def _handle_msg(self, data: Any) -> None:
        """A one-shot key from the browser: {'command': 'release' | 'reset' | 'pause'}."""
        if not isinstance(data, dict):
            return
        if isinstance(data.get("drawn"), int):  # a message, not a property sync: it arrives sooner
            self._drawn = max(self._drawn, data["drawn"])
            return
        command = data.get("command")
        if command in COMMANDS and self.on_command is not None:
            self.on_command(command)

    _esm = """
    const KEYS = new Set(['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown']);
    const COMMANDS = { ' ': 'release', 'r': 'reset', 'p': 'pause' };  // one-shot: sent as messages
    const PADS = [['ArrowLeft', '\u25c0'], ['ArrowRight', '\u25b6'], ['ArrowUp', '\u25b2'], ['ArrowDown', '\u25bc']];
    const norm = (k) => (k.length === 1 ? k.toLowerCase() : k);

    export function render({ model, el }) {
      const wrap = document.createElement('div');
      wrap.className = 'hwm-play';
      wrap.tabIndex = 0;
      wrap.style.outline = 'none';
      const canvas = document.createElement('canvas');
      canvas.style.width = '100%';
      canvas.style.imageRendering = 'pixelated';
      canvas.style.border = '2px solid #555';
      canvas.style.boxSizing = 'border-box';
      const hint = document.createElement('div');
      hint.style.font = '13px sans-serif';
      hint.textContent = 'click here, then hold \u2190 \u2192 (\u2191 \u2193): space releases, R resets, P pauses';
      const held = new Set();
      // key change -> the first frame drawn that stepped under it: the latency a player feels
      let pending = null;
      const latencies = [];
      let drawnCount = 0;
      const publish = () => {
        model.keys = Array.from(held).sort();
        const seq = model.keys_seq + 1;
        pending = pending || { seq, t: performance.now() };
        pending.seq = seq;
        model.keys_seq = seq;
      };
      const press = (k) => { if (!held.has(k)) { held.add(k); publish(); } };
      const release = (k) => { if (held.delete(k)) publish(); };
      const clear = () => { if (held.size) { held.clear(); publish(); } };
      const typing = (e) => {
        const t = e.composedPath()[0];
        return !!t && (['INPUT', 'TEXTAREA', 'SELECT'].includes(t.tagName) || t.isContentEditable);
      };
      const down = (e) => {
        const k = norm(e.key);
        if (typing(e) || !(KEYS.has(k) || k in COMMANDS)) return;
        e.preventDefault();
        e.stopPropagation();  // a notebook's own shortcuts (JupyterLab listens while bubbling) stay out
        if (e.repeat) return;
        if (k in COMMANDS) {
          // a tap is shorter than the property sync coalesces: held keys are state, these are events
          if (k === ' ') clear();
          model.send_msg({ command: COMMANDS[k] });
          return;
        }
        press(k);
      };
      const up = (e) => {
        const k = norm(e.key);
        if (typing(e)) return;
        if (KEYS.has(k) || k in COMMANDS) { e.preventDefault(); e.stopPropagation(); release(k); }
      };
      const hidden = () => { if (document.hidden) clear(); };
      wrap.addEventListener('keydown', down);
      wrap.addEventListener('keyup', up);
      wrap.addEventListener('focus', () => { model.focused = true; canvas.style.borderColor = '#e69f00'; });
      wrap.addEventListener('blur', () => { clear(); model.focused = false; canvas.style.borderColor = '#555'; });
      wrap.addEventListener('pointerdown', () => wrap.focus());
      window.addEventListener('blur', clear);
      document.addEventListener('visibilitychange', hidden);
      const pads = document.createElement('div');
      for (const [k, label] of PADS) {
        const b = document.createElement('button');
        b.textContent = label;
        b.style.cssText = 'font-size:20px;width:48px;height:40px;margin:4px;touch-action:none';
        b.addEventListener('pointerdown', (e) => { e.preventDefault(); b.setPointerCapture(e.pointerId); press(k); });
        for (const ev of ['pointerup', 'pointercancel', 'lostpointercapture']) b.addEventListener(ev, () => release(k));
        pads.appendChild(b);
      }
      const ctx = canvas.getContext('2d');
      const bytesOf = (f) => {
        if (!f) return null;
        if (f instanceof ArrayBuffer) return new Uint8ClampedArray(f);
        if (ArrayBuffer.isView(f)) return new Uint8ClampedArray(f.buffer, f.byteOffset, f.byteLength);
        if (typeof f === 'string') return Uint8ClampedArray.from(atob(f), (c) => c.charCodeAt(0));
        return null;
      };
      const draw = () => {
        const w = model.frame_width, h = model.frame_height, bytes = bytesOf(model.frame);
        if (bytes && bytes.length === w * h * 4) {
          if (canvas.width !== w) canvas.width = w;
          if (canvas.height !== h) canvas.height = h;
          ctx.putImageData(new ImageData(new Uint8ClampedArray(bytes), w, h), 0, 0);
          drawnCount += 1;
          wrap.dataset.drawn = String(drawnCount);  // read by benchmarks/play_fps.py
          if (pending && model.shown_seq >= pending.seq) {
            latencies.push(performance.now() - pending.t);
            wrap.dataset.latencies = latencies.slice(-200).map((x) => x.toFixed(1)).join(',');
            pending = null;
          }
        }
        model.send_msg({ drawn: model.sent });  // acknowledged: the server may send the next frame
      };
      // every frame comes with a new `sent`: draw once the whole update is applied
      model.on('sent', () => queueMicrotask(draw));
      model.on('remove', () => {
        window.removeEventListener('blur', clear);
        document.removeEventListener('visibilitychange', hidden);
      });
      const caption = document.createElement('div');
      caption.style.font = '13px sans-serif';
      caption.style.minHeight = '1.4em';
      caption.textContent = model.caption;
      model.on('caption', () => { caption.textContent = model.caption; });
      wrap.append(canvas, caption, hint, pads);
      draw();
      // a change made during render does not reach the server: acknowledge again once rendered
      model.on('after_render', () => { model.send_msg({ drawn: model.sent }); });
      return wrap;
    }
    """


class LiveLedger(JSComponent):
    """The energy ledger drawn in the browser: bars, the phase trail and a scrolling strip, from
    one short list of numbers a tick (Bokeh figures redrawn at the frame rate starve the page)."""

    readout = param.List(default=[], doc="t; T, V, U, H, dissipated, control work, residual work, balance error; "
                         "then model q, p and true q, p (None: not a number)")  # fmt: skip
    epoch = param.Integer(default=0, doc="incremented when the episode restarts: the history is cleared")
    trail_title = param.String(default="Phase trail (first coordinate)")

    _esm = """
    const BARS = ['T', 'V', 'U', 'H', 'dissipated', 'control', 'residual', 'balance err.'];  // works done
    const MODEL = '#D55E00', TRUTH = '#222222', BALANCE = '#cc79a7', MAX = 600;
    const ok = (x) => typeof x === 'number' && Number.isFinite(x);

    function panel(box, w, h, title) {
      const d = document.createElement('div');
      const t = document.createElement('div');
      t.textContent = title;
      t.style.cssText = 'font:bold 12px sans-serif;margin:2px 0';
      const c = document.createElement('canvas');
      c.width = w; c.height = h;
      c.style.border = '1px solid #ddd';
      d.append(t, c);
      box.append(d);
      return { ctx: c.getContext('2d'), w, h, title: t };
    }
    function range(values) {
      const v = values.filter(ok);
      if (!v.length) return [-1, 1];
      let lo = Math.min(...v), hi = Math.max(...v);
      const pad = 0.08 * Math.max(hi - lo, 1e-6);
      return [lo - pad, hi + pad];
    }
    function line(p, xs, ys, xr, yr, colour) {
      const { ctx, w, h } = p;
      ctx.strokeStyle = colour; ctx.lineWidth = 1.6; ctx.beginPath();
      let open = false;
      for (let i = 0; i < xs.length; i++) {
        if (!ok(xs[i]) || !ok(ys[i])) { open = false; continue; }
        const x = 36 + (w - 44) * (xs[i] - xr[0]) / (xr[1] - xr[0]);
        const y = h - 16 - (h - 24) * (ys[i] - yr[0]) / (yr[1] - yr[0]);
        if (open) ctx.lineTo(x, y); else { ctx.moveTo(x, y); open = true; }
      }
      ctx.stroke();
    }
    function axes(p, xr, yr) {
      const { ctx, w, h } = p;
      ctx.clearRect(0, 0, w, h);
      ctx.fillStyle = '#555'; ctx.font = '10px sans-serif';
      ctx.fillText(yr[1].toPrecision(3), 2, 12);
      ctx.fillText(yr[0].toPrecision(3), 2, h - 18);
      ctx.fillText(xr[0].toPrecision(3), 36, h - 4);
      ctx.fillText(xr[1].toPrecision(3), w - 40, h - 4);
    }

    export function render({ model }) {
      const box = document.createElement('div');
      box.className = 'hwm-ledger';
      box.style.cssText = 'display:flex;flex-wrap:wrap;gap:14px';
      const bars = panel(box, 520, 210, 'Energy ledger (model)');
      const trail = panel(box, 250, 210, model.trail_title);
      const strip = panel(box, 790, 170, 'Over time: H (orange), control work (black), balance error (pink)');
      let hist = [];
      let scheduled = false;
      function drawBars(r) {
        const { ctx, w, h } = bars;
        ctx.clearRect(0, 0, w, h);
        const v = r.slice(1, 1 + BARS.length).map((x) => (ok(x) ? x : 0));
        const big = Math.max(1e-9, ...v.map(Math.abs));
        const zero = h / 2 - 10, scale = (h / 2 - 34) / big, slot = w / BARS.length;
        ctx.strokeStyle = '#999'; ctx.beginPath(); ctx.moveTo(0, zero); ctx.lineTo(w, zero); ctx.stroke();
        ctx.font = '10px sans-serif'; ctx.textAlign = 'center';
        v.forEach((x, i) => {
          const cx = slot * (i + 0.5), top = zero - x * scale;
          ctx.fillStyle = i === 7 ? BALANCE : MODEL;
          ctx.fillRect(cx - slot * 0.32, Math.min(zero, top), slot * 0.64, Math.abs(x * scale));
          ctx.fillStyle = '#222';
          ctx.fillText(x.toPrecision(3), cx, x >= 0 ? top - 3 : top + 11);
          ctx.fillText(BARS[i], cx, h - 4);
        });
        ctx.textAlign = 'left';
      }
      function drawAll() {
        scheduled = false;
        if (!hist.length) return;
        drawBars(hist[hist.length - 1]);
        const col = (k) => hist.map((r) => r[k]);
        const t = col(0), H = col(4), work = col(6), balance = col(8);
        const tr = range(t), yr = range([...H, ...work, ...balance]);
        axes(strip, tr, yr);
        line(strip, t, H, tr, yr, MODEL);
        line(strip, t, work, tr, yr, TRUTH);
        line(strip, t, balance, tr, yr, BALANCE);
        const mq = col(9), mp = col(10), tq = col(11), tp = col(12);
        const qr = range([...mq, ...tq]), pr = range([...mp, ...tp]);
        axes(trail, qr, pr);
        line(trail, tq, tp, qr, pr, TRUTH);
        line(trail, mq, mp, qr, pr, MODEL);
      }
      model.on('readout', () => {
        const r = model.readout;
        if (!r || !r.length) return;
        hist.push(r);
        if (hist.length > MAX) hist.shift();
        if (!scheduled) { scheduled = true; requestAnimationFrame(drawAll); }
      });
      model.on('epoch', () => { hist = []; });
      model.on('trail_title', () => { trail.title.textContent = model.trail_title; });
      return box;
    }
    """


def _number(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def _rgba(frame: np.ndarray) -> bytes:
    alpha = np.full((*frame.shape[:2], 1), 255, dtype=np.uint8)
    return np.ascontiguousarray(np.concatenate([frame, alpha], axis=-1)).tobytes()


class PlayPanel(pn.viewable.Viewer):
    """Play one model of one system: the surface, the loop's controls and the live energy ledger.

    `source()` gives the (model, system) to play, read when the panel starts or resets (the studio
    passes its current selection). `save_episode` writes what was played into the workspace.
    """

    gain = param.Number(default=1.0, bounds=(0.0, 1.0), label="Action gain (fraction of the bound)")
    rtf = param.Number(default=1.0, bounds=(0.25, 4.0), step=0.25, label="Real-time factor")
    paused = param.Boolean(default=True, label="Pause (P)")
    seed = param.Integer(default=0, bounds=(0, 10_000), label="Start (seed)")
    status = param.String(default="")

    def __init__(
        self,
        source: Callable[[], tuple[WorldModel | None, System]],
        workspace: Workspace | None = None,
        on_saved: Callable[[str], None] | None = None,
        **params: Any,
    ) -> None:
        super().__init__(**params)
        self.source, self.workspace, self.on_saved = source, workspace, on_saved
        self.schedule: Schedule = served_schedule  # a notebook swaps in the kernel's loop (ui/notebook.py)
        self.surface = PlaySurface(
            on_command=lambda name: self.on_loop(lambda: self.command(name)),
            sizing_mode="stretch_width",
            max_width=6 * FRAME_SIZE,
        )
        self.player: Player | None = None
        self.pacer: Pacer | None = None
        self._tick_lock = threading.Lock()
        self._callback: Any = None
        self._effect_seq = 0  # the browser's key change the model has stepped under
        self._sent_at = 0.0  # when the frame in flight was sent (monotonic)
        self._frame_version = -1  # the player version the last frame sent showed (a new state, a new frame)
        self._views_at = 0.0  # when the ledger views were last refreshed
        self.ledger = LiveLedger(sizing_mode="stretch_width")
        # Browser events run through `on_loop`: a served page sends what they change by itself; a
        # notebook runs them on the kernel's loop and pushes what they changed (ui/notebook.py).
        self.on_loop: Callable[[Callable[[], None]], None] = under_lock
        self.param.watch(lambda e: self.on_loop(lambda: self._on_pause(e)), ["paused"])
        self.param.watch(lambda e: self._set_rtf(e.new), ["rtf"])
        self.param.watch(lambda e: self._set_gain(e.new), ["gain"])
        self.surface.param.watch(self._on_keys, ["keys"])

    # --- the loop ---------------------------------------------------------------------------
    def start(self) -> bool:
        """(Re)build the player from the source's current model and system, at the start `seed`.
        A model that cannot be played (none, or one the system does not fit) is a message, not a crash."""
        self.stop_loop()
        self.player = self.pacer = None
        model, system = self.source()
        if model is None:
            self.status = "No model to play: pick one in the sidebar."
            return False
        try:
            self.player = Player(
                model,
                system,
                dt=live_dt(model),
                seed=self.seed,
                gain=self.gain,
                traced=model is None or model.worth_tracing,
            )
        except ValueError as exc:
            self.status = f"**Cannot play this model:** {exc}"
            return False
        self.pacer = Pacer(self.player.dt, self.rtf)
        self.ledger.trail_title = "Phase trail (first coordinate)" + (
            ": truth only (a pixel latent has its own axes)" if self.player.pixels else ""
        )
        self.ledger.epoch += 1
        self._show(force=True)
        if not self.paused:
            self._start_loop()
        return True

    def invalidate(self) -> None:
        """The source changed (another model or system): stop, and rebuild on the next start."""
        self.close()
        self.paused = True  # heard by the toggle too (a discarded event would leave it showing "playing")
        self.status = "Release Pause (P) to drive the selected model."

    @property
    def looping(self) -> bool:
        """Whether the periodic tick is registered (it is only while playing)."""
        return self._callback is not None

    def _start_loop(self) -> None:
        if self._callback is None:
            self._callback = self.schedule(self.tick, TICK_MS)

    def stop_loop(self) -> None:
        if self._callback is not None:
            self._callback.stop()
            self._callback = None

    def _on_pause(self, event: Any) -> None:
        if self.pacer is not None:
            self.pacer.pause()
        if event.new:
            self.stop_loop()
        elif self.player is not None or self.start():
            self._start_loop()

    def _set_rtf(self, value: float) -> None:
        if self.pacer is not None:
            self.pacer.rtf = value

    def _set_gain(self, value: float) -> None:
        if self.player is not None:
            self.player.gain = value

    def _clicked(self, action: Callable[[], object]) -> Callable[[Any], None]:
        return lambda _event: self.on_loop(action)

    def _on_keys(self, event: Any) -> None:
        self._apply_keys(set(event.new))

    def command(self, name: str) -> None:
        """A one-shot key: 'pause' toggles the loop, 'reset' starts the episode again, 'release'
        lets go of every action (the browser has cleared its held keys too)."""
        if name == "pause":
            self.paused = not self.paused
        elif name == "reset":
            self.reset()
        elif name == "release":
            self._apply_keys(set())

    def _apply_keys(self, keys: set[str]) -> None:
        if self.player is None:
            return
        fractions = np.zeros(self.player.system.action_dim)
        for key, (dim, sign) in ACTION_KEYS.items():
            if key in keys and dim < fractions.size:
                fractions[dim] += sign
        self.player.hold(fractions)

    def tick(self) -> None:
        """One loop tick: the due steps, then one frame and one update of the views."""
        if self.player is None or self.pacer is None or not self._tick_lock.acquire(blocking=False):
            return  # a slow tick is still running: skip this one rather than pile up
        try:
            now = time.monotonic()
            if not self._frame_ready(now):
                return  # the browser is behind: step when a frame can show it (the pacer keeps the time)
            steps = self.pacer.due(now)
            seq = self.surface.keys_seq  # read before stepping: these steps run under it
            if not steps and seq != self._effect_seq:
                steps = self.pacer.borrow()  # a key changed: show its effect now, not a dt later
            if steps:
                self._advance_within_budget(steps)
                self._effect_seq = seq
            self._show()
        finally:
            self._tick_lock.release()

    def _advance_within_budget(self, steps: int) -> None:
        """The due steps, as many as fit in TICK_BUDGET_S (the rest dropped, as the pacer drops a
        stall's): a model or truth slower than real time (the double pendulum's, at dt 0.01) then
        plays slower, and the loop still answers keys and clicks between ticks."""
        assert self.player is not None
        start = time.perf_counter()
        self.player.advance(1)
        per_step = time.perf_counter() - start
        more = min(steps - 1, int((TICK_BUDGET_S - per_step) / max(per_step, 1e-6)))
        if more > 0:
            self.player.advance(more)

    def step_once(self, *_: Any) -> None:
        """One step of dt (while paused, to look closely)."""
        if self.player is not None:
            self.player.advance(1)
            self._show(force=True)

    def resync(self, *_: Any) -> None:
        if self.player is not None:
            self.player.resync()
            self._show(force=True)

    def reset(self, *_: Any) -> None:
        if self.player is not None:
            self.player.reset(self.seed)
            if self.pacer is not None:
                self.pacer.pause()
            self.ledger.epoch += 1
            self._show(force=True)

    def save_episode(self, *_: Any) -> str | None:
        """Write what was played into the workspace as a trajectory file; returns its name."""
        if self.player is None or self.workspace is None:
            self.status = "**Not saved:** " + ("nothing is playing" if self.workspace else "this view has no workspace")
            return None
        from hwm_studio.data.format import save_trajectories

        name = f"played_{self.player.system.name}_{time.strftime('%Y%m%d_%H%M%S')}.npz"
        try:
            path = save_trajectories(self.player.episode(), self.workspace.path(name))
        except (ValueError, OSError) as exc:  # a bad file or name (ValueError), a full disk
            self.status = f"**Not saved:** {exc}"
            return None
        self.status = f"Saved {self.player.steps} steps as {path.name} (pick it in the Train tab)."
        if self.on_saved is not None:
            self.on_saved(path.name)
        return path.name

    def export_video(self, *_: Any) -> str | None:
        """Write the played episode (its newest `MAX_VIDEO_SECONDS`) as an mp4 in the workspace,
        model | truth at the view's size and real time; returns its name."""
        if self.player is None or self.workspace is None:
            self.status = "**No video:** " + ("nothing is playing" if self.workspace else "this view has no workspace")
            return None
        from hwm_studio.viz.video import write_video

        player = self.player
        name = f"played_{player.system.name}_{time.strftime('%Y%m%d_%H%M%S')}.mp4"
        last = round(MAX_VIDEO_SECONDS / player.dt)
        try:
            path, n = write_video(self.workspace.path(name), player.video(FRAME_SIZE, last=last), fps=1.0 / player.dt)
        except (ValueError, OSError) as exc:  # nothing played yet, a bad name, a full disk
            self.status = f"**No video:** {exc}"
            return None
        cut = f" (the last {MAX_VIDEO_SECONDS} s)" if n == last else ""
        self.status = f"Wrote {n} frames{cut}, model | truth, as {path.name} in the workspace."
        return path.name

    # --- views ------------------------------------------------------------------------------
    def _show(self, force: bool = False) -> None:
        """Send a frame if the last one was drawn (at most IN_FLIGHT undrawn); send the ledger's
        readout at most VIEWS_HZ times a second. Both go in one batched update."""
        player = self.player
        assert player is not None
        s = self.surface
        now = time.monotonic()
        frame_ready = force or (player.version != self._frame_version and self._frame_ready(now))
        views_due = force or now - self._views_at >= 1.0 / VIEWS_HZ
        if not (frame_ready or views_due):
            return
        with pn.io.hold():
            if frame_ready:
                model_frame, truth_frame = player.frames(FRAME_SIZE)
                s.param.update(frame=_rgba(np.concatenate([model_frame, truth_frame], axis=1)), sent=s.sent + 1,
                               shown_seq=self._effect_seq)  # fmt: skip
                self._sent_at, self._frame_version = now, player.version
            if views_due:
                self._views_at = now
                self._show_views(player)

    def _frame_ready(self, now: float) -> bool:
        """Fewer than IN_FLIGHT frames undrawn; an ack lost (a page reloaded mid-frame) stalls the
        frames ACK_TIMEOUT_S at most."""
        s = self.surface
        return s.sent - s.drawn < IN_FLIGHT or now - self._sent_at > ACK_TIMEOUT_S

    def _show_views(self, player: Player) -> None:
        energy, led = player.energy(), player.ledger
        values = [energy.get("kinetic", 0.0), energy.get("potential", 0.0), energy.get("interaction", 0.0),
                  energy.get("total", 0.0), led["dissipated"], led["control_work"], led["residual_work"],
                  led["balance_error"]]  # fmt: skip
        (mq, mp), (tq, tp) = player.model_state(), player.true_state()
        if player.pixels:  # its latent has the coordinates its encoder learned: not drawn on the truth's axes
            mq = mp = np.array([np.nan])
        t = player.steps * player.dt
        row = [t, *values, float(mq.flat[0]), float(mp.flat[0]), float(tq.flat[0]), float(tp.flat[0])]
        self.ledger.readout = [_number(x) for x in row]
        limit = "" if player.pixels else " (0.1 ends the valid prediction)"
        if not player.model.action_dim:
            limit += " · this model takes no actions: the keys drive only the truth"
        if player.integrator is not None:
            limit += f" · stepped by {player.integrator.name.replace('_', '-')} (its ledger is exact per step)"
        self.surface.caption = (f"t = {t:.2f} s · action {np.array2string(player.action, precision=2)} · "
                       f"divergence {player.divergence():.3g} {player.divergence_measure}{limit} · "
                       f"true H {energy['true']:.3f}")  # fmt: skip

    def close(self) -> None:
        """Stop the loop and drop the player (a session frees what it took)."""
        self.stop_loop()
        self.player = self.pacer = None

    def __panel__(self) -> pn.viewable.Viewable:
        buttons = pn.Row(
            pn.widgets.Button(label="Step", on_click=self._clicked(self.step_once)),
            pn.widgets.Button(label="Resync", on_click=self._clicked(self.resync)),
            pn.widgets.Button(label="Reset", on_click=self._clicked(self.reset)),
        )
        keep = pn.Row(  # what was played: a trajectory file for the Train tab, or a video
            pn.widgets.Button(label="Save episode", on_click=self._clicked(self.save_episode)),
            pn.widgets.Button(label="Export mp4", on_click=self._clicked(self.export_video)),
        )
        controls = pn.Column(
            pn.widgets.Toggle.from_param(self.param.paused),
            pn.widgets.FloatSlider.from_param(self.param.gain),
            pn.widgets.FloatSlider.from_param(self.param.rtf),
            pn.widgets.IntInput.from_param(self.param.seed),
            buttons,
            keep,
            width=320,
        )
        return pn.Column(
            help_card("Play"),
            pn.pane.Markdown(
                "Model (left) | truth (right), under the same held actions. The model sees the "
                "truth only when you press Resync."
            ),
            pn.Row(self.surface, controls),
            pn.pane.Markdown(self.param.status),
            self.ledger,
            sizing_mode="stretch_width",
        )
