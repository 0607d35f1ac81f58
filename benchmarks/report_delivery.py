"""Post-call report delivery under faults: attempts, delays, duplicates the receiver saw.

One real interview (the emulator, the bridge, the caller simulator) gives a real call record.
Then, per fault, a fresh :class:`~telephony_bridge.report.service.ReportService` (the bridge's
own, on a fresh SQLite file, or on a real redis-server for the "redis" rows) reports on that
record: it asks the emulator's ``generateContent`` (with the fault scripted there) and delivers to
a real loopback webhook receiver (with the fault scripted there). Printed per fault:

  report      generateContent attempts: outcome (and the delay before the next one, s)
  webhook     the worker's delivery attempts: outcome (and the backoff before the next, s);
              "killed": the worker holding the lease died mid-POST
  receiver    requests the receiver saw: its answer, and the gap since the previous one (s)
  accepted    deliveries the receiver accepted (by Idempotency-Key); dups: requests for a
              delivery it already had (answered 200, dropped)
  outbox      the delivery's final state and attempts (claims) in the store
  accepted@   from the report being queued to the arrival of the request the receiver accepted (s)
  settled     from the report being queued to the outbox saying delivered (s)

Targets: every row ends with exactly one accepted delivery and the outbox "delivered"; the
report is "ok" except where every attempt is off-schema ("failed", still delivered).

    python benchmarks/report_delivery.py [--rows all|name,name]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from telephony_bridge.gemini.backend import backend_from_settings  # noqa: E402
from telephony_bridge.report.backoff import RetryPolicy  # noqa: E402
from telephony_bridge.report.outbox import delivery_id  # noqa: E402
from telephony_bridge.report.service import POLICIES, ReportService  # noqa: E402
from telephony_bridge.settings import Settings  # noqa: E402
from telephony_bridge.store import RedisStore, SqliteStore  # noqa: E402
from telephony_bridge.testing import CallerScript, GeminiEmulator  # noqa: E402
from telephony_bridge.testing.gemini.rest import RestFault  # noqa: E402
from telephony_bridge.testing.local_call import DEMO_KEY, founder_turns, place_local_call  # noqa: E402
from telephony_bridge.testing.receivers import WebhookReceiver  # noqa: E402

SECRET = "bench-" + "s" * 32
#: The webhook's backoff as shipped, but its base shortened 2 s -> 1 s so the table runs in a minute.
WEBHOOK = replace(POLICIES["webhook"], base_s=1.0)
GEMINI = RetryPolicy(attempts=3, base_s=1.0, cap_s=30.0)

#: name -> (generateContent faults, receiver setup, description)
ROWS: dict[str, tuple[list[RestFault], dict[str, Any], str]] = {
    "none": ([], {}, "no fault"),
    "gemini-500": ([RestFault("500")], {}, "generateContent 500 once"),
    "gemini-429": ([RestFault("429", retry_after_s=3)], {}, "generateContent 429, Retry-After: 3"),
    "gemini-hang": ([RestFault("hang", hang_s=30)], {}, "generateContent never answers (timeout 2 s)"),
    "gemini-off-schema": ([RestFault("off_schema")], {}, "an answer off the schema once"),
    "gemini-off-schema-x3": ([RestFault("off_schema", times=3)], {}, "off the schema every attempt -> failed"),
    "receiver-down": ([], {"down_s": 5.0}, "receiver refuses connections for 5 s"),
    "receiver-503": ([], {"fail": [503, 503]}, "receiver answers 503 twice"),
    "receiver-429": ([], {"fail": [429], "retry_after": "4"}, "receiver 429, Retry-After: 4"),
    "receiver-slow": ([], {"slow_s": 2.5}, "receiver answers after 2.5 s (timeout 1 s), once"),
    "replica-killed": ([], {"kill": True}, "worker dies mid-POST (lease 3 s), another takes over"),
    "replica-killed-redis": ([], {"kill": True, "redis": True}, "the same on Redis"),
    "receiver-down-redis": ([], {"down_s": 5.0, "redis": True}, "receiver down 5 s, Redis store"),
}


async def real_record() -> dict[str, Any]:
    """One real local interview's call record (two founder answers)."""
    turns = founder_turns()
    texts = [t["text"] for t in json.loads((Path(__file__).resolve().parent.parent / "telephony_bridge" / "assets"
                                            / "founder" / "turns.json").read_text())["turns"]]
    from telephony_bridge.testing import Scenario

    call = await place_local_call(CallerScript.from_founder_turns(turns), Scenario(caller_texts=texts),
                                  silence_duration_ms=800, report=False)
    return call.core.record()


async def run_row(name: str, record: dict[str, Any], redis_url: str | None, workdir: Path) -> dict[str, Any]:
    faults, setup, _ = ROWS[name]
    emulator = GeminiEmulator(api_key=DEMO_KEY, rest=True)
    await emulator.start()
    assert emulator.rest is not None
    emulator.rest.faults.extend(RestFault(f.kind, f.times, f.retry_after_s, f.hang_s) for f in faults)
    from telephony_bridge.testing.processes import free_port

    receiver = WebhookReceiver(SECRET, port=free_port())
    sid = "CA" + secrets.token_hex(16)
    use_redis = bool(setup.get("redis"))
    if use_redis and not redis_url:
        return {"name": name, "skipped": "no redis-server"}
    db = str(workdir / f"{name}.sqlite3")

    def new_store() -> Any:
        return RedisStore(redis_url) if use_redis else SqliteStore(db)

    settings = Settings(gemini_api_key=DEMO_KEY, public_url="http://127.0.0.1", gemini_live_url=emulator.url,
                        gemini_rest_url=emulator.rest_url, twilio_auth_token="t" * 32,
                        report_webhook_url=receiver.url, report_webhook_secret=SECRET)
    kill = bool(setup.get("kill"))
    webhook_timeout = 1.0 if name == "receiver-slow" else (4.0 if kill else 10.0)
    store = new_store()
    await store.save_record(sid, {**record, "call_sid": sid})

    def service(st: Any) -> ReportService:
        return ReportService(settings, st, backend_from_settings(settings), policies={**POLICIES, "webhook": WEBHOOK},
                             client_policy=GEMINI, gemini_timeout_s=2.0, poll_s=0.2,
                             lease_s=3.0 if kill else None, webhook_timeout_s=webhook_timeout)

    first = service(store)
    second: ReportService | None = None
    receiver.answers = list(setup.get("fail", []))
    receiver.retry_after = setup.get("retry_after")
    if not setup.get("down_s"):
        await receiver.start()
    if setup.get("slow_s") or kill:
        receiver.delay_s = setup.get("slow_s", 2.0)
    await first.start()
    t0 = time.time()
    await first.queue(sid, None)
    did = delivery_id(sid, "webhook")
    deadline = time.monotonic() + 90
    brought_up = False
    try:
        while time.monotonic() < deadline:
            if setup.get("down_s") and not brought_up and time.time() - t0 >= setup["down_s"]:
                await receiver.start()
                brought_up = True
            if setup.get("slow_s") and receiver.received:
                receiver.delay_s = 0.0  # slow once: the retry finds it quick
            if kill and second is None and receiver.received:
                await first.stop()  # dies mid-POST: its lease (3 s) is left to run out
                receiver.delay_s = 0.0
                second = service(new_store())
                await second.start()
            if receiver.accepted:
                d = await (second or first).outbox.get(did)
                if d is not None and d.status != "pending":
                    break
            await asyncio.sleep(0.02)
        took = time.time() - t0
        await asyncio.sleep(1.5)  # a late duplicate, if any, arrives now
        history = [h for svc in (first, second) if svc is not None for h in svc.worker.history if h[0] == did]
        worker_store = (second or first).store
        d = await (second or first).outbox.get(did)
        report = await worker_store.get_report(sid)
    finally:
        for svc in (first, second):
            if svc is not None:
                await svc.stop()
                await svc.store.close()
        await receiver.stop()
        await emulator.stop()
    accepted_at = min((r.at for r in receiver.accepted.values()), default=None)
    gaps, prev = [], None
    for r in receiver.received:
        gaps.append(f"{r.status}" + ("" if prev is None else f"+{r.at - prev:.1f}"))
        prev = r.at
    return {
        "name": name, "report": report, "delivery": d, "receiver": gaps, "history": history, "killed": kill,
        "accepted": len(receiver.accepted), "dups": receiver.duplicates,
        "accepted_at": (accepted_at - t0) if accepted_at else None, "settled": took,
    }


def fmt_history(history: list[tuple[str, int, str, float | None]], killed: bool) -> str:
    out = ["killed"] if killed else []
    for _, _, outcome, delay in history:
        word = outcome.split(":", 1)[-1] if outcome.startswith(("retry:", "failed:")) else outcome
        out.append(word + (f"({delay:.1f})" if delay is not None else ""))
    return " ".join(out)


def fmt_report(report: dict[str, Any] | None) -> str:
    if not report:
        return "none"
    parts = [a["outcome"] + (f"({a['delay_s']:.1f})" if a.get("delay_s") is not None else "")
             for a in report.get("attempts", [])]
    return f"{report['status']}: " + " ".join(parts)


async def amain(rows: list[str]) -> int:
    import logging

    logging.getLogger("telephony_bridge").setLevel(logging.CRITICAL)  # retries are the point here
    from telephony_bridge.testing.processes import ProcessUnavailable, start_redis, stop

    record = await real_record()
    workdir = Path(tempfile.mkdtemp(prefix="tb-report-bench-"))
    redis_proc, redis_url = None, None
    if any(ROWS[r][1].get("redis") for r in rows):
        try:
            redis_proc, redis_url = start_redis(workdir)
        except ProcessUnavailable as exc:
            print(f"redis rows skipped: {exc}")
    results = []
    try:
        for name in rows:
            results.append(await run_row(name, record, redis_url, workdir))
    finally:
        if redis_proc is not None:
            stop(redis_proc)
    print(f"record: {len(record['transcript'])} transcript turns from a real local call; webhook backoff "
          f"{WEBHOOK.base_s:g} s doubling, jitter {WEBHOOK.jitter:.0%}, {WEBHOOK.attempts} attempts; generateContent "
          f"{GEMINI.attempts} attempts, base {GEMINI.base_s:g} s, timeout 2 s")
    head = f"{'fault':22} {'report: generateContent attempts':38} {'webhook attempts: outcome(delay s)':44} " \
           f"{'receiver saw: answer+gap s':28} " \
           f"{'accepted':>8} {'dups':>4} {'outbox':>15} {'accepted@ s':>11} {'settled s':>9}"
    print(head)
    print("-" * len(head))
    missed = []
    for r in results:
        if "skipped" in r:
            print(f"{r['name']:22} skipped: {r['skipped']}")
            continue
        d = r["delivery"]
        outbox = f"{d.status}/{d.attempts}" if d else "none"
        print(f"{r['name']:22} {fmt_report(r['report']):38} {fmt_history(r['history'], r['killed']):44} "
              f"{' '.join(r['receiver']):28} {r['accepted']:>8} "
              f"{r['dups']:>4} {outbox:>15} {r['accepted_at'] if r['accepted_at'] is None else round(r['accepted_at'], 1)!s:>11} "
              f"{r['settled']:>9.1f}")
        want = "failed" if r["name"] == "gemini-off-schema-x3" else "ok"
        if r["accepted"] != 1 or not d or d.status != "delivered" or (r["report"] or {}).get("status") != want:
            missed.append(r["name"])
    print()
    for name in rows:
        print(f"  {name:22} {ROWS[name][2]}")
    print("targets: one accepted delivery per row, outbox delivered, report ok (failed where every answer is off-schema)")
    if missed:
        print("MISSED: " + ", ".join(missed))
        return 1
    print("all targets met")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="all")
    args = ap.parse_args()
    rows = list(ROWS) if args.rows == "all" else args.rows.split(",")
    return asyncio.run(amain(rows))


if __name__ == "__main__":
    sys.exit(main())
