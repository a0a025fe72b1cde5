"""The inference server example (examples/server), started the real way: uvicorn subprocesses on loopback,
a small bounded load test against the int8 and float servers, and malformed requests."""

from __future__ import annotations

import json
import os
import pathlib
import sys

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

SERVER_DIR = pathlib.Path(__file__).resolve().parents[1] / "examples" / "server"
sys.path.insert(0, str(SERVER_DIR))

import loadtest  # noqa: E402
import model as server_model  # noqa: E402

# Under ASan every server process is instrumented too: fewer requests.
REQUESTS = 24 if os.environ.get("SLIMNN_SANITIZED") else 80


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return server_model.build(tmp_path_factory.mktemp("server_model"), "small")


def test_load_test_int8_and_float_servers(model_dir):
    out = model_dir / "results.json"
    rc = loadtest.main(["--model-dir", str(model_dir), "--requests", str(REQUESTS), "--warmup", "4",
                        "--concurrency", "4", "--threads", "1", "--json", str(out)])
    results = json.loads(out.read_text())
    assert rc == 0, results
    for variant in ("int8", "float"):
        r = results[variant]
        assert r["errors"] == 0 and r["answered"] == REQUESTS and r["exact_mismatches"] == 0, r
        assert r["max_abs_diff_vs_local"] == 0.0
    assert results["int8"]["max_err_vs_float_over_tolerance"] <= 1.0
    assert results["int8"]["kernel"].startswith("qgemm_q8")  # the head ran a slimnn kernel
    assert results["float"]["kernel"] == "torch"


def test_bad_requests_get_clean_errors_and_the_server_stays_up(model_dir):
    vocab = server_model.SIZES["small"][0]
    bad = [
        b"{not json",
        json.dumps({"tokens": []}).encode(),
        json.dumps({"tokens": [vocab]}).encode(),
        json.dumps({"tokens": [-1, 2]}).encode(),
        json.dumps({"tokens": ["a"]}).encode(),
        json.dumps({"tokens": [1] * 10_000}).encode(),
        json.dumps({"tokens": [2**70]}).encode(),
        json.dumps({"tok": [1]}).encode(),
        json.dumps([1, 2]).encode(),
    ]
    with loadtest.server(str(model_dir), "int8", workers=1, threads=1) as (host, port):
        import http.client

        for body in bad:
            conn = http.client.HTTPConnection(host, port, timeout=30)
            conn.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            conn.close()
            assert r.status in (400, 422), (body[:60], r.status)
        status, body = loadtest.request(host, port, "POST", "/predict", {"tokens": [1, 2, 3]}, timeout=30)
        assert status == 200 and len(json.loads(body)["logits"]) == server_model.SIZES["small"][4]
        status, body = loadtest.request(host, port, "GET", "/health", None, timeout=30)
        assert status == 200 and json.loads(body)["status"] == "ok"
