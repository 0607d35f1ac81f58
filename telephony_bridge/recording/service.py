"""Recordings in ``serve``: one :class:`CallRecording` per call, the sink, retention, recovery.

The asyncio side of :mod:`.core`: :meth:`CallRecording.flush` (the bridge calls it every
second) hands the final samples to the :class:`~.wavfile.StereoWav`, so a crash loses at most
about a second. With a bucket, the file is spooled under ``RECORDINGS_DIR/.spool`` and uploaded
when the call ends; spools a dead process left behind are uploaded at the next start
(:meth:`RecordingService.recover`). Recordings older than ``RECORDINGS_RETENTION_DAYS`` are
deleted at start and every few hours (:meth:`RecordingService.sweep`).

A call is not recorded when its stream carries the custom parameter ``record=off`` (the webhook
passes it on from ``/twiml?record=off``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..log import log_event
from .core import StereoRecorder
from .sinks import LocalSink, open_sink, spool_dir
from .wavfile import StereoWav

logger = logging.getLogger("telephony_bridge.recording")

#: The stream custom parameter (and webhook query parameter) that turns recording off for a call.
OPT_OUT_PARAMETER = "record"
_OFF = frozenset({"off", "no", "false", "0"})
#: A spool untouched this long belongs to no live call (a live one is written every second).
ORPHAN_AFTER_S = 30.0
SWEEP_EVERY_S = 6 * 3600.0


def opted_out(parameters: dict[str, str]) -> bool:
    return parameters.get(OPT_OUT_PARAMETER, "").strip().lower() in _OFF


class CallRecording:
    """One call's recording: the core deciding the samples, the file they go to."""

    __slots__ = ("call_sid", "recorder", "path", "wav", "started_at", "t0", "closed", "before_s")

    def __init__(self, call_sid: str, path: Path, *, t0: float) -> None:
        self.call_sid = call_sid
        self.recorder = StereoRecorder()
        self.path = path
        # A new stream of a call this process recorded already (a reconnect): go on in its file.
        self.wav = StereoWav(path, append=True)
        #: Seconds an earlier stream of the call left in the file (this stream's audio follows).
        self.before_s = self.wav.seconds
        self.started_at = time.time()
        #: The call core's clock origin (loop time): sample 0's place on the timeline.
        self.t0 = t0
        self.closed = False

    def flush(self) -> None:
        """Write what is final (called every second)."""
        if not self.closed:
            left, right = self.recorder.take()
            self.wav.append(left, right)

    def close(self) -> dict[str, Any]:
        """The call ended: everything written, the file closed. Returns the recording's facts."""
        if not self.closed:
            self.closed = True
            rec = self.recorder
            rec.finish()
            left, right = rec.take(final=True)
            self.wav.append(left, right)
            self.wav.close()
        first = self.recorder.first_at
        return {
            "call_sid": self.call_sid,
            "started_at": round(self.started_at, 3),
            "seconds": round(self.wav.seconds, 3),
            # Where this stream's timeline (t = 0 at its start) sits in the file.
            "offset_s": round(first - self.t0 - self.before_s, 3) if first is not None else 0.0,
            "rate": 8000,
            "channels": ["caller as received", "agent as heard"],
        }


class RecordingService:
    """Opens recordings for calls and keeps the sink tidy (see the module docstring)."""

    def __init__(self, folder: str, bucket_url: str | None = None, retention_days: float = 30.0) -> None:
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"RECORDINGS_DIR {folder}: cannot create it ({exc.strerror or type(exc).__name__}); "
                              "set RECORDINGS_DIR to a writable folder, or RECORDINGS=off") from None
        self.folder = folder
        self.sink = open_sink(folder, bucket_url)
        self.local = isinstance(self.sink, LocalSink)
        self.spool = Path(folder) if self.local else spool_dir(folder)
        self.retention_days = retention_days
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- per call ------------------------------------------------------------------------------

    def open(self, call_sid: str, parameters: dict[str, str], *, t0: float) -> CallRecording | None:
        """A recording for this call, or None (opted out)."""
        if opted_out(parameters):
            log_event(logger, "recording.opted_out", call_sid=call_sid)
            return None
        return CallRecording(call_sid, self.spool / f"{call_sid}.wav", t0=t0)

    async def open_call(self, call_sid: str, parameters: dict[str, str], *, t0: float,
                        resumed: Callable[[], Awaitable[bool]] | None = None) -> CallRecording | None:
        """:meth:`open` for a stream that starts. ``resumed()``: was the call already live (a
        reconnect, maybe on another replica)? Asked only with a bucket (the store is read once,
        and only then): what its earlier streams uploaded is brought back into the spool first,
        so this stream goes on in the same file instead of replacing it (the local folder has it
        already)."""
        path = self.spool / f"{call_sid}.wav"
        if resumed is not None and not self.local and not opted_out(parameters) and not path.exists() \
                and await resumed():
            try:
                found = await asyncio.to_thread(self.sink.fetch, call_sid, str(path))
                log_event(logger, "recording.resumed", call_sid=call_sid, earlier=found)
            except Exception as exc:  # the call goes on; this stream's part starts a new file
                path.unlink(missing_ok=True)
                log_event(logger, "recording.fetch_failed", logging.WARNING, call_sid=call_sid,
                          error=repr(exc)[:200])
        return self.open(call_sid, parameters, t0=t0)

    async def finish(self, recording: CallRecording) -> dict[str, Any]:
        """Close the file and put it in the sink. Returns the recording's facts."""
        meta = recording.close()
        meta["sink"] = self.sink.kind
        try:
            if self.local:
                self.sink.put(recording.call_sid, str(recording.path), meta)
            else:
                await asyncio.to_thread(self._upload, recording.call_sid, recording.path, meta)
            log_event(logger, "recording.saved", call_sid=recording.call_sid, seconds=meta["seconds"],
                      sink=self.sink.kind)
        except Exception as exc:  # the spool stays: the next start uploads it
            log_event(logger, "recording.upload_failed", logging.ERROR, call_sid=recording.call_sid,
                      error=repr(exc)[:200])
        return meta

    def _upload(self, call_sid: str, path: Path, meta: dict[str, Any]) -> None:
        self.sink.put(call_sid, str(path), meta)
        path.unlink(missing_ok=True)

    # -- housekeeping --------------------------------------------------------------------------

    async def recover(self, now: float | None = None) -> list[str]:
        """Upload the spools a dead process left (bucket sinks). Returns their CallSids."""
        if self.local:
            return []
        now = time.time() if now is None else now
        done = []
        for path in sorted(self.spool.glob("*.wav")):
            try:
                if now - path.stat().st_mtime < ORPHAN_AFTER_S:
                    continue
                sid = path.stem
                meta = {"call_sid": sid, "started_at": round(path.stat().st_mtime, 3),
                        "seconds": round(max(0, path.stat().st_size - 44) / 32000, 3),
                        "offset_s": 0.0, "rate": 8000, "recovered": True, "sink": self.sink.kind}
                await asyncio.to_thread(self._upload, sid, path, meta)
                done.append(sid)
                log_event(logger, "recording.recovered", call_sid=sid, seconds=meta["seconds"])
            except Exception as exc:
                log_event(logger, "recording.upload_failed", logging.ERROR, call_sid=path.stem,
                          error=repr(exc)[:200])
        return done

    async def sweep(self, now: float | None = None) -> int:
        """Delete recordings older than the retention (0 or less: keep forever)."""
        if self.retention_days <= 0:
            return 0
        now = time.time() if now is None else now
        gone = await asyncio.to_thread(self.sink.sweep, now - self.retention_days * 86400)
        if gone:
            log_event(logger, "recording.retention", deleted=gone, days=self.retention_days)
        return gone

    async def _housekeeping(self) -> None:
        await self.recover()
        while True:
            try:
                await self.sweep()
            except Exception as exc:
                log_event(logger, "recording.retention_failed", logging.ERROR, error=repr(exc)[:200])
            await asyncio.sleep(SWEEP_EVERY_S)

    def start(self) -> None:
        """Recover orphaned spools and sweep old recordings in the background."""
        task = asyncio.get_running_loop().create_task(self._housekeeping(), name="recordings")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- reading -------------------------------------------------------------------------------

    async def wav_path(self, call_sid: str) -> Path | None:
        """A local file with the call's recording (downloaded from the bucket if need be)."""
        path = self.sink.local_path(call_sid)
        if path is not None:
            return path
        cache = Path(tempfile.gettempdir()) / "telephony-bridge-recordings"
        cache.mkdir(exist_ok=True)
        dest = cache / f"{call_sid}.wav"
        if dest.is_file():
            return dest
        ok = await asyncio.to_thread(self.sink.fetch, call_sid, str(dest))
        return dest if ok else None

    async def meta(self, call_sid: str) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.sink.meta, call_sid)


def flush_every_second(recording: CallRecording) -> Any:
    """The bridge's task: write what is final once a second until cancelled."""
    async def loop() -> None:
        while not recording.closed:
            await asyncio.sleep(1.0)
            recording.flush()
    return loop()


def open_recordings(settings: Any) -> RecordingService | None:
    """The service the settings ask for (None: recordings off)."""
    folder = getattr(settings, "recordings_dir", None)
    if not folder:
        return None
    return RecordingService(folder, getattr(settings, "recordings_bucket", None),
                            getattr(settings, "recordings_retention_days", 30.0))


#: Added to the greeting prompt when the persona announces recordings and this call is recorded.
RECORDING_NOTICE = "Before anything else, tell the caller in one short sentence that this call is recorded."


def with_recording_notice(config: Any, persona: Any, recording: CallRecording | None) -> Any:
    """The call's config, its greeting prompt telling the agent to announce the recording."""
    if recording is None or not getattr(persona, "announce_recording", False):
        return config
    greeting = config.greeting_prompt
    config.greeting_prompt = f"{greeting}\n{RECORDING_NOTICE}" if greeting else RECORDING_NOTICE
    return config


def recording_parameters(query: Any) -> dict[str, str]:
    """Stream ``<Parameter>``s from the webhook's query: ``/twiml?record=off`` opts the call out."""
    value = query.get(OPT_OUT_PARAMETER) if query is not None else None
    return {OPT_OUT_PARAMETER: "off"} if value is not None and value.strip().lower() in _OFF else {}
