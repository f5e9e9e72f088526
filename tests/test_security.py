"""Security, tested (issue 16 item 7): the studio listens on loopback and refuses foreign Origins,
the workspace confines every name and link, uploads are capped and validated, and no user file is
ever unpickled (torch.load, pickle) anywhere in the library."""

from __future__ import annotations

import ast
import os
import pickle
import shlex
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from hwm_studio.data.format import DataFormatError, load_trajectories
from hwm_studio.workspace import Workspace, WorkspaceError

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> list[str]:
    """Local addresses of the sockets listening on `port` (from /proc: no traffic sent)."""
    out = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, hexport = local.split(":")
            if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                if width == 8:
                    out.append(socket.inet_ntop(socket.AF_INET, bytes.fromhex(addr)[::-1]))
                else:
                    words = [bytes.fromhex(addr[i : i + 8])[::-1] for i in range(0, 32, 8)]
                    out.append(socket.inet_ntop(socket.AF_INET6, b"".join(words)))
    return out


def _handshake(port: int, origin: str) -> str:
    """The status line a websocket handshake to the studio gets with this Origin."""
    request = (f"GET /studio/ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
               f"Sec-WebSocket-Protocol: bokeh\r\nOrigin: {origin}\r\n\r\n")  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(request.encode())
        return s.recv(4096).decode(errors="replace").splitlines()[0]


@pytest.mark.slow
def test_make_studio_serves_on_loopback_only_and_refuses_foreign_origins() -> None:
    """The command `make studio` runs (read from `make -n`), started as it is: its socket listens on
    127.0.0.1 alone, and a websocket from another Origin (also one that only starts like ours) gets
    403 while our own Origin is upgraded."""
    port = _free_port()
    dry = subprocess.run(["make", "-n", "studio", f"PORT={port}"], cwd=ROOT, capture_output=True, text=True, check=True)
    line = next(x for x in dry.stdout.splitlines() if "panel serve" in x)
    args = shlex.split(line)
    assert args[args.index("--address") + 1] == "127.0.0.1"
    env = {**os.environ, "HWM_STUDIO_WORKSPACE": str(ROOT / "test-artifacts" / "ws-security")}
    server = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.time() + 120
        while not _listening(port):
            assert server.poll() is None, "panel serve exited"
            assert time.time() < deadline, "panel serve did not listen"
            time.sleep(0.5)
        assert set(_listening(port)) == {"127.0.0.1"}
        assert " 101 " in _handshake(port, f"http://127.0.0.1:{port}") + " "  # the control: ours is upgraded
        for origin in ("http://evil.example", f"http://127.0.0.1:{port}.evil.example", "null",
                       f"http://localhost:{port + 1}", f"https://127.0.0.1:{port}@evil.example"):  # fmt: skip
            assert " 403 " in _handshake(port, origin) + " ", origin
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.fixture
def layout(tmp_path: Path):
    """A workspace `ws`, a sibling `ws2` (same prefix) and an outside folder, each with a valid file."""
    q = np.zeros((2, 4, 1, 1))
    files = {}
    for folder in ("ws", "ws2", "outside"):
        (tmp_path / folder).mkdir()
        files[folder] = tmp_path / folder / "data.npz"
        np.savez(files[folder], q=q, p=q, dt=np.asarray(0.1))
    return Workspace(tmp_path / "ws"), tmp_path, files


def test_the_workspace_refuses_every_way_out(layout) -> None:
    ws, tmp, files = layout
    for name in ("../outside/data.npz", "..", "../ws2/data.npz", str(files["outside"]), "/etc/passwd", "a/b.npz",
                 "..data.npz", "", ".hidden.npz", "x" * 101 + ".npz", "data.npz\0.npz"):  # fmt: skip
        with pytest.raises(WorkspaceError):
            ws.path(name)
    (ws.root / "out.npz").symlink_to(files["outside"])  # a link pointing out
    (ws.root / "sibling.npz").symlink_to(files["ws2"])  # into the sibling whose name starts like ours
    (ws.root / "inside.npz").symlink_to(ws.root / "data.npz")  # a link within is fine
    for name in ("out.npz", "sibling.npz"):
        with pytest.raises(WorkspaceError, match="outside the workspace"):
            ws.load_data(name)
    assert ws.data_files() == ["data.npz", "inside.npz"]  # links pointing out are not even offered
    assert ws.load_data("inside.npz").n_trajectories == 2
    (tmp / "outside" / "run").mkdir()
    (tmp / "outside" / "run" / "weights.safetensors").write_bytes(b"x")
    (ws.root / "runs" / "evil").symlink_to(tmp / "outside" / "run")
    assert ws.runs() == []
    with pytest.raises(WorkspaceError):
        ws.run_path("evil")
    (ws.root / "runs" / "linked").mkdir()  # a run inside whose weights point out
    (ws.root / "runs" / "linked" / "weights.safetensors").symlink_to(tmp / "outside" / "run" / "weights.safetensors")
    with pytest.raises(WorkspaceError, match="outside the workspace"):
        ws.run_path("linked")


def test_uploads_are_capped_validated_and_never_replace_a_file(layout, monkeypatch) -> None:
    import hwm_studio.workspace as workspace_module

    ws, _, files = layout
    good = files["ws2"].read_bytes()
    assert ws.add_data("mine.npz", good) == "mine.npz"
    assert "mine.npz" in ws.data_files()
    with pytest.raises(WorkspaceError, match="already exists"):
        ws.add_data("mine.npz", b"other")
    assert ws.path("mine.npz").read_bytes() == good  # untouched
    with pytest.raises(DataFormatError, match=r"bad\.npz"):  # the message names the user's file
        ws.add_data("bad.npz", good[: len(good) // 2])
    for name in ("../x.npz", "x.txt", "/tmp/x.npz"):
        with pytest.raises(WorkspaceError):
            ws.add_data(name, good)
    monkeypatch.setattr(workspace_module, "MAX_UPLOAD_BYTES", len(good) - 1)
    with pytest.raises(WorkspaceError, match="limited to"):
        ws.add_data("big.npz", good)
    assert sorted(p.name for p in ws.root.iterdir()) == ["data.npz", "mine.npz", "runs"]  # no temp file left


def test_the_train_tab_uploads_through_the_workspace(layout) -> None:
    pytest.importorskip("panel")
    from hwm_studio.ui.train import TrainPanel, TrainSource

    ws, _, files = layout
    panel = TrainPanel(lambda: TrainSource("pendulum", 0), ws)
    panel.upload.param.update(filename="uploaded.npz", value=files["ws2"].read_bytes())
    assert panel.data.value == "uploaded.npz"
    assert "Uploaded" in panel.status.object
    assert panel.upload.value is None  # the bytes are not kept on the widget
    panel.upload.param.update(filename="broken.npz", value=b"not an npz")
    assert "Upload refused" in panel.status.object
    assert "broken.npz" in panel.status.object
    assert "broken.npz" not in ws.data_files()
    panel.close()


_UNPICKLERS = {("torch", "load"), ("pickle", "load"), ("pickle", "loads"), ("joblib", "load"), ("dill", "load"),
               ("torch.jit", "load"), ("jit", "load"), ("pickle", "Unpickler")}  # fmt: skip


def test_no_library_code_can_unpickle() -> None:
    """No call to torch.load, pickle.load(s), an Unpickler, or np.load without allow_pickle=False,
    anywhere in hwm_studio/ (read from the syntax tree, not grep)."""
    found = []
    for path in (ROOT / "hwm_studio").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                continue
            owner = ast.unparse(node.func.value)
            if (owner, node.func.attr) in _UNPICKLERS or (owner.endswith("torch") and node.func.attr == "load"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {ast.unparse(node.func)}")
            if owner in ("np", "numpy") and node.func.attr == "load":
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} np.load without allow_pickle=False")
    assert found == []


def test_loading_runs_and_files_never_calls_an_unpickler(tmp_path, monkeypatch) -> None:
    """The same at run time: with torch.load and pickle's loaders booby-trapped, a checkpoint, a data
    file and the CLI's eval all still work."""
    from hwm_studio.cli import main
    from hwm_studio.data.format import save_trajectories
    from hwm_studio.data.simulate import simulate
    from hwm_studio.pretrained import run_dir
    from hwm_studio.systems import get_system
    from hwm_studio.training.checkpoint import load_model

    data = save_trajectories(simulate(get_system("pendulum"), 2, 20, seed=0), tmp_path / "d.npz")

    def trap(*args, **kwargs):
        raise AssertionError("an unpickler was called")

    for owner, name in ((torch, "load"), (torch.serialization, "load"), (pickle, "load"), (pickle, "loads")):
        monkeypatch.setattr(owner, name, trap)
    monkeypatch.setattr(pickle, "Unpickler", trap)
    load_model(run_dir("pendulum", "hwm"))
    load_trajectories(data)
    assert main(["eval", str(run_dir("pendulum", "hwm")), "--data", str(data), "--json"]) == 0
