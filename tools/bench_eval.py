"""Benchmark daah_tf.metrics and daah_tf.index against straightforward baselines.

    python tools/bench_eval.py [--repeats 3]

    python tools/bench_eval.py --part eval     # only the two at-scale mAP@all parts

Prints a table (name, seconds, result) and then, as its last lines:
    map_speedup_vs_loop_1_thread=<x> 2,000 x 18,015 x 64 bits mAP@all, one thread, vs the
                                     per-query loop (one thread too): the like-for-like number
    map_speedup_vs_loop=<x> threads=<n>   the same with metrics' default threads (CPU count,
                                     at most 4) against the one-thread loop
    nuswide_scale_seconds=<s> backend=<b> numpy_seconds=<s> ratio=<x> peak_rss_mb=<m>
                                     2,100 x 193,734 x 64 bits (own subprocess): metrics'
                                     default backend (numba's compiled kernels where numba
                                     imports) and the NumPy path, interleaved repeats in one
                                     process, medians (wall; cpu_s: CPU seconds of all threads,
                                     which other load on the machine inflates less); both give
                                     the same AP bits (checked), and the first 100 queries
                                     match the reference loop (1e-9)
    million_db_seconds=<s> ...       the same for 200 x 1,000,000 x 64 bits
    search_qps_ratio_vs_faiss=<x>    top-100 of 1,000 queries in 200,000 codes, vs raw faiss
Data are synthetic: multi-hot labels, codes = sign(labels @ label_codes + noise).
"""

from __future__ import annotations

import os

# One BLAS thread: the reference loop's matrix-vector products gain nothing from more, and a
# threaded OpenBLAS spinning against other load made that loop up to 4x slower, which would
# inflate the speedup. daah_tf.metrics itself does not call BLAS. Must precede `import numpy`.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from daah_tf import ap_kernels, metrics  # noqa: E402
from daah_tf.index import HammingIndex  # noqa: E402

BITS = 64


def make_dataset(
    n_query: int, n_db: int, n_labels: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """+-1 int8 codes (Q, 64), (N, 64) and bool multi-hot labels (Q, L), (N, L)."""
    rng = np.random.default_rng(seed)
    label_codes = rng.standard_normal((n_labels, BITS)).astype(np.float32)
    freq = rng.uniform(0.02, 0.25, n_labels)  # uneven label frequencies, as in real data

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        labels = rng.random((n, n_labels)) < freq
        labels[np.arange(n), rng.integers(0, n_labels, n)] = True  # at least one label
        codes = np.empty((n, BITS), dtype=np.int8)
        for s in range(0, n, 50_000):  # chunks keep the float temporaries small
            real = labels[s : s + 50_000] @ label_codes
            real += 1.5 * rng.standard_normal(real.shape, dtype=np.float32)
            codes[s : s + 50_000] = np.where(real > 0, 1, -1)
        return codes, labels

    (query_codes, query_labels), (db_codes, db_labels) = draw(n_query), draw(n_db)
    return query_codes, db_codes, query_labels, db_labels


def reference_map_loop(
    query_codes: np.ndarray, db_codes: np.ndarray, query_labels: np.ndarray, db_labels: np.ndarray
) -> float:
    """mAP@all one query at a time, as in the DCMH reference code (calc_map), stable argsort."""
    q_b, r_b = query_codes.astype(np.float64), db_codes.astype(np.float64)
    q_l, r_l = query_labels.astype(np.float64), db_labels.astype(np.float64)
    bits, total = q_b.shape[1], 0.0
    for i in range(q_b.shape[0]):
        gnd = (q_l[i] @ r_l.T > 0).astype(np.float64)
        tsum = int(gnd.sum())
        if tsum == 0:
            continue
        hamm = 0.5 * (bits - r_b @ q_b[i])
        gnd = gnd[np.argsort(hamm, kind="stable")]
        count = np.linspace(1, tsum, tsum)
        tindex = np.asarray(np.where(gnd == 1)) + 1.0
        total += np.mean(count / tindex)
    return total / q_b.shape[0]


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    """Median wall time over ``repeats`` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_map(rows: list[tuple[str, float, str]], repeats: int) -> tuple[float, float]:
    """(loop / metrics at 1 thread, loop / metrics at its default threads)."""
    data = make_dataset(2_000, 18_015, 24, seed=0)
    loop_s, loop_map = timed(lambda: reference_map_loop(*data), repeats)
    ours_s, ours_map = timed(lambda: metrics.mean_average_precision(*data), max(repeats, 5))
    one_s, one_map = timed(lambda: metrics.mean_average_precision(*data, num_threads=1), 5)
    avg_s, avg_map = timed(lambda: metrics.mean_average_precision(*data, tie_rule="average"), 5)
    np_s, np_map = timed(lambda: metrics.mean_average_precision(*data, backend="numpy"), 5)
    assert abs(ours_map - loop_map) <= 1e-6 and abs(one_map - loop_map) <= 1e-6
    assert np_map == ours_map
    rows += [
        ("mirflickr mAP@all per-query loop", loop_s, f"{loop_map:.6f}"),
        (f"mirflickr mAP@all metrics (index, {_backend()})", ours_s, f"{ours_map:.6f}"),
        ("mirflickr mAP@all metrics (1 thread)", one_s, f"{one_map:.6f}"),
        ("mirflickr mAP@all metrics (average)", avg_s, f"{avg_map:.6f}"),
        ("mirflickr mAP@all metrics (index, numpy path)", np_s, f"{np_map:.6f}"),
    ]
    return loop_s / one_s, loop_s / ours_s


def _backend() -> str:
    """The backend metrics uses by default here: "numba" where it imports, else "numpy"."""
    return "numba" if ap_kernels.available() else "numpy"


def nuswide_child(
    n_query: int = 2_100, n_db: int = 193_734, check: int = 100, repeats: int = 3
) -> None:
    """Runs in its own process, so that peak RSS is that of this part alone (both backends).

    The default backend and the NumPy path run alternately (which goes first alternates too, so
    drifts in machine load hit both alike), after one small warm-up call each (numba loads its
    compiled kernels from its cache there). Both must give the same AP array, bit for bit. The
    first `check` queries are also ranked by the reference loop: their mAP must agree to 1e-9.
    """
    data = make_dataset(n_query, n_db, 21, seed=1)
    q, d, ql, dl = data
    for backend in ("auto", "numpy"):
        metrics.average_precision_per_query(q[:2], d, ql[:2], dl, backend=backend)
    times: dict[str, list[float]] = {"auto": [], "numpy": []}
    cpu: dict[str, list[float]] = {"auto": [], "numpy": []}
    aps: dict[str, np.ndarray] = {}
    for rep in range(repeats):
        for backend in ("auto", "numpy") if rep % 2 == 0 else ("numpy", "auto"):
            start, start_cpu = time.perf_counter(), time.process_time()
            aps[backend] = metrics.average_precision_per_query(*data, backend=backend)
            times[backend].append(time.perf_counter() - start)
            cpu[backend].append(time.process_time() - start_cpu)
    assert np.array_equal(aps["auto"], aps["numpy"])
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    ours = metrics.mean_average_precision(q[:check], d, ql[:check], dl)
    reference = reference_map_loop(q[:check], d, ql[:check], dl)
    assert abs(ours - reference) <= 1e-9, (ours, reference)
    seconds, numpy_seconds = statistics.median(times["auto"]), statistics.median(times["numpy"])
    print(json.dumps({"seconds": seconds, "numpy_seconds": numpy_seconds,
                      "backend": _backend(), "times": times, "peak_rss_mb": peak_mb,
                      "cpu_seconds": {b: statistics.median(c) for b, c in cpu.items()},
                      "map": float(aps["auto"].mean()), "reference_diff": abs(ours - reference)}))


def bench_nuswide(
    rows: list[tuple[str, float, str]], part: str = "nuswide", repeats: int = 3
) -> str:
    """Runs one at-scale part in a subprocess; returns its summary line."""
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--part", part, "--repeats", str(repeats)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(out.strip().splitlines()[-1])
    name = "nuswide" if part == "nuswide" else "1M db, 200 queries,"
    rows += [
        (f"{name} mAP@all ({result['backend']})", result["seconds"], f"{result['map']:.6f}"),
        (f"{name} mAP@all (numpy path)", result["numpy_seconds"], "same bits"),
    ]
    key = "nuswide_scale_seconds" if part == "nuswide" else "million_db_seconds"
    spread = {b: "/".join(f"{t:.2f}" for t in ts) for b, ts in result["times"].items()}
    return (f"{key}={result['seconds']:.2f} backend={result['backend']} "
            f"numpy_seconds={result['numpy_seconds']:.2f} "
            f"ratio={result['numpy_seconds'] / result['seconds']:.2f} "
            f"peak_rss_mb={result['peak_rss_mb']:.0f} "
            f"cpu_s(auto={result['cpu_seconds']['auto']:.2f}; "
            f"numpy={result['cpu_seconds']['numpy']:.2f}) "
            f"runs_s(auto={spread['auto']}; numpy={spread['numpy']})")


def bench_search(rows: list[tuple[str, float, str]], repeats: int) -> float | None:
    rng = np.random.default_rng(2)
    db = np.packbits(rng.random((200_000, BITS)) < 0.5, axis=1)
    query = np.packbits(rng.random((1_000, BITS)) < 0.5, axis=1)
    k, n_query = 100, len(query)
    numpy_index = HammingIndex(BITS, backend="numpy")
    numpy_index.add(db)
    numpy_s, (numpy_ids, numpy_dist) = timed(lambda: numpy_index.search(query, k), 1)
    rows.append(("search HammingIndex numpy", numpy_s, f"{n_query / numpy_s:.0f} q/s"))
    try:
        import faiss
    except ImportError:
        return None
    raw = faiss.IndexBinaryFlat(BITS)
    raw.add(db)
    index = HammingIndex(BITS, backend="faiss")
    index.add(db)
    ours_times, raw_times = [], []
    # Interleaved, alternating which goes first, so drifts in machine load hit both alike.
    for rep in range(max(3 * repeats, 9)):
        pair = [(ours_times, index.search), (raw_times, raw.search)]
        for times, search in pair if rep % 2 == 0 else pair[::-1]:
            times.append(timed(lambda search=search: search(query, k), 1)[0])
    ids, dist = index.search(query, k)
    raw_dist, raw_ids = raw.search(query, k)
    assert np.array_equal(ids, raw_ids) and np.array_equal(dist, raw_dist)
    assert np.array_equal(ids, numpy_ids) and np.array_equal(dist, numpy_dist)
    ours_s, raw_s = statistics.median(ours_times), statistics.median(raw_times)
    rows += [
        ("search HammingIndex faiss", ours_s, f"{n_query / ours_s:.0f} q/s"),
        ("search raw faiss IndexBinaryFlat", raw_s, f"{n_query / raw_s:.0f} q/s"),
    ]
    return raw_s / ours_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats (median)")
    parser.add_argument("--part", choices=["all", "nuswide", "million", "eval"], default="all",
                        help="eval: only the two mAP@all-at-scale parts")
    args = parser.parse_args()
    if args.part == "nuswide":
        nuswide_child(repeats=args.repeats)
        return
    if args.part == "million":
        nuswide_child(200, 1_000_000, check=20, repeats=args.repeats)
        return
    if args.part == "eval":
        rows = []
        nus_line = bench_nuswide(rows, repeats=args.repeats)
        million_line = bench_nuswide(rows, "million", args.repeats)
        for name, seconds, result in rows:
            print(f"{name:<48} {seconds:>9.3f}  {result}")
        print(nus_line)
        print(million_line)
        return
    rows: list[tuple[str, float, str]] = []
    same_threads, speedup = bench_map(rows, args.repeats)
    nus_line = bench_nuswide(rows, repeats=args.repeats)
    million_line = bench_nuswide(rows, "million", args.repeats)
    qps_ratio = bench_search(rows, args.repeats)
    print(f"{'name':<48} {'seconds':>9}  result")
    for name, seconds, result in rows:
        print(f"{name:<48} {seconds:>9.3f}  {result}")
    print(f"map_speedup_vs_loop_1_thread={same_threads:.1f}")
    print(f"map_speedup_vs_loop={speedup:.1f} threads={min(os.cpu_count() or 1, 4)}")
    print(nus_line)
    print(million_line)
    if qps_ratio is None:
        print("search_qps_ratio_vs_faiss=nan (faiss not installed)")
    else:
        print(f"search_qps_ratio_vs_faiss={qps_ratio:.2f}")


if __name__ == "__main__":
    main()
