"""The inference server: FastAPI app serving TokenClassifier (int8 via slimnn, or float for comparison).

Start it the real way (see README.md):

    SLIMNN_SERVER_MODEL_DIR=/tmp/model SLIMNN_SERVER_VARIANT=int8 SLIMNN_SERVER_THREADS=1 \
        python -m uvicorn --app-dir examples/server app:app --host 127.0.0.1 --port 8000 --workers 2

Threads: each worker process runs the model on ONE inference thread (requests queue for it; parsing and
serialization stay on the event loop), and that thread uses SLIMNN_SERVER_THREADS intra-op threads for
torch and slimnn. So the process's compute threads are workers x threads: keep that <= the cores.

POST /predict {"tokens": [int, ...]} -> {"label": int, "logits": [float, ...], "kernel": str}
GET  /health -> {"status": "ok", "variant": ..., "threads": ..., "pid": ...}
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import torch
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

import slimnn
from model import load, vocab_size

MAX_TOKENS = 512


class PredictRequest(BaseModel):
    tokens: list[int] = Field(min_length=1, max_length=MAX_TOKENS)


class PredictResponse(BaseModel):
    label: int
    logits: list[float]
    kernel: str


STATE: dict = {}


def _setup() -> None:
    threads = int(os.environ.get("SLIMNN_SERVER_THREADS", "1"))
    torch.set_num_threads(threads)
    slimnn.set_num_threads(threads)
    variant = os.environ.get("SLIMNN_SERVER_VARIANT", "int8")
    model = load(os.environ["SLIMNN_SERVER_MODEL_DIR"], variant)
    STATE.update(model=model, variant=variant, threads=threads, vocab=vocab_size(model))


def _infer(tokens: list[int]) -> tuple[list[float], str]:
    model = STATE["model"]
    with torch.inference_mode():
        logits = model(torch.tensor(tokens, dtype=torch.int64))
    kernel = getattr(model.head, "last_kernel", None) or "torch"
    return logits.tolist(), kernel


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI):
    # One thread runs every inference of this worker: intra-op threads stay at SLIMNN_SERVER_THREADS
    # however many requests are in flight (a thread per request would multiply them).
    STATE["executor"] = ThreadPoolExecutor(max_workers=1, thread_name_prefix="infer")
    await asyncio.get_running_loop().run_in_executor(STATE["executor"], _setup)
    yield
    STATE["executor"].shutdown(wait=True)


app = FastAPI(title="slimnn int8 inference server example", lifespan=lifespan)


@app.get("/health")
async def health() -> dict:
    return {"status": "ok", "variant": STATE["variant"], "threads": STATE["threads"], "pid": os.getpid()}


@app.post("/predict", response_model=PredictResponse)
async def predict(req: PredictRequest) -> PredictResponse:
    vocab = STATE["vocab"]
    if any(t < 0 or t >= vocab for t in req.tokens):
        raise HTTPException(status_code=422, detail=f"token ids must be in [0, {vocab})")
    logits, kernel = await asyncio.get_running_loop().run_in_executor(STATE["executor"], _infer, req.tokens)
    return PredictResponse(label=max(range(len(logits)), key=logits.__getitem__), logits=logits, kernel=kernel)
