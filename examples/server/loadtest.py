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
from typing import Any, Optional

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
def server(model_dir: str, variant: str, workers: int, threads: int, start_timeout: float = 180.0,
           env_extra: Optional[dict] = None):
    """uvicorn serving app:app for one variant; yields (host, port); always stops it."""
    port = free_port()
    env = dict(os.environ)
    env.update(
        SLIMNN_SERVER_MODEL_DIR=str(model_dir),
        SLIMNN_SERVER_VARIANT=variant,
        SLIMNN_SERVER_THREADS=str(threads),
        SLIMNN_SERVER_WORKERS=str(workers),
        OMP_NUM_THREADS=str(threads),
    )
    env.update(env_extra or {})
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


# Malformed and oversized requests mixed into the load (--bad-fraction): (kind, body bytes or a callable
# making them, statuses the server must answer with). Each goes over a client's keep-alive connection like
# any other request, so a server that drops the connection after an error fails the next good request.
OVERSIZED_BYTES = 10 * 2**20  # the size that stalled every client for 4.5 s before the body limit


def bad_requests(vocab: int) -> list[tuple[str, Any, tuple[int, ...]]]:
    big = b'{"tokens": [' + b"1, " * (OVERSIZED_BYTES // 3) + b"1]}"
    # interleaved so that even a few bad requests include the oversized ones
    return [
        ("nan", b'{"tokens": [1, NaN, 2]}', (422,)),
        ("oversized", big, (413,)),
        ("bools", b'{"tokens": [true, false]}', (422,)),
        ("oversized_chunked", lambda: (big[i : i + 65536] for i in range(0, len(big), 65536)), (413,)),
        ("not_json", b"{not json", (400,)),
        ("infinity", b'{"tokens": [Infinity]}', (422,)),
        ("floats", b'{"tokens": [1.5, 2]}', (422,)),
        ("out_of_range", json.dumps({"tokens": [vocab]}).encode(), (422,)),
        ("huge_int", json.dumps({"tokens": [2**70]}).encode(), (422,)),
        ("too_many_tokens", json.dumps({"tokens": [1] * 10_000}).encode(), (422,)),
        ("extra_field", json.dumps({"tokens": [1], "x": 1}).encode(), (422,)),
    ]


def make_schedule(n_good: int, bad_fraction: float, n_kinds: int, seed: int = 0) -> list[tuple[str, int]]:
    """Good request indices with bad requests (cycling through the kinds) at random places, so that bad
    requests are ``bad_fraction`` of the total."""
    rng = random.Random(seed)
    n_bad = round(n_good * bad_fraction / (1 - bad_fraction)) if bad_fraction > 0 else 0
    items = [("good", i) for i in range(n_good)] + [("bad", j % n_kinds) for j in range(n_bad)]
    head, tail = items[:1], items[1:]  # start with a good one: the first request warms the connection
    rng.shuffle(tail)
    return head + tail


def send_raw(conn: http.client.HTTPConnection, body: Any) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"}
    if callable(body):
        conn.request("POST", "/predict", body=body(), headers=headers, encode_chunked=True)
    else:
        conn.request("POST", "/predict", body=body, headers=headers)
    r = conn.getresponse()
    return r.status, r.read()


def run_load(host: str, port: int, inputs: list[list[int]], concurrency: int, timeout: float,
             bad_fraction: float = 0.0, vocab: int = 0, seed: int = 0):
    """Sends every input once from `concurrency` clients, with malformed requests mixed in at
    `bad_fraction`. Returns (answers, latencies_s of the good requests, errors, wall_s, bad), where
    `bad` counts per kind how many malformed requests got an expected status and lists the others."""
    answers: list = [None] * len(inputs)
    lat: list = [None] * len(inputs)
    errors: list[str] = []
    kinds = bad_requests(vocab) if bad_fraction > 0 else []
    schedule = make_schedule(len(inputs), bad_fraction, len(kinds), seed)
    bad: dict[str, Any] = {"sent": 0, "expected_status": 0, "by_kind": {}, "unexpected": []}
    local = threading.local()
    lock = threading.Lock()
    conns: list = []  # every client connection, closed at the end

    def connection() -> http.client.HTTPConnection:
        if getattr(local, "conn", None) is None:
            local.conn = http.client.HTTPConnection(host, port, timeout=timeout)
            with lock:
                conns.append(local.conn)
        return local.conn

    def drop() -> None:
        with contextlib.suppress(Exception):
            local.conn.close()
        local.conn = None

    def one(item: tuple[str, int]) -> None:
        what, i = item
        if what == "bad":
            kind, body, ok = kinds[i]
            try:
                status, raw = send_raw(connection(), body)
                json.loads(raw)  # every error body is valid JSON
                good = status in ok
                why = f"HTTP {status}: {raw[:120]!r}"
            except Exception as e:  # noqa: BLE001
                drop()
                good, why = False, f"{type(e).__name__}: {e}"
            with lock:
                bad["sent"] += 1
                bad["expected_status"] += good
                bad["by_kind"][kind] = bad["by_kind"].get(kind, 0) + 1
                if not good:
                    bad["unexpected"].append(f"{kind}: {why}")
            return
        t0 = time.perf_counter()
        try:
            status, body = request(host, port, "POST", "/predict", {"tokens": inputs[i]}, timeout, connection())
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:200]!r}")
            answers[i] = json.loads(body)
        except Exception as e:  # noqa: BLE001  (every failure is counted and reported)
            drop()
            with lock:
                errors.append(f"request {i}: {type(e).__name__}: {e}")
            return
        lat[i] = time.perf_counter() - t0

    t0 = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, schedule))
    wall = time.perf_counter() - t0
    for c in conns:
        c.close()
    return answers, [x for x in lat if x is not None], errors, wall, bad


class SlowClients:
    """Runs beside the load: one client that sends valid requests a few bytes at a time (each takes about
    `trickle_s`; they must be answered correctly), and one that sends half a body and stalls (it must get
    408 and a closed connection once the server's body timeout passes, `stall_timeout_s`)."""

    def __init__(self, host: str, port: int, tokens: list[int], trickle_s: float = 1.0,
                 stall_timeout_s: float = 30.0) -> None:
        self.host, self.port, self.tokens = host, port, tokens
        self.trickle_s, self.stall_timeout_s = trickle_s, stall_timeout_s
        self.answers: list = []
        self.errors: list[str] = []
        self.stalled: Optional[str] = None
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._trickle, daemon=True),
                         threading.Thread(target=self._stall, daemon=True)]

    def __enter__(self) -> "SlowClients":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(self.stall_timeout_s + 60)

    def _head(self, n: int) -> bytes:
        return (f"POST /predict HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {n}\r\n\r\n").encode()

    def _trickle(self) -> None:
        body = json.dumps({"tokens": self.tokens}).encode()
        piece = max(1, len(body) // 20)
        with socket.create_connection((self.host, self.port), timeout=60) as s:  # one keep-alive connection
            f = s.makefile("rb")
            while not self._stop.is_set() or not self.answers:
                try:
                    s.sendall(self._head(len(body)))
                    for i in range(0, len(body), piece):
                        s.sendall(body[i : i + piece])
                        time.sleep(self.trickle_s / 20)
                    status, payload = _read_response(f)
                    if status != 200:
                        raise RuntimeError(f"HTTP {status}: {payload[:120]!r}")
                    self.answers.append(json.loads(payload))
                except Exception as e:  # noqa: BLE001
                    self.errors.append(f"slow client: {type(e).__name__}: {e}")
                    return

    def _stall(self) -> None:
        body = json.dumps({"tokens": self.tokens}).encode()
        try:
            with socket.create_connection((self.host, self.port), timeout=self.stall_timeout_s + 30) as s:
                s.sendall(self._head(len(body)) + body[: len(body) // 2])
                f = s.makefile("rb")
                status, payload = _read_response(f)
                closed = f.read(1) == b""
                self.stalled = f"HTTP {status}, connection {'closed' if closed else 'left open'}"
        except Exception as e:  # noqa: BLE001
            self.stalled = f"{type(e).__name__}: {e}"


def _read_response(f: Any) -> tuple[int, bytes]:
    status_line = f.readline()
    if not status_line:
        raise ConnectionError("server closed the connection")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        k, _, v = line.decode("latin-1").partition(":")
        if k.strip().lower() == "content-length":
            length = int(v.strip())
    return status, f.read(length)


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
    p.add_argument("--requests", type=int, default=400, help="good requests per variant")
    p.add_argument("--warmup", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--timeout", type=float, default=60.0, help="per request, seconds")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads per worker")
    p.add_argument("--variants", default="int8,float")
    p.add_argument("--bad-fraction", type=float, default=0.05,
                   help="share of malformed and oversized requests mixed into the load (0 for none)")
    p.add_argument("--slow-clients", type=int, choices=(0, 1), default=1,
                   help="run a trickling and a stalled client beside the load")
    p.add_argument("--body-timeout", type=float, default=5.0, help="the server's request-body deadline, s")
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
    slow_tokens = inputs[0]

    results, failed = {}, False
    for variant in args.variants.split(","):
        env_extra = {"SLIMNN_SERVER_BODY_TIMEOUT": str(args.body_timeout)}
        with server(args.model_dir, variant, args.workers, args.threads, env_extra=env_extra) as (host, port):
            w_answers, _, w_errors, _, _ = run_load(host, port, warm, args.concurrency, args.timeout)
            slow = SlowClients(host, port, slow_tokens, stall_timeout_s=args.body_timeout) if args.slow_clients \
                else contextlib.nullcontext()
            with slow:
                answers, lat, errors, wall, bad = run_load(host, port, inputs, args.concurrency, args.timeout,
                                                           args.bad_fraction, vocab, seed=2)
            # alive at the end: health, and a good request answered exactly
            try:
                hs, _ = request(host, port, "GET", "/health", None, timeout=30)
                ps, pb = request(host, port, "POST", "/predict", {"tokens": inputs[0]}, timeout=30)
                alive = hs == 200 and ps == 200 and torch.equal(
                    torch.tensor(json.loads(pb)["logits"]), expected[variant][0])
            except Exception:  # noqa: BLE001
                alive = False
        errors = w_errors + errors
        slow_ok = True
        slow_info: dict[str, Any] = {}
        if args.slow_clients:
            slow_errs = list(slow.errors)
            for a in slow.answers:
                if not torch.equal(torch.tensor(a["logits"]), expected[variant][0]):
                    slow_errs.append("slow client: wrong answer")
            slow_ok = not slow_errs and bool(slow.answers) and slow.stalled == "HTTP 408, connection closed"
            slow_info = {"slow_answers": len(slow.answers), "slow_errors": slow_errs, "stalled_client": slow.stalled}
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
        p50, p99 = 1e3 * percentile(lat, 50), 1e3 * percentile(lat, 99)
        r = {
            "variant": variant, "requests": len(inputs), "answered": n_ok, "errors": len(errors),
            "exact_mismatches": exact_mismatch, "max_abs_diff_vs_local": max_local,
            "max_err_vs_float_over_tolerance": max_vs_float, "labels_equal_to_float": labels_same / max(n_ok, 1),
            "p50_ms": p50, "p90_ms": 1e3 * percentile(lat, 90), "p99_ms": p99, "p99_over_p50": p99 / p50,
            "throughput_rps": n_ok / wall, "wall_s": wall,
            "kernel": (answers[0] or {}).get("kernel") if answers else None,
            "workers": args.workers, "threads": args.threads, "concurrency": args.concurrency,
            "bad_sent": bad["sent"], "bad_expected_status": bad["expected_status"], "bad_by_kind": bad["by_kind"],
            "bad_unexpected": bad["unexpected"][:10], "alive_at_end": alive, **slow_info,
        }
        results[variant] = r
        bad_run = (errors or exact_mismatch or n_ok != len(inputs) or max_vs_float > 1.0 or not alive
                   or bad["expected_status"] != bad["sent"] or not slow_ok)
        failed |= bool(bad_run)
        for e in (errors + bad["unexpected"] + slow_info.get("slow_errors", []))[:5]:
            print("  error:", e)

    print(f"{'variant':8} {'requests':>8} {'errors':>6} {'exact':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
          f"{'p99/p50':>7} {'req/s':>7} {'err/tol':>7} {'labels':>6} {'bad ok':>7} {'alive':>5}")
    for r in results.values():
        print(f"{r['variant']:8} {r['requests']:8d} {r['errors']:6d} {r['requests'] - r['exact_mismatches']:6d} "
              f"{r['p50_ms']:8.2f} {r['p90_ms']:8.2f} {r['p99_ms']:8.2f} {r['p99_over_p50']:7.2f} "
              f"{r['throughput_rps']:7.1f} {r['max_err_vs_float_over_tolerance']:7.3f} "
              f"{r['labels_equal_to_float']:6.1%} {r['bad_expected_status']:3d}/{r['bad_sent']:<3d} "
              f"{'yes' if r['alive_at_end'] else 'NO':>5}")
        if "stalled_client" in r:
            print(f"  {r['variant']}: slow client {r['slow_answers']} answers, stalled client: {r['stalled_client']}")
    if "int8" in results and "float" in results:
        i8, fp = results["int8"], results["float"]
        print(f"int8 vs float: throughput x{i8['throughput_rps'] / fp['throughput_rps']:.2f}, "
              f"p50 x{fp['p50_ms'] / i8['p50_ms']:.2f} faster")
    print(f"{args.workers} worker(s) x {args.threads} thread(s) on {cores} cores, {args.concurrency} concurrent "
          f"clients, {len(inputs)} good requests per variant (+{len(warm)} warm-up), bad fraction "
          f"{args.bad_fraction:g}, slow clients {'on' if args.slow_clients else 'off'}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    print("FAILED" if failed else "OK: all good answers correct, no errors, every bad request rejected cleanly")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
