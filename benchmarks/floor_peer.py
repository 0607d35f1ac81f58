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


class FloorCall:
    """One call: caller frames in (inside data_received), Gemini frames in (a reader task)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: object, sid: str, gemini: GeminiLiveClient) -> None:
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
    args = ap.parse_args()

    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route, WebSocketRoute
    from websockets.asyncio.client import connect

    from telephony_bridge.media_socket import PROTOCOL_PATH, media_socket

    async def twiml(request):  # noqa: ANN001, ANN202
        return Response(f'<?xml version="1.0" encoding="UTF-8"?><Response><Connect><Stream '
                        f'url="ws://127.0.0.1:{args.port}/ws"></Stream></Connect></Response>',
                        media_type="application/xml")

    async def ready(request):  # noqa: ANN001, ANN202
        return Response("ok")

    async def stream(websocket):  # noqa: ANN001, ANN202
        await websocket.accept()
        await websocket.receive_text()  # connected
        sid = json.loads(await websocket.receive_text())["streamSid"]  # start
        loop = asyncio.get_running_loop()
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

    app = Starlette(routes=[Route("/twiml", twiml, methods=["POST"]), Route("/readyz", ready),
                            WebSocketRoute("/ws", stream)])
    print("READY", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", loop="uvloop", lifespan="off",
                ws=PROTOCOL_PATH, ws_per_message_deflate=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
