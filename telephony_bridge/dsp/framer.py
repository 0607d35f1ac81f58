"""Cut an outbound μ-law stream into exact Twilio frames (160 bytes = 20 ms)."""

from __future__ import annotations

from .mulaw import ULAW_SILENCE

__all__ = ["Framer"]


class Framer:
    """Accumulates μ-law bytes and hands out complete frames of ``frame_bytes``.

    ``push`` never returns a short frame; the remainder waits in :attr:`pending`
    until more audio arrives, or until ``flush`` pads it with μ-law silence
    (0xFF) at the end of an agent turn.
    """

    __slots__ = ("frame_bytes", "_buf")

    def __init__(self, frame_bytes: int = 160) -> None:
        if frame_bytes <= 0:
            raise ValueError("frame_bytes must be positive")
        self.frame_bytes = frame_bytes
        self._buf = bytearray()

    @property
    def pending(self) -> bytes:
        """Bytes held back because they do not fill a frame yet."""
        return bytes(self._buf)

    def push(self, ulaw: bytes) -> list[bytes]:
        """Add audio; return every complete frame now available, in order."""
        buf = self._buf
        buf += ulaw
        size = self.frame_bytes
        whole = len(buf) - len(buf) % size
        if whole == 0:
            return []
        frames = [bytes(buf[i : i + size]) for i in range(0, whole, size)]
        del buf[:whole]
        return frames

    def flush(self, pad: bool = True) -> bytes | None:
        """Return the held tail (padded to a full frame with silence if ``pad``), or None."""
        if not self._buf:
            return None
        tail = bytes(self._buf)
        self._buf.clear()
        if pad:
            tail += bytes([ULAW_SILENCE]) * (self.frame_bytes - len(tail))
        return tail

    def reset(self) -> None:
        """Drop whatever is held (barge-in)."""
        self._buf.clear()
