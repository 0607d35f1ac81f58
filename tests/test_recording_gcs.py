"""Recordings in Google Cloud Storage, against ``gcp-storage-emulator`` (started here, loopback).

A call through the real bridge with ``RECORDINGS_BUCKET=gs://...`` lands in the bucket under its
CallSid (the WAV and its facts), the spool is gone, the review route serves it back from the
bucket; a spool a killed process left behind is uploaded by the next start; retention deletes
what is older than the setting.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpx

from telephony_bridge.recording import RecordingService
from telephony_bridge.recording.wavfile import write_stereo
from telephony_bridge.testing import CallerScript, Hangup, Say, Wait
from telephony_bridge.testing.local_call import founder_turns, place_local_call

OPERATOR = "operator-token-for-gcs-0123456789"
BUCKET = "call-recordings"  # made by the fixture (conftest.py)


def test_a_call_recording_lands_in_the_bucket_under_its_sid(gcs: Any, tmp_path: Path) -> None:
    served: dict[str, Any] = {}

    async def read_back(bridge: Any, result: Any) -> None:
        base = bridge.settings.public_url
        async with httpx.AsyncClient(base_url=base) as http:
            r = await http.post("/calls/login", data={"token": OPERATOR, "next": "/calls"})
            assert r.status_code == 303
            http.cookies.set("tb_review", r.cookies["tb_review"], path="/calls")
            served["wav"] = (await http.get(f"/calls/{result.call_sid}/recording.wav")).content
            served["view"] = (await http.get(f"/calls/{result.call_sid}/view")).status_code

    spool = tmp_path / "spool"
    script = CallerScript([Say(founder_turns()[0]), Wait(1000), Hangup()])
    call = asyncio.run(place_local_call(script, recordings_dir=str(spool), operator_token=OPERATOR,
                                        recordings_bucket=f"gs://{BUCKET}/calls", while_up=read_back))
    sid = call.result.call_sid
    names = sorted(b.name for b in gcs.list_blobs(gcs.bucket(BUCKET)))
    assert names == [f"calls/{sid}.json", f"calls/{sid}.wav"]
    wav = gcs.bucket(BUCKET).blob(f"calls/{sid}.wav").download_as_bytes()
    assert wav[:4] == b"RIFF" and len(wav) > 44 + 4 * 8000 * 5
    assert served["wav"] == wav and served["view"] == 200
    assert not list((spool / ".spool").glob("*.wav"))  # uploaded, then removed


def test_an_orphaned_spool_is_uploaded_at_start_and_old_recordings_expire(gcs: Any, tmp_path: Path) -> None:
    service = RecordingService(str(tmp_path), f"gs://{BUCKET}/rec", retention_days=7)
    orphan = tmp_path / ".spool" / "CAdeadprocess0001.wav"
    write_stereo(orphan, b"\x10" * 8000, b"\xff" * 8000)
    fresh = tmp_path / ".spool" / "CAlivecall0002.wav"  # a live call's spool: written a moment ago
    write_stereo(fresh, b"\x10" * 800, b"\xff" * 800)
    old = time.time() - 120
    os.utime(orphan, (old, old))
    assert asyncio.run(service.recover()) == ["CAdeadprocess0001"]
    assert not orphan.exists() and fresh.exists()
    blob = gcs.bucket(BUCKET).blob("rec/CAdeadprocess0001.wav")
    assert blob.download_as_bytes() == write_stereo_bytes(tmp_path, b"\x10" * 8000, b"\xff" * 8000)
    # Retention: nothing is 7 days old yet; eight days from now, everything is.
    assert asyncio.run(service.sweep()) == 0
    assert asyncio.run(service.sweep(now=time.time() + 8 * 86400)) == 2  # the WAV and its facts
    assert list(gcs.list_blobs(gcs.bucket(BUCKET), prefix="rec/")) == []


def write_stereo_bytes(folder: Path, left: bytes, right: bytes) -> bytes:
    path = folder / "expected.wav"
    write_stereo(path, left, right)
    return path.read_bytes()


def test_a_call_resumed_on_another_replica_goes_on_in_the_same_bucket_object(gcs: Any, tmp_path: Path) -> None:
    import wave

    one = RecordingService(str(tmp_path / "replica1"), f"gs://{BUCKET}/calls")
    two = RecordingService(str(tmp_path / "replica2"), f"gs://{BUCKET}/calls")  # its own spool

    async def go() -> dict[str, Any]:
        first = await one.open_call("CAresumed0001", {}, t0=0.0)
        first.recorder.caller(b"\x10" * 8000, 0.5)
        await one.finish(first)

        async def live() -> bool:  # the store says the call is under way
            return True

        second = await two.open_call("CAresumed0001", {}, t0=100.0, resumed=live)
        second.recorder.caller(b"\x20" * 4000, 100.2)
        return await two.finish(second)

    meta = asyncio.run(go())
    data = gcs.bucket(BUCKET).blob("calls/CAresumed0001.wav").download_as_bytes()
    path = tmp_path / "got.wav"
    path.write_bytes(data)
    with wave.open(str(path), "rb") as w:
        assert w.getnframes() == 12000  # 1 s from the first replica, then 0.5 s from the second
    assert meta["seconds"] == 1.5 and meta["offset_s"] == -0.8
