#!/usr/bin/python3
"""The python3-etcd3 (gRPC) peer of keel_etcd_bench: the same operations on
the same etcd member, one thread and 8 threads, p50/p99 latency (µs) and
throughput. Usage: etcd_python.py http://127.0.0.1:PORT [seconds_per_case]

python3-etcd3 0.12 ignores `limit` and `revision` in its range call, so the
1000-key scan uses the raw KV stub (RangeRequest with limit)."""
import sys
import threading
import time
from urllib.parse import urlparse

import etcd3
from etcd3 import etcdrpc

endpoint = urlparse(sys.argv[1])
seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 2.0
value = b"v" * 256


def key(space, i):
    return ("bench/%s/%06d" % (space, i)).encode()


def make_client():
    return etcd3.client(host=endpoint.hostname, port=endpoint.port)


def op_put(c, t, i):
    c.put(key("put", (t * 100000 + i) % 1000), value)


def op_get(c, t, i):
    c.get(key("get", (t * 7 + i) % 1000))


def op_get_serializable(c, t, i):
    c.get(key("get", (t * 7 + i) % 1000), serializable=True)


def op_scan(c, t, i):
    req = etcdrpc.RangeRequest(key=b"bench/scan/", range_end=b"bench/scan0", limit=1000)
    resp = c.kvstub.Range(req, c.timeout, credentials=c.call_credentials, metadata=c.metadata)
    assert len(resp.kvs) == 1000


def op_batch(c, t, i):
    space = "batch%d" % t
    c.transaction(compare=[], success=[c.transactions.put(key(space, j), value) for j in range(100)], failure=[])


def op_tx(c, t, i):
    space = "tx%d" % t
    a = c.get(key(space, 0))
    b = c.get(key(space, 1))
    ma = a[1].mod_revision if a[1] else 0
    mb = b[1].mod_revision if b[1] else 0
    ok, _ = c.transaction(
        compare=[c.transactions.mod(key(space, 0)) == ma, c.transactions.mod(key(space, 1)) == mb],
        success=[c.transactions.put(key(space, 2), value), c.transactions.put(key(space, 3), value)],
        failure=[])


def run(name, op, threads):
    lat = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(t):
        c = make_client()
        mine = []
        i = 0
        while time.monotonic() < stop:
            t0 = time.perf_counter()
            op(c, t, i)
            mine.append((time.perf_counter() - t0) * 1e6)
            i += 1
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    start = time.monotonic()
    for th in ts:
        th.start()
    for th in ts:
        th.join()
    wall = time.monotonic() - start
    lat.sort()
    p = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))]
    print("python3-etcd3/%-26s threads:%d  p50_us=%8.1f  p99_us=%8.1f  ops_per_s=%8.0f" %
          (name, threads, p(0.5), p(0.99), len(lat) / wall))
    sys.stdout.flush()


for threads in (1, 8):
    run("put", op_put, threads)
    run("get(serializable=0)", op_get, threads)
    run("get(serializable=1)", op_get_serializable, threads)
    run("scan1000", op_scan, threads)
    run("batch100", op_batch, threads)
    run("tx2r2w", op_tx, threads)
