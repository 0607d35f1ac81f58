"""deploy/compose.yaml's topology with real processes: two ``telephony-bridge serve`` replicas,
a real redis-server (conftest.py) and a readiness-checking proxy (testing/proxy.py, in place of
Caddy). A rolling restart (SIGTERM one replica, start it again, then the other) while a call is
up: the call goes on to the end of its script, handed over through <Connect action>, never
greeted twice. And ``serve --workers 2``: two processes on one port, drained by one SIGTERM,
whose ``/metrics`` shows both, whichever answers."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from telephony_bridge.testing import CallerScript, CallerSimulator, GeminiEmulator, Scenario
from telephony_bridge.testing.local_call import DEMO_KEY, founder_turns, greetings, longest_line_silence
from telephony_bridge.testing.processes import free_port, replica_env, start_replica, stop
from telephony_bridge.testing.proxy import ReadyProxy
from telephony_bridge.testing.simulator import loopback_rewrite

PUBLIC = "https://bridge.test"


def _env(emulator_url: str, redis_url: str, tmp_path: Path, token: str) -> dict[str, str]:
    return replica_env(emulator_url, redis_url, token, tmp_path, demo_key=DEMO_KEY, public_url=PUBLIC,
                       DRAIN_FINISH_S="0", DRAIN_HANDOVER_S="20", DRAIN_MAX_S="30")


def test_a_call_goes_on_across_a_rolling_restart_of_both_replicas(redis_url, tmp_path):
    token = secrets.token_hex(16)

    async def scenario():
        emulator = GeminiEmulator(Scenario(), api_key=DEMO_KEY)
        await emulator.start()
        env = _env(emulator.url, redis_url, tmp_path, token)
        ports = [free_port(), free_port()]
        replicas = [start_replica(env, p, tmp_path / f"r{i}.log") for i, p in enumerate(ports)]
        proxy = ReadyProxy(ports)
        await proxy.start()
        loop = asyncio.get_running_loop()
        says: list[float] = []
        seen_unready: list[int] = []
        exits: list[int | None] = []

        async def rolling():
            while len(says) < 2:
                await asyncio.sleep(0.05)
            for i, port in enumerate(ports):
                replicas[i].send_signal(signal.SIGTERM)
                while proxy.ready.get(port):  # readiness goes first: no new connection for it
                    await asyncio.sleep(0.02)
                seen_unready.append(port)
                exits.append(await loop.run_in_executor(None, replicas[i].wait, 40))
                replicas[i] = await loop.run_in_executor(None, start_replica, env, port, tmp_path / f"r{i}b.log")
                while not proxy.ready.get(port):
                    await asyncio.sleep(0.05)

        def on_event(event):
            if event["kind"] == "say_start":
                says.append(event["t"])

        sim = CallerSimulator(f"{PUBLIC}/twiml", CallerScript.from_founder_turns(founder_turns()[:5], think_ms=300,
                                                                               quiet_ms=500),
                              auth_token=token, url_rewrite=loopback_rewrite(f"http://127.0.0.1:{proxy.port}", PUBLIC),
                              timeout=150, on_event=on_event)
        roller = asyncio.ensure_future(rolling())
        try:
            result = await sim.run()
            await asyncio.wait_for(roller, 60)
        finally:
            roller.cancel()
            await proxy.stop()
            for proc in replicas:
                stop(proc)
            await emulator.stop()
        return result, emulator, seen_unready, exits

    result, emulator, seen_unready, exits = asyncio.run(scenario())
    assert len(seen_unready) == 2 and exits == [0, 0], "both replicas drained and exited cleanly"
    logs = "".join(p.read_text() for p in tmp_path.glob("r*.log"))
    assert '"event":"drain.handover"' in logs, "the call was handed over by a draining replica"
    assert result.ended_by == "caller", result.twiml  # the whole script, answered to the end
    assert len(result.stream_sids) >= 2
    assert greetings(emulator) == 1
    assert any(s.resumed_from is not None for s in emulator.sessions)
    assert longest_line_silence(result) <= 1.5


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(x) for x in (task / "children").read_text().split()]
    return out


def _start_workers(tmp_path: Path, **extra: str) -> tuple[subprocess.Popen, int, list[int]]:
    """``serve --workers 2``: (the parent, its port, its two children listening on the port)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GEMINI_", "TWILIO_", "REDIS_"))}
    env.update(GEMINI_API_KEY=DEMO_KEY, PUBLIC_URL=PUBLIC, TWILIO_AUTH_TOKEN=secrets.token_hex(16),
               STREAM_TOKEN_SECRET=secrets.token_urlsafe(32), HOST="127.0.0.1", PORT=str(port),
               CALLS_DB=str(tmp_path / "calls.sqlite3"), RECORDINGS_DIR=str(tmp_path / "recordings"),
               REPORT="off", TTS_PHRASES="off")
    env.update(extra)
    with open(tmp_path / "workers.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "telephony_bridge", "serve", "--workers", "2"], env=env,
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    listening: list[int] = []
    while time.monotonic() < deadline and len(listening) < 2 and proc.poll() is None:
        time.sleep(0.2)
        listening = [c for c in _children(proc.pid) if _listens(c, port)]
    if len(listening) < 2:
        proc.kill()
        proc.wait()
        raise AssertionError((listening, (tmp_path / "workers.log").read_text()[-2000:]))
    return proc, port, listening


def test_serve_workers_runs_two_processes_on_one_port_and_stops_on_sigterm(tmp_path):
    proc, port, listening = _start_workers(tmp_path)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert not any(Path(f"/proc/{c}").exists() for c in listening)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_workers_do_not_outlive_a_killed_parent(tmp_path):
    # SIGKILL gives the parent no chance to stop its workers: they must go by themselves (and
    # not keep the port as orphans nobody restarts).
    proc, _, listening = _start_workers(tmp_path, DRAIN_FINISH_S="0", DRAIN_HANDOVER_S="1", DRAIN_MAX_S="2")
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(Path(f"/proc/{c}").exists() for c in listening):
        time.sleep(0.2)
    left = [c for c in listening if Path(f"/proc/{c}").exists()]
    for c in left:
        os.kill(c, signal.SIGKILL)
    assert not left, "workers outlived their killed parent"


def _scrape(port: int, operator: str) -> dict[str, float]:
    """One ``/metrics`` answer (a new connection each time: the kernel picks the worker)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {operator}"})
    with urllib.request.urlopen(request, timeout=5) as r:
        text = r.read().decode()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value  # over labels (and pids)
    return totals


def _bad_webhook(port: int) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/twiml", data=b"CallSid=CA0&From=%2B15550100",
                                     headers={"X-Twilio-Signature": "bm90LWl0", "Host": "bridge.test"})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def test_workers_metrics_show_the_whole_machine_whichever_worker_answers(tmp_path):
    # The autoscaler and the operator read /metrics through one port: each answer must count
    # every worker's calls and refusals, not only those of the worker the kernel picked.
    token, operator = secrets.token_hex(16), "operator-" + secrets.token_hex(8)

    async def scenario():
        emulator = GeminiEmulator(Scenario(), api_key=DEMO_KEY)
        await emulator.start()
        loop = asyncio.get_running_loop()
        proc, port, listening = await loop.run_in_executor(None, lambda: _start_workers(
            tmp_path, GEMINI_LIVE_URL=emulator.url, TWILIO_AUTH_TOKEN=token, OPERATOR_TOKEN=operator,
            SILENCE_DURATION_MS="500"))
        during: list[dict[str, float]] = []
        speaking = asyncio.Event()
        try:
            statuses = [await loop.run_in_executor(None, _bad_webhook, port) for _ in range(12)]

            async def scrape_during_the_call():
                await speaking.wait()
                for _ in range(8):
                    during.append(await loop.run_in_executor(None, _scrape, port, operator))

            def on_event(event):
                if event["kind"] == "say_start":
                    speaking.set()

            sim = CallerSimulator(f"{PUBLIC}/twiml", CallerScript.from_founder_turns(founder_turns()[:2], think_ms=300,
                                                                                   quiet_ms=500),
                                  auth_token=token, url_rewrite=loopback_rewrite(f"http://127.0.0.1:{port}", PUBLIC),
                                  timeout=60, on_event=on_event)
            scraper = asyncio.ensure_future(scrape_during_the_call())
            result = await sim.run()
            await asyncio.wait_for(scraper, 30)
            await asyncio.sleep(0.5)  # the call's end is counted after its socket closes
            after = [await loop.run_in_executor(None, _scrape, port, operator) for _ in range(8)]
            # A worker killed outright: the parent starts it again; its counts stay in the sum.
            os.kill(listening[0], signal.SIGKILL)
            deadline = time.monotonic() + 30
            now_listening = listening
            while time.monotonic() < deadline and (listening[0] in now_listening or len(now_listening) < 2):
                await asyncio.sleep(0.2)
                now_listening = [c for c in _children(proc.pid) if _listens(c, port)]
            assert len(now_listening) == 2 and listening[0] not in now_listening, now_listening
            restarted = [await loop.run_in_executor(None, _scrape, port, operator) for _ in range(8)]
        finally:
            proc.send_signal(signal.SIGTERM)
            await loop.run_in_executor(None, proc.wait, 30)
            await emulator.stop()
        return statuses, result, during, after, restarted

    statuses, result, during, after, restarted = asyncio.run(scenario())
    assert statuses == [403] * 12
    assert result.ended_by == "caller", result.twiml
    assert [m["bridge_active_calls"] for m in during] == [1.0] * 8
    assert [m["bridge_active_calls"] for m in after] == [0.0] * 8
    assert [m["bridge_calls_total"] for m in after] == [1.0] * 8
    assert [m["bridge_rejected_total"] for m in after] == [12.0] * 8
    assert [m["bridge_rejected_total"] for m in restarted] == [12.0] * 8
    assert [m["bridge_calls_total"] for m in restarted] == [1.0] * 8
    assert [m["bridge_active_calls"] for m in restarted] == [0.0] * 8
    log = (tmp_path / "workers.log").read_text()
    assert "starting it again" in log
    assert token not in log and operator not in log


def _listens(pid: int, port: int) -> bool:
    """The process holds a socket listening on ``port`` (its fds against /proc/net/tcp)."""
    inodes = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # gone since it was listed (the worker just killed, reaped)
        return False
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if int(cols[1].split(":")[1], 16) == port and cols[3] == "0A" and cols[9] in inodes:
            return True
    return False
