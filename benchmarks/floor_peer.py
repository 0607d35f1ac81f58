"""The floor for benchmarks/load.py: the thinnest Python relay of the same calls.

What a Python bridge cannot avoid for a Twilio <-> Gemini Live call, and nothing more. It runs the
bridge's own server stack (uvicorn on uvloop with the media stream's direct mode from
``telephony_bridge.media_socket``: frames cut inside ``data_received``, a call's writes in one
system call) and its Gemini client path (``websockets`` over TLS, frames written without a task),
and moves the same messages: every caller frame's JSON read and its base64 decoded, μ-law
turned into 16 kHz PCM and sent as one ``realtimeInput`` per 100 ms, every Gemini message read,
its audio decoded, taken to 8 kHz μ-law, cut into 20 ms frames and sent as Twilio media messages
no further than the playback lead ahead of the caller.

It has none of a phone agent: no echo gate, barge-in, marks, turns, latency or level tracking,
recording, resumption, stall watch, timeline or logs; ``audioop``'s linear interpolation (no
anti-alias filter) instead of the bridge's filters; the agent's frames topped up when a caller
frame arrives (Twilio's 20 ms frames are its only clock: no timers). load.py ``--floor`` runs it
on the same load as the bridge: the bridge's CPU over this one's is what the call itself costs
over Python's floor.

    python benchmarks/floor_peer.py --port 8765 --gemini-url wss://127.0.0.1:9999/ws
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from binascii import a2b_base64, b2a_base64
from collections import deque
from pathlib import Path

import audioop  # (audioop-lts on Python >= 3.13)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telephony_bridge.dsp import Framer  # noqa: E402
from telephony_bridge.gemini.client import GeminiLiveClient  # noqa: E402
from telephony_bridge.twilio.outbound import OutboundMessages  # noqa: E402

LEAD_S = 0.160
FRAME_S = 0.020
CHUNK_FRAMES = 5  # 100 ms of caller audio per realtimeInput, as the bridge sends it
AUDIO_HEAD = '{"realtimeInput":{"audio":{"mimeType":"audio/pcm;rate=16000","data":"'
SETUP = '{"setup":{"model":"models/gemini-3.8-live","generationConfig":{"responseModalities":["AUDIO"]}}}'


MAX_FRAME = 16 * 1024 * 1024


class PicowsSender:
    """The floor's Gemini sends through picows: one frame written per call, no await."""

    def __init__(self, transport: object) -> None:
        import picows

        self.transport = transport
        self.text = picows.WSMsgType.TEXT

    def send_nowait(self, message: str) -> bool:
        self.transport.send(self.text, message.encode())  # type: ignore[attr-defined]
        return True


class FloorCall:
    """One call: caller frames in (inside data_received), Gemini frames in (a reader task)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: object, sid: str, gemini: GeminiLiveClient | PicowsSender) -> None:
        self.loop = loop
        self.sock = sock
        self.media = OutboundMessages(sid).media  # the bridge's own message builder and send path
        self.gemini = gemini
        self.acc = bytearray()
        self.n = 0
        self.up_state = None
        self.down_state = None
        self.framer = Framer()
        self.frames: deque[bytes] = deque()
        self.out: deque[str] = deque()
        self.end = 0.0
        self.closed = loop.create_future()

    def on_frame(self, data: str | bytes) -> None:
        if not isinstance(data, str) or not data.startswith('{"event":"media"'):
            return  # marks, stop: nothing to do here
        i = data.find('"payload":"') + 11
        self.acc += a2b_base64(data[i:data.find('"', i)])
        self.n += 1
        if self.n == CHUNK_FRAMES:
            pcm, self.up_state = audioop.ratecv(audioop.ulaw2lin(self.acc, 2), 2, 1, 8000, 16000, self.up_state)
            self.acc.clear()
            self.n = 0
            message = AUDIO_HEAD + b2a_base64(pcm, newline=False).decode() + '"}}}'
            if not self.gemini.send_nowait(message):
                self.loop.create_task(self.gemini.send(message))
        frames = self.frames
        if frames:
            now = self.loop.time()
            if self.end < now:
                self.end = now
            elif self.end - now > LEAD_S / 2:
                return
            out, media = self.out, self.media
            while frames and self.end + FRAME_S - now <= LEAD_S:
                out.append(media(frames.popleft()))
                self.end += FRAME_S
            self.sock.write(out)

    def on_closed(self) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def agent(self, raw: str | bytes) -> None:
        if '"inlineData"' not in raw[:120]:
            return
        for part in json.loads(raw)["serverContent"]["modelTurn"]["parts"]:
            pcm, self.down_state = audioop.ratecv(a2b_base64(part["inlineData"]["data"]), 2, 1, 24000, 8000,
                                                  self.down_state)
            self.frames.extend(self.framer.push(audioop.lin2ulaw(pcm, 2)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--gemini-url", required=True, help="the emulator's ws:// or wss:// URL")
    ap.add_argument("--gemini-client", choices=("websockets", "picows"), default="websockets",
                    help="the Gemini socket's library: websockets (the bridge's) or picows (Cython; a lever measured "
                         "in load.py --floor-picows)")
    ap.add_argument("--twilio-server", choices=("uvicorn", "picows"), default="uvicorn",
                    help="the media stream's server: uvicorn with the bridge's direct mode, or picows on the next "
                         "port (the TwiML points the stream there; implies --gemini-client picows)")
    args = ap.parse_args()
    if args.twilio_server == "picows":
        args.gemini_client = "picows"
    stream_port = args.port + 1 if args.twilio_server == "picows" else args.port

    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route, WebSocketRoute
    from websockets.asyncio.client import connect

    from telephony_bridge.media_socket import PROTOCOL_PATH, media_socket

    async def twiml(request):  # noqa: ANN001, ANN202
        return Response(f'<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream '
                        f'url="ws://127.0.0.1:{stream_port}/ws"></Stream></Connect></Response>',
                        media_type="application/xml")

    async def ready(request):  # noqa: ANN001, ANN202
        return Response("ok")

    async def stream(websocket):  # noqa: ANN001, ANN202
        await websocket.accept()
        await websocket.receive_text()  # connected
        sid = json.loads(await websocket.receive_text())["streamSid"]  # start
        loop = asyncio.get_running_loop()
        if args.gemini_client == "picows":
            return await stream_picows(websocket, sid, loop)
        async with connect(args.gemini_url, compression=None, max_size=None, ping_interval=None) as gemini:
            await gemini.send(SETUP)
            sock = media_socket(websocket)
            call = FloorCall(loop, sock, sid, GeminiLiveClient(gemini, await gemini.recv()))  # (setupComplete)
            sock.start(call.on_frame, call.on_closed)

            async def read() -> None:
                recv = gemini.recv
                try:
                    while True:
                        call.agent(await recv())
                except Exception:  # the connection closed
                    call.on_closed()

            reader = loop.create_task(read())
            await call.closed
            reader.cancel()
            sock.stop()

    async def gemini_picows(loop):  # noqa: ANN001, ANN202
        """A picows connection to the emulator after setupComplete: (transport, listener)."""
        import ssl

        import picows

        class Listener(picows.WSListener):
            call: FloorCall | None = None
            first: asyncio.Future = loop.create_future()

            def on_ws_frame(self, transport, frame) -> None:  # noqa: ANN001
                if frame.msg_type in (picows.WSMsgType.TEXT, picows.WSMsgType.BINARY):
                    text = frame.get_payload_as_utf8_text()
                    if self.call is not None:
                        self.call.agent(text)
                    elif not self.first.done():
                        self.first.set_result(text)
                elif frame.msg_type is picows.WSMsgType.CLOSE:
                    transport.disconnect()

            def on_ws_disconnected(self, transport) -> None:  # noqa: ANN001
                if self.call is not None:
                    self.call.on_closed()

        tls = ssl.create_default_context() if args.gemini_url.startswith("wss:") else None
        transport, listener = await picows.ws_connect(Listener, args.gemini_url, ssl_context=tls,
                                                     max_frame_size=MAX_FRAME)
        transport.send(picows.WSMsgType.TEXT, SETUP.encode())
        await listener.first  # setupComplete
        return transport, listener

    async def stream_picows(websocket, sid, loop):  # noqa: ANN001, ANN202
        transport, listener = await gemini_picows(loop)
        sock = media_socket(websocket)
        call = FloorCall(loop, sock, sid, PicowsSender(transport))
        listener.call = call
        sock.start(call.on_frame, call.on_closed)
        await call.closed
        transport.disconnect()
        sock.stop()

    app = Starlette(routes=[Route("/twiml", twiml, methods=["POST"]), Route("/readyz", ready),
                            WebSocketRoute("/ws", stream)])
    if args.twilio_server == "uvicorn":
        print("READY", flush=True)
        uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", loop="uvloop", lifespan="off",
                    ws=PROTOCOL_PATH, ws_per_message_deflate=False)
        return 0

    import picows
    import uvloop

    class PicowsSocket:
        """The media stream's writes through picows: a frame each (picows has no batch send)."""

        def __init__(self, transport) -> None:  # noqa: ANN001
            self.transport = transport

        def write(self, messages: deque[str]) -> bool:
            send, text = self.transport.send, picows.WSMsgType.TEXT
            for m in messages:
                send(text, m.encode())
            messages.clear()
            return True

    class TwilioListener(picows.WSListener):
        def __init__(self) -> None:
            self.call: FloorCall | None = None
            self.n = 0
            self.transport = None

        def on_ws_connected(self, transport) -> None:  # noqa: ANN001
            self.transport = transport

        def on_ws_frame(self, transport, frame) -> None:  # noqa: ANN001
            if frame.msg_type is picows.WSMsgType.TEXT:
                if self.call is not None:
                    self.call.on_frame(frame.get_payload_as_utf8_text())
                    return
                self.n += 1
                if self.n == 2:  # start
                    sid = json.loads(frame.get_payload_as_utf8_text())["streamSid"]
                    asyncio.get_running_loop().create_task(self.open(sid))
            elif frame.msg_type is picows.WSMsgType.CLOSE:
                transport.disconnect()

        async def open(self, sid: str) -> None:
            loop = asyncio.get_running_loop()
            gemini, listener = await gemini_picows(loop)
            self.call = listener.call = FloorCall(loop, PicowsSocket(self.transport), sid, PicowsSender(gemini))
            self.gemini = gemini

        def on_ws_disconnected(self, transport) -> None:  # noqa: ANN001
            if self.call is not None:
                self.gemini.disconnect()

    async def serve() -> None:
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning",
                                               lifespan="off", ws="none"))
        await picows.ws_create_server(lambda request: TwilioListener(), "127.0.0.1", stream_port,
                                      max_frame_size=MAX_FRAME)
        print("READY", flush=True)
        await server.serve()

    uvloop.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
