"""The API server goes away for a moment during an apply.

envctl talks to the real API server through a TCP forwarder run by the test (127.0.0.1, a
thread per direction). During the apply the forwarder drops every open connection and refuses
new ones for a moment, then forwards again. The apply must either converge (bounded retries
with backoff) or fail naming exactly which objects were and were not applied; a re-run then
converges.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import APP_OBJECTS, Env, assert_no_traceback, live
from kubernetes import client

pytestmark = pytest.mark.safety


class Forwarder:
    """A TCP forwarder to ``127.0.0.1:target`` that can drop everything for a while."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.dropping = threading.Event()
        self.closed = threading.Event()
        self.conns: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.dropped = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.dropping.is_set():
                self.dropped += 1
                conn.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                conn.close()
                continue
            with self.lock:
                self.conns.update((conn, upstream))
            for src, dst in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            with self.lock:
                self.conns.discard(src)
                self.conns.discard(dst)

    def drop(self) -> None:
        self.dropping.set()
        with self.lock:
            conns = list(self.conns)
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
            self.dropped += 1

    def restore(self) -> None:
        self.dropping.clear()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        self.drop()


@contextlib.contextmanager
def forwarder_kubeconfig(kubeconfig: str, where: Path) -> Iterator[tuple[Forwarder, str]]:
    text = Path(kubeconfig).read_text()
    m = re.search(r"https://127\.0\.0\.1:(\d+)", text)
    assert m, "the control plane's kubeconfig has no loopback server"
    fwd = Forwarder(int(m.group(1)))
    path = where / "via-forwarder.kubeconfig"
    path.write_text(text.replace(m.group(0), f"https://127.0.0.1:{fwd.port}"))
    try:
        yield fwd, str(path)
    finally:
        fwd.close()


LAYER_OBJECTS = {
    "layer.platform": [("Namespace", ""), ("ConfigMap", "platform-settings")],
    "layer.app": [(kind, name) for kind, name in APP_OBJECTS],
}


@pytest.mark.parametrize(
    ("trigger", "delay"),
    [
        pytest.param("layer.platform: applying", 0.0, id="platform-at-once"),
        pytest.param("layer.platform: applying", 0.3, id="platform-after-0.3s"),
        # layer.app applies in ~0.1 s: an outage started later would often hit no request at all
        pytest.param("layer.app:", 0.0, id="app-at-once"),
    ],
)
def test_apply_survives_or_reports_an_api_server_outage(
    example: Env, api_client: client.ApiClient, tmp_path: Path, trigger: str, delay: float
) -> None:
    # stacks first (they need no cluster), so the outage hits the layers and the lock
    pre = example.plan("--target", "stack.database")
    assert pre.returncode == 0, str(pre)
    stacks = example.apply(str(max(example.plans(), key=lambda p: p.stat().st_mtime)))
    assert stacks.returncode == 0, str(stacks)
    with forwarder_kubeconfig(example.kubeconfig, tmp_path) as (fwd, kc):
        plan = example.plan(env={"KUBECONFIG": kc})
        assert plan.returncode == 0, str(plan)
        plan_dir = str(max(example.plans(), key=lambda p: p.stat().st_mtime))
        proc = example.popen(
            "apply", "-e", example.name, plan_dir, "--auto-approve", env={"KUBECONFIG": kc}
        )
        lines: list[str] = []
        seen = threading.Event()

        def read_stderr() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if trigger in line:
                    seen.set()

        reader = threading.Thread(target=read_stderr, daemon=True)
        reader.start()
        assert seen.wait(60), f"never saw {trigger!r}:\n{''.join(lines)}"
        time.sleep(delay)
        fwd.drop()
        time.sleep(1.5)
        fwd.restore()
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait(timeout=180)
        reader.join(10)
        err = "".join(lines)
    run_text = (
        f"exit {proc.returncode}, outage {delay}s after {trigger!r}, {fwd.dropped} connections dropped\n"
        f"{out}\n{err}"
    )
    assert fwd.dropped > 0, f"the outage hit no connection: the test proved nothing\n{run_text}"
    assert "Traceback" not in out + err, run_text
    assert "internal error" not in out + err, run_text
    if proc.returncode == 0:
        for kind, name in LAYER_OBJECTS["layer.app"]:
            found = live(api_client, kind, example.namespace, name)
            assert found is not None, f"{kind} {name} missing\n{run_text}"
        cm = live(api_client, "ConfigMap", example.namespace, "platform-settings")
        assert cm is not None, run_text
    else:
        assert proc.returncode in (1, 5, 69), run_text
        failed = [n for n in LAYER_OBJECTS if re.search(rf"{re.escape(n)}:.*fail", out + err)]
        for node in failed:
            for kind, name in LAYER_OBJECTS[node]:
                exists = live(api_client, kind, example.namespace, name or example.namespace) is not None
                shown = name or example.namespace
                assert re.search(rf"{kind}\b[^\n]*{re.escape(shown)}", out + err), (
                    f"{node} failed but the output does not say whether {kind} {shown} "
                    f"(live: {exists}) was applied\n{run_text}"
                )
    again = example.apply("--lock-timeout", "60")
    assert_no_traceback(again)
    assert again.returncode == 0, f"the re-run after the outage did not converge\n{again}\nfirst: {run_text}"
    final = example.plan("--detailed-exitcode")
    assert final.returncode == 0, str(final)
