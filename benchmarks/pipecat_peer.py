"""The peer for benchmarks/load.py: pipecat serving Twilio Media Streams, as its users run it.

pipecat's Twilio pattern: a FastAPI app whose webhook answers ``<Connect><Stream>``, a websocket
route that reads Twilio's ``connected``/``start`` (``parse_telephony_websocket``), a
``FastAPIWebsocketTransport`` with pipecat's ``TwilioFrameSerializer``, and the pipeline of its
Gemini Live examples: ``transport.input() -> user aggregator -> GeminiLiveLLMService ->
transport.output() -> assistant aggregator``, an ``LLMRunFrame`` queued when the client connects. The Gemini Live service is
pointed at load.py's emulator through google-genai's ``HttpOptions(base_url=...)`` (pipecat's
``http_options`` argument). Run by load.py ``--pipecat PYTHON`` with a separate interpreter
(pipecat is never a dependency of the bridge):

    python -m venv /tmp/pcvenv && /tmp/pcvenv/bin/pip install "pipecat-ai[google,websocket]" fastapi uvicorn
    /tmp/pcvenv/bin/python benchmarks/pipecat_peer.py --port 8765 --gemini-url ws://127.0.0.1:9999/ws
"""


import argparse
import os
import logging
import sys
import urllib.parse


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--gemini-url", required=True, help="the emulator's ws:// URL")
    args = ap.parse_args()

    import uvicorn
    from fastapi import FastAPI, Request, WebSocket
    from fastapi.responses import Response
    from google.genai.types import HttpOptions
    from loguru import logger
    from pipecat.frames.frames import LLMRunFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import LLMContextAggregatorPair
    from pipecat.pipeline.runner import PipelineRunner
    from pipecat.pipeline.task import PipelineParams, PipelineTask
    from pipecat.runner.utils import parse_telephony_websocket
    from pipecat.serializers.twilio import TwilioFrameSerializer
    from pipecat.services.google.gemini_live.llm import GeminiLiveLLMService
    from pipecat.transports.websocket.fastapi import FastAPIWebsocketParams, FastAPIWebsocketTransport

    logger.remove()
    logger.add(sys.stderr, level=os.environ.get("PIPECAT_LOG", "WARNING"))
    logging.getLogger("uvicorn").setLevel(logging.WARNING)
    u = urllib.parse.urlsplit(args.gemini_url)
    base_url = f"{'https' if u.scheme == 'wss' else 'http'}://{u.netloc}"
    app = FastAPI()

    @app.post("/twiml")
    async def twiml(request: Request) -> Response:
        xml = (f'<?xml version="1.0" encoding="UTF-8"?><Response><Connect>'
               f'<Stream url="ws://127.0.0.1:{args.port}/ws"></Stream></Connect></Response>')
        return Response(xml, media_type="application/xml")

    @app.websocket("/ws")
    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        _, call_data = await parse_telephony_websocket(websocket)
        serializer = TwilioFrameSerializer(stream_sid=call_data["stream_id"], call_sid=call_data["call_id"],
                                           params=TwilioFrameSerializer.InputParams(auto_hang_up=False))
        transport = FastAPIWebsocketTransport(websocket=websocket, params=FastAPIWebsocketParams(
            audio_in_enabled=True, audio_out_enabled=True, add_wav_header=False, serializer=serializer))
        llm = GeminiLiveLLMService(api_key="demo-key", http_options=HttpOptions(base_url=base_url),
                                   system_instruction="You are a friendly interviewer.")
        context = LLMContext([{"role": "user", "content": "Say hello."}])
        aggregators = LLMContextAggregatorPair(context)
        task = PipelineTask(Pipeline([transport.input(), aggregators.user(), llm, transport.output(),
                                      aggregators.assistant()]),
                            params=PipelineParams(audio_in_sample_rate=8000, audio_out_sample_rate=8000))

        @transport.event_handler("on_client_connected")
        async def connected(transport, client) -> None:  # noqa: ANN001
            await task.queue_frames([LLMRunFrame()])

        @transport.event_handler("on_client_disconnected")
        async def gone(transport, client) -> None:  # noqa: ANN001
            await task.cancel()

        await PipelineRunner(handle_sigint=False).run(task)

    print("READY", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", ws="websockets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
