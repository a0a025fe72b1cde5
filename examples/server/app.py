"""The inference server: FastAPI app serving TokenClassifier (int8 via slimnn, or float for comparison).

Start it the real way (see README.md):

    SLIMNN_SERVER_MODEL_DIR=/tmp/model SLIMNN_SERVER_VARIANT=int8 SLIMNN_SERVER_THREADS=1 \
        SLIMNN_SERVER_WORKERS=2 \
        python -m uvicorn --app-dir examples/server app:app --host 127.0.0.1 --port 8000 --workers 2

Hardened the way a service facing clients it did not choose must be:

- **Bounded requests.** A body larger than ``SLIMNN_SERVER_MAX_BODY`` bytes (default 64 KiB; the largest
  valid request, 512 tokens, is under 4 KiB) gets 413 *before* it is read: a declared Content-Length is
  checked on the headers alone, a chunked body is counted while it arrives and cut off at the limit. A body
  that does not arrive within ``SLIMNN_SERVER_BODY_TIMEOUT`` seconds (default 10) gets 408 and the
  connection is closed (a stalled client would otherwise hold it forever). Parsing a bounded body on the
  event loop costs at most about a millisecond, so no request can stall the others.
- **Inference off the event loop**, on a pool of ``SLIMNN_SERVER_INFER_THREADS`` threads per worker (default
  ``cores // (workers x threads)``, at least 1), each running torch and slimnn with ``SLIMNN_SERVER_THREADS``
  intra-op threads: the server's compute threads are workers x pool x threads <= cores, the documented
  guidance (docs/reliability.md). Requests queue for the pool instead of each starting its own OpenMP team;
  more than ``SLIMNN_SERVER_MAX_QUEUE`` waiting requests (default 256) get 503 instead of unbounded memory.
- **Strict input types.** ``{"tokens": [int, ...]}`` and nothing else: booleans, floats, strings, NaN and
  Infinity (Python's json accepts them; JSON does not), unknown fields and out-of-range ids are 422; a body
  that is not JSON is 400. Error bodies are always valid JSON and never echo the input back.
- **Errors never drop the connection.** Every error is an ordinary response on the same keep-alive
  connection (uvicorn discards the unread rest of a rejected body and serves the next request); an
  unexpected exception becomes a JSON 500 instead of reaching uvicorn, which would close the connection.
  Only the 408 closes it, on purpose.

POST /predict {"tokens": [int, ...]} -> {"label": int, "logits": [float, ...], "kernel": str}
GET  /health -> {"status": "ok", "variant": ..., "threads": ..., "infer_threads": ..., "pid": ...}
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

import slimnn
from model import load, vocab_size

MAX_TOKENS = 512
MAX_BODY_BYTES = int(os.environ.get("SLIMNN_SERVER_MAX_BODY", str(64 * 1024)))
BODY_TIMEOUT_S = float(os.environ.get("SLIMNN_SERVER_BODY_TIMEOUT", "10"))
MAX_QUEUE = int(os.environ.get("SLIMNN_SERVER_MAX_QUEUE", "256"))

log = logging.getLogger("slimnn.server")


class PredictRequest(BaseModel):
    # strict: 1.0, True and "1" are not token ids; extra fields are a client bug worth reporting
    model_config = ConfigDict(extra="forbid", strict=True)
    tokens: list[StrictInt] = Field(min_length=1, max_length=MAX_TOKENS)


class PredictResponse(BaseModel):
    label: int
    logits: list[float]
    kernel: str


STATE: dict = {}


def infer_pool_size() -> int:
    """Inference threads per worker: SLIMNN_SERVER_INFER_THREADS, else cores // (workers x threads), >= 1."""
    explicit = os.environ.get("SLIMNN_SERVER_INFER_THREADS")
    if explicit:
        return max(1, int(explicit))
    threads = int(os.environ.get("SLIMNN_SERVER_THREADS", "1"))
    workers = int(os.environ.get("SLIMNN_SERVER_WORKERS", "1"))
    return max(1, (os.cpu_count() or 1) // max(1, workers * threads))


def _thread_init() -> None:
    # Each inference thread sets its own intra-op count (OpenMP's is a per-thread setting).
    threads = int(os.environ.get("SLIMNN_SERVER_THREADS", "1"))
    torch.set_num_threads(threads)
    slimnn.set_num_threads(threads)


def _setup() -> None:
    variant = os.environ.get("SLIMNN_SERVER_VARIANT", "int8")
    model = load(os.environ["SLIMNN_SERVER_MODEL_DIR"], variant)
    STATE.update(model=model, variant=variant, threads=int(os.environ.get("SLIMNN_SERVER_THREADS", "1")),
                 vocab=vocab_size(model))


def _infer(tokens: list[int]) -> tuple[list[float], str]:
    model = STATE["model"]
    with torch.inference_mode():
        logits = model(torch.tensor(tokens, dtype=torch.int64))
    kernel = getattr(model.head, "last_kernel", None) or "torch"
    return logits.tolist(), kernel


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    n = infer_pool_size()
    STATE["executor"] = ThreadPoolExecutor(max_workers=n, thread_name_prefix="infer", initializer=_thread_init)
    STATE["infer_threads"] = n
    STATE["queued"] = 0
    STATE["lock"] = threading.Lock()
    await asyncio.get_running_loop().run_in_executor(STATE["executor"], _setup)
    yield
    STATE["executor"].shutdown(wait=True)


fastapi_app = FastAPI(title="slimnn int8 inference server example", lifespan=lifespan)


def _error(status: int, detail: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail})


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


@fastapi_app.get("/health")
async def health() -> dict:
    return {"status": "ok", "variant": STATE["variant"], "threads": STATE["threads"],
            "infer_threads": STATE["infer_threads"], "pid": os.getpid()}


@fastapi_app.post("/predict", response_model=PredictResponse)
async def predict(request: Request):
    body = await request.body()  # already read and bounded by BoundedRequests
    try:
        obj = json.loads(body, parse_constant=_reject_constant)
    except ValueError as e:  # JSONDecodeError, UnicodeDecodeError and NaN/Infinity are all ValueErrors
        if "is not a JSON number" in str(e):
            return _error(422, str(e))
        return _error(400, f"body is not JSON: {e}")
    except RecursionError:
        return _error(422, "JSON nested too deeply")
    try:
        req = PredictRequest.model_validate(obj)
    except ValidationError as e:
        # no input values in the answer: they may be huge, or not JSON-encodable
        return _error(422, e.errors(include_url=False, include_context=False, include_input=False))
    vocab = STATE["vocab"]
    if any(t < 0 or t >= vocab for t in req.tokens):
        return _error(422, f"token ids must be in [0, {vocab})")
    with STATE["lock"]:
        if STATE["queued"] >= MAX_QUEUE:
            return JSONResponse(status_code=503, content={"detail": "server busy"}, headers={"Retry-After": "1"})
        STATE["queued"] += 1
    try:
        logits, kernel = await asyncio.get_running_loop().run_in_executor(STATE["executor"], _infer, req.tokens)
    finally:
        with STATE["lock"]:
            STATE["queued"] -= 1
    return PredictResponse(label=max(range(len(logits)), key=logits.__getitem__), logits=logits, kernel=kernel)


class _TooLarge(Exception):
    pass


class BoundedRequests:
    """ASGI wrapper: reads each request body under a size limit and a deadline before the app sees it,
    and turns any exception of the app into a JSON 500 on the same connection."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked_send(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            try:
                n = int(declared)
            except ValueError:
                await _send_json(send, 400, "invalid Content-Length")
                return
            if n > MAX_BODY_BYTES:
                # answered before reading: uvicorn discards the rest of the body and keeps the connection
                await _send_json(send, 413, f"request body of {n} bytes is over the {MAX_BODY_BYTES}-byte limit")
                return
        try:
            body = await asyncio.wait_for(_read_body(receive), BODY_TIMEOUT_S)
        except _TooLarge:
            await _send_json(send, 413, f"request body is over the {MAX_BODY_BYTES}-byte limit")
            return
        except asyncio.TimeoutError:
            await _send_json(send, 408, f"request body not received within {BODY_TIMEOUT_S:g} s", close=True)
            return
        if body is None:  # client went away
            return
        delivered = False

        async def replay() -> dict:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        try:
            await self.app(scope, replay, tracked_send)
        except Exception:  # noqa: BLE001  (logged; the client gets a JSON 500 and keeps its connection)
            log.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if not started:
                await _send_json(send, 500, "internal server error")


async def _read_body(receive: Any) -> bytes | None:
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _TooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_json(send: Any, status: int, detail: str, close: bool = False) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


app = BoundedRequests(fastapi_app)
