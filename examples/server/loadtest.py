"""Bounded load test of the example server on loopback: int8 (slimnn) vs float, the real way.

For each variant it starts ``uvicorn`` as a subprocess on 127.0.0.1 (a free port), waits for /health, sends
a fixed number of /predict requests from a fixed number of concurrent clients (keep-alive connections,
per-request timeouts), stops the server, and checks every answer:

- against the same model file run here in-process: exactly equal (the server adds no error of its own);
- int8 answers against the float model's: within a tolerance, with the share of equal labels reported.

It prints latency percentiles and throughput per variant and exits non-zero on any error or mismatch.

    python examples/server/build_model.py --out /tmp/slimnn-server-model
    python examples/server/loadtest.py --model-dir /tmp/slimnn-server-model --requests 400 --concurrency 8
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import math
import os
import pathlib
import random
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402

import slimnn  # noqa: E402
from model import load, vocab_size  # noqa: E402

# |int8 - float| <= ATOL + RTOL * max|float logits|, a bound set from the int8 error of these synthetic models:
# their largest deviation is 0.43 (full) and 0.32 (small) of it over 400 requests.
RTOL, ATOL = 0.08, 0.02


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(model_dir: str, variant: str, workers: int, threads: int, start_timeout: float = 180.0):
    """uvicorn serving app:app for one variant; yields (host, port); always stops it."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        SLIMNN_SERVER_MODEL_DIR=str(model_dir),
        SLIMNN_SERVER_VARIANT=variant,
        SLIMNN_SERVER_THREADS=str(threads),
        OMP_NUM_THREADS=str(threads),
    )
    cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(HERE), "app:app", "--host", "127.0.0.1",
           "--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-access-log"]
    log = open(pathlib.Path(model_dir) / f"server-{variant}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}; see {log.name}")
            try:
                status, body = request("127.0.0.1", port, "GET", "/health", None, timeout=5)
                if status == 200 and json.loads(body)["status"] == "ok":
                    break
            except OSError:
                pass
            if time.monotonic() - t0 > start_timeout:
                raise RuntimeError(f"server not healthy after {start_timeout}s; see {log.name}")
            time.sleep(0.2)
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def request(host, port, method, path, payload, timeout, conn=None):
    own = conn is None
    conn = conn or http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        body = None if payload is None else json.dumps(payload)
        headers = {} if body is None else {"Content-Type": "application/json"}
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        if own:
            conn.close()


def make_requests(n: int, vocab: int, seed: int = 0) -> list[list[int]]:
    rng = random.Random(seed)
    return [[rng.randrange(vocab) for _ in range(rng.randint(8, 64))] for _ in range(n)]


def run_load(host: str, port: int, inputs: list[list[int]], concurrency: int, timeout: float):
    """Sends every input once from `concurrency` clients. Returns (answers, latencies_s, errors, wall_s)."""
    answers: list = [None] * len(inputs)
    lat: list = [None] * len(inputs)
    errors: list[str] = []
    local = threading.local()
    lock = threading.Lock()
    conns: list = []  # every client connection, closed at the end

    def one(i: int) -> None:
        t0 = time.perf_counter()
        try:
            if getattr(local, "conn", None) is None:
                local.conn = http.client.HTTPConnection(host, port, timeout=timeout)
                with lock:
                    conns.append(local.conn)
            status, body = request(host, port, "POST", "/predict", {"tokens": inputs[i]}, timeout, local.conn)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
            answers[i] = json.loads(body)
        except Exception as e:  # noqa: BLE001  (every failure is counted and reported)
            with contextlib.suppress(Exception):
                local.conn.close()
            local.conn = None
            with lock:
                errors.append(f"request {i}: {type(e).__name__}: {e}")
            return
        lat[i] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(len(inputs))))
    wall = time.perf_counter() - t0
    for c in conns:
        c.close()
    return answers, [x for x in lat if x is not None], errors, wall


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(q / 100 * len(s)) - 1))]  # nearest rank


def local_logits(model, inputs):
    with torch.inference_mode():
        return [model(torch.tensor(t, dtype=torch.int64)) for t in inputs]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-dir", required=True)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--warmup", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per worker")
    p.add_argument("--variants", default="int8,float")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    if args.workers * args.threads > cores:
        print(f"warning: workers x threads = {args.workers * args.threads} > {cores} cores (oversubscribed)")

    torch.set_num_threads(args.threads)
    slimnn.set_num_threads(args.threads)
    models = {v: load(args.model_dir, v) for v in ("int8", "float")}
    vocab = vocab_size(models["float"])
    warm = make_requests(args.warmup, vocab, seed=1)
    inputs = make_requests(args.requests, vocab, seed=0)
    expected = {v: local_logits(m, inputs) for v, m in models.items()}

    results, failed = {}, False
    for variant in args.variants.split(","):
        with server(args.model_dir, variant, args.workers, args.threads) as (host, port):
            w_answers, _, w_errors, _ = run_load(host, port, warm, args.concurrency, args.timeout)
            answers, lat, errors, wall = run_load(host, port, inputs, args.concurrency, args.timeout)
        errors = w_errors + errors
        exact_mismatch, max_local, max_vs_float, labels_same = 0, 0.0, 0.0, 0
        for i, a in enumerate(answers):
            if a is None:
                continue
            got = torch.tensor(a["logits"], dtype=torch.float32)
            mine = expected[variant][i]
            d = (got - mine).abs().max().item()
            max_local = max(max_local, d)
            if not torch.equal(got, mine) or a["label"] != int(mine.argmax()):
                exact_mismatch += 1
            ref = expected["float"][i]
            dv = (got - ref).abs().max().item()
            max_vs_float = max(max_vs_float, dv / (ATOL + RTOL * ref.abs().max().item()))
            labels_same += a["label"] == int(ref.argmax())
        n_ok = sum(a is not None for a in answers)
        r = {
            "variant": variant, "requests": len(inputs), "answered": n_ok, "errors": len(errors),
            "exact_mismatches": exact_mismatch, "max_abs_diff_vs_local": max_local,
            "max_err_vs_float_over_tolerance": max_vs_float, "labels_equal_to_float": labels_same / max(n_ok, 1),
            "p50_ms": 1e3 * percentile(lat, 50), "p90_ms": 1e3 * percentile(lat, 90),
            "p99_ms": 1e3 * percentile(lat, 99), "throughput_rps": n_ok / wall, "wall_s": wall,
            "kernel": (answers[0] or {}).get("kernel") if answers else None,
            "workers": args.workers, "threads": args.threads, "concurrency": args.concurrency,
        }
        results[variant] = r
        bad = errors or exact_mismatch or n_ok != len(inputs) or max_vs_float > 1.0
        failed |= bool(bad)
        for e in errors[:5]:
            print("  error:", e)

    print(f"{'variant':8} {'requests':>8} {'errors':>6} {'exact':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'req/s':>7} {'err/tol':>7} {'labels':>6}")
    for r in results.values():
        print(f"{r['variant']:8} {r['requests']:8d} {r['errors']:6d} {r['requests'] - r['exact_mismatches']:6d} "
              f"{r['p50_ms']:8.2f} {r['p90_ms']:8.2f} {r['p99_ms']:8.2f} {r['throughput_rps']:7.1f} "
              f"{r['max_err_vs_float_over_tolerance']:7.3f} {r['labels_equal_to_float']:6.1%}")
    if "int8" in results and "float" in results:
        i8, fp = results["int8"], results["float"]
        print(f"int8 vs float: throughput x{i8['throughput_rps'] / fp['throughput_rps']:.2f}, "
              f"p50 x{fp['p50_ms'] / i8['p50_ms']:.2f} faster")
    print(f"{args.workers} worker(s) x {args.threads} thread(s) on {cores} cores, {args.concurrency} concurrent "
          f"clients, {len(inputs)} requests per variant (+{len(warm)} warm-up)")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    print("FAILED" if failed else "OK: all answers correct, no errors")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
