"""GeminiLiveClient.send_nowait on a socket that died under it: no exception into the call."""

from __future__ import annotations

from websockets.protocol import State

from telephony_bridge.gemini.client import GeminiLiveClient


class _Transport:
    def is_closing(self) -> bool:
        return False  # uvloop's TLS transport still says open: only the TCP handle under it closed


class _Protocol:
    state = State.OPEN

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send_text(self, data: bytes) -> None:
        self.sent.append(data)


class _DeadUnderTls:
    """The websockets connection's surface send_nowait uses, as uvloop leaves it when the TCP
    socket under a TLS transport has closed and connection_lost has not run yet."""

    send_in_progress = None
    paused = False

    def __init__(self) -> None:
        self.transport = _Transport()
        self.protocol = _Protocol()

    def send_data(self) -> None:
        raise RuntimeError("unable to perform operation on <TCPTransport closed=True reading=False>; "
                           "the handler is closed")


def test_a_write_to_a_socket_that_closed_under_tls_is_lost_with_it_not_raised():
    ws = _DeadUnderTls()
    client = GeminiLiveClient(ws, b'{"setupComplete":{}}')  # type: ignore[arg-type]
    assert client.send_nowait('{"realtimeInput":{}}') is True  # gone with the socket: not queued again
    assert ws.protocol.sent == [b'{"realtimeInput":{}}']
