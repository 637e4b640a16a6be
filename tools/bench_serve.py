"""Load test of the search service on loopback: latency percentiles, throughput, errors, memory.

    python tools/bench_serve.py --model_dir=DIR [--clients 16] [--requests 2000]

Starts `python -m daah_tf.serve --model_dir=DIR` on a free 127.0.0.1 port, waits for
/healthz, sends a warm-up round, then for each kind (text queries, image uploads) runs
`--clients` concurrent clients (threads, one keep-alive connection each) until `--requests`
requests are answered, and stops. Prints per kind: requests, errors (any non-200), p50 / p99
latency (ms, client side) and queries/s; then the server's RSS before, between and after the
runs (MB, from /proc), and the server's own p50 text latency from a sequential run of
`--sequential` queries (one client: the "after warm-up" latency of a lone user).
Last line: serve_text_p50_ms=<x> errors=<n> rss_growth_mb=<m>.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request

import numpy as np

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = [f"w{c}x{j}" for c in range(8) for j in range(6)] + [f"noise{j}" for j in range(60)]


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as stream:
        for line in stream:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_server(model_dir, port):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    process = subprocess.Popen([sys.executable, "-m", "daah_tf.serve", f"--model_dir={model_dir}",
                                f"--port={port}"], cwd=REPO_ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {process.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
                return process, json.loads(reply.read())
        except OSError:
            time.sleep(0.25)  # polling for readiness; the answer decides
    process.kill()
    raise SystemExit("the server did not become ready in 600 s")


def make_requests(kind, n, info, rng, port):
    """n (method, path, body, headers) tuples of one kind."""
    if kind == "text":
        out = []
        for _ in range(n):
            text = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 8))))
            body = json.dumps({"text": text, "k": 10}).encode()
            out.append(("POST", "/v1/search/text", body, {"Content-Type": "application/json"}))
        return out
    pictures = []
    if info.get("thumbnails") and info.get("takes_raw_text"):  # database pictures as queries
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/search/text",
            json.dumps({"text": "w0x0 w1x1 w2x2", "k": 40}).encode(),
            {"Content-Type": "application/json"})
        with urllib.request.urlopen(request) as reply:
            ids = [hit["id"] for hit in json.loads(reply.read())["hits"]]
        for item_id in ids:
            url = f"http://127.0.0.1:{port}/v1/thumbnails/{item_id}?size=48"
            with urllib.request.urlopen(url) as reply:
                pictures.append(reply.read())
    if not pictures:
        from PIL import Image

        stream = io.BytesIO()
        Image.new("RGB", (48, 48), (120, 30, 30)).save(stream, "PNG")
        pictures = [stream.getvalue()]
    return [("POST", "/v1/search/image?k=10", pictures[i % len(pictures)],
             {"Content-Type": "image/png"}) for i in range(n)]


def run_clients(port, requests, clients):
    """Latencies (s) of answered requests and the error count; wall seconds."""
    latencies, errors, lock = [], [0], threading.Lock()
    cursor = iter(range(len(requests)))

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine = []
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                break
            method, path, body, headers = requests[index]
            start = time.perf_counter()
            try:
                connection.request(method, path, body, headers)
                reply = connection.getresponse()
                reply.read()
                ok = reply.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            mine.append(time.perf_counter() - start)
            if not ok:
                with lock:
                    errors[0] += 1
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return np.array(latencies), errors[0], time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=2000, help="per kind")
    parser.add_argument("--sequential", type=int, default=200)
    args = parser.parse_args()
    port = free_port()
    process, info = start_server(args.model_dir, port)
    rng = np.random.default_rng(0)
    try:
        rss = {"start": rss_mb(process.pid)}
        kinds = ["text"] + (["image"] if info.get("takes_image_files") else [])
        warm = {kind: make_requests(kind, 64, info, rng, port) for kind in kinds}
        for kind in kinds:
            run_clients(port, warm[kind], args.clients)
        rss["warm"] = rss_mb(process.pid)
        sequential, seq_errors, _ = run_clients(port, make_requests("text", args.sequential,
                                                                    info, rng, port), 1)
        print(f"{'kind':<7} {'clients':>7} {'requests':>8} {'errors':>6} {'p50_ms':>8} "
              f"{'p99_ms':>8} {'qps':>8}")
        seq_p50 = 1000 * statistics.median(sequential)
        print(f"{'text':<7} {1:>7} {len(sequential):>8} {seq_errors:>6} {seq_p50:>8.1f} "
              f"{1000 * np.percentile(sequential, 99):>8.1f} "
              f"{len(sequential) / sequential.sum():>8.1f}")
        total_errors = seq_errors
        for kind in kinds:
            latencies, errors, wall = run_clients(
                port, make_requests(kind, args.requests, info, rng, port), args.clients)
            total_errors += errors
            print(f"{kind:<7} {args.clients:>7} {len(latencies):>8} {errors:>6} "
                  f"{1000 * np.percentile(latencies, 50):>8.1f} "
                  f"{1000 * np.percentile(latencies, 99):>8.1f} {len(latencies) / wall:>8.1f}")
            rss[f"after_{kind}"] = rss_mb(process.pid)
        print("server RSS MB: " + ", ".join(f"{key} {value:.0f}" for key, value in rss.items()))
        growth = rss[f"after_{kinds[-1]}"] - rss["warm"]
        print(f"serve_text_p50_ms={seq_p50:.1f} errors={total_errors} rss_growth_mb={growth:.0f}")
    finally:
        process.terminate()
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
