"""Recordings in an S3-compatible bucket (boto3), against moto's server (started here, loopback):
a call lands under its SID, retention deletes what is past the setting."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from telephony_bridge.recording import RecordingService
from telephony_bridge.testing import CallerScript, Hangup, Say, Wait
from telephony_bridge.testing.local_call import founder_turns, place_local_call

BUCKET = "call-recordings"  # made by the fixture (conftest.py)


def test_a_call_recording_lands_in_the_s3_bucket_under_its_sid(s3: Any, tmp_path: Path) -> None:
    script = CallerScript([Say(founder_turns()[0]), Wait(500), Hangup()])
    call = asyncio.run(place_local_call(script, recordings_dir=str(tmp_path), recordings_bucket=f"s3://{BUCKET}/calls/"))
    sid = call.result.call_sid
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
    assert keys == [f"calls/{sid}.json", f"calls/{sid}.wav"]
    wav = s3.get_object(Bucket=BUCKET, Key=f"calls/{sid}.wav")["Body"].read()
    assert wav[:4] == b"RIFF" and len(wav) > 44 + 4 * 8000 * 4
    service = RecordingService(str(tmp_path), f"s3://{BUCKET}/calls", retention_days=1)
    assert asyncio.run(service.meta(sid))["call_sid"] == sid
    assert asyncio.run(service.sweep()) == 0
    assert asyncio.run(service.sweep(now=time.time() + 2 * 86400)) == 2
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
