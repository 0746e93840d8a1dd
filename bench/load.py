"""Load: many concurrent clients against a live `omnivec serve` on loopback, for a fixed time.

    python bench/load.py                        # 50 clients, 60 s, sample collection, shapes model
    python bench/load.py --clients 50 --seconds 60 --json /tmp/load.json
    python bench/load.py --url http://127.0.0.1:8000 --key KEY   # against a server you started

Without --url the script builds a sample collection (omnivec.samples: --per-concept images per colour/shape
concept, plus two videos) pinned to a space (--space; default the small CLIP trained on generated shapes, found
under $OMNIVEC_TEST_MODEL_CACHE or $OMNIVEC_HOME/models, trained there first if absent: about 5 min), starts
`omnivec serve` in its own process on a free loopback port, and stops it at the end.

Clients are asyncio tasks sharing one httpx connection pool (one connection each), so the load generator costs
little CPU beside the server. Each client loops: pick a request, send it, wait for the answer, repeat (a closed
loop: no think time). The mix:
  - 80% text search (POST /search, k=10): "a {colour} {shape}"-style phrases from the shapes world (282 distinct
    phrases, so both cache hits and misses happen);
  - 10% "more like this" (POST /search with like=<item id>);
  - 10% image upload (POST /search/upload, one of 8 small PNGs).
Every answer is checked: HTTP 200 and a well-formed hit list; for text queries naming a colour, whether the best
image hit has that colour (reported as "right colour", a correctness signal under load, not an error).
Reported: requests, errors (any non-200, timeout or malformed answer), throughput (requests/s), latency p50/p90/
p99/max overall and per kind, the server's query-embedding cache hit ratio and embedding batch sizes (from
/metrics), and the 1-minute load average before and after. Requests in the first --warmup seconds are not counted.
Exit status 1 when any request failed.
"""
from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


# ---- the server -------------------------------------------------------------------------------------------------
def build_collection(work: Path, space: str | None, per_concept: int) -> Path:
    import omnivec
    from omnivec.ingest import index
    from omnivec.samples import make_sample_folder

    if space is None:
        from omnivec.store.collection import omnivec_home
        from omnivec.train.recipes import load_or_train_shapes_clip

        cache = os.environ.get("OMNIVEC_TEST_MODEL_CACHE") or str(omnivec_home() / "models")
        space = str(load_or_train_shapes_clip(cache))
    media = make_sample_folder(work / "media", per_concept=per_concept, image_size=96)
    col = omnivec.open_collection(work / "collection", space=space, create=True)
    summary = index(col, [media])
    print(f"collection: {len(col)} items ({summary.indexed} indexed) in {summary.seconds:.1f} s", file=sys.stderr)
    return col.folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, work: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(work / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "omnivec", "serve", "--collection", str(folder), "--port",
                             str(port), "--query-log", str(work / "queries.jsonl")], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {(work / 'server.log').read_text()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not come up within 180 s")


# ---- the clients ------------------------------------------------------------------------------------------------
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle", "star", "cross")
TEMPLATES = ("a {c} {s}", "a picture of a {c} {s}", "a {c} shape", "a large {c} {s}", "a small {c} {s}",
             "a {c} {s} on a white background", "a {c} {s} on a black background", "something {c}",
             "a photo with a {c} {s}", "the {c} {s}", "a {c} {s} in the middle")


def phrases() -> list[tuple[str, str]]:
    """(query text, the colour it names)."""
    return sorted({(t.format(c=c, s=s), c) for t in TEMPLATES for c in COLOURS for s in SHAPES})


def upload_images() -> list[bytes]:
    from omnivec.samples import scene

    rng = np.random.default_rng(11)
    out = []
    for colour, shape in zip(COLOURS + COLOURS[:2], SHAPES + SHAPES[:3]):
        buf = io.BytesIO()
        scene(rng, colour, shape).render(96).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


class Stats:
    def __init__(self):
        self.latency: dict[str, list[float]] = {}
        self.errors: list[str] = []
        self.right = self.checked = 0


async def client_loop(http, stop_at: float, count_from: float, stats: Stats, ids: list[str], texts, images,
                      seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < stop_at:
        roll = rng.random()
        colour = None
        if roll < 0.8:
            kind = "text"
            text, colour = rng.choice(texts)
            req = http.post("/search", json={"text": text, "k": 10})
        elif roll < 0.9:
            kind = "like"
            req = http.post("/search", json={"like": rng.choice(ids), "k": 10})
        else:
            kind = "upload"
            req = http.post("/search/upload", files={"file": ("q.png", rng.choice(images), "image/png")},
                            data={"k": "10"})
        t0 = time.monotonic()
        try:
            r = await req
            ok = r.status_code == 200
            body = r.json() if ok else None
            ok = ok and isinstance(body.get("hits"), list) and len(body["hits"]) > 0
            detail = f"HTTP {r.status_code}: {r.text[:200]}" if not ok else ""
        except Exception as e:  # noqa: BLE001 - any failure of a request is counted, with its cause
            ok, body, detail = False, None, f"{type(e).__name__}: {e}"
        t1 = time.monotonic()
        if t0 < count_from:
            continue
        if not ok:
            stats.errors.append(f"{kind}: {detail}")
            continue
        stats.latency.setdefault(kind, []).append((t1 - t0) * 1000)
        if colour is not None:
            images_hits = [h for h in body["hits"] if h["modality"] == "image"]
            if images_hits:
                stats.checked += 1
                stats.right += Path(images_hits[0]["paths"][0]).name.startswith(colour + "-")


async def run_load(url: str, key: str | None, clients: int, seconds: float, warmup: float) -> dict:
    import httpx

    headers = {"X-API-Key": key} if key else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as http:
        first = (await http.get("/search", params={"q": "a shape", "k": 200})).json()["hits"]
        ids = [h["id"] for h in first]
        before = await metrics(http)
        stats = Stats()
        start = time.monotonic()
        count_from, stop_at = start + warmup, start + warmup + seconds
        texts, images = phrases(), upload_images()
        await asyncio.gather(*(client_loop(http, stop_at, count_from, stats, ids, texts, images, i)
                               for i in range(clients)))
        elapsed = time.monotonic() - count_from
        after = await metrics(http)
    return summarise(stats, elapsed, clients, before, after)


async def metrics(http) -> dict[str, float]:
    text = (await http.get("/metrics")).text
    out = {}
    for name in ('omnivec_query_embedding_cache_total{result="hit"}', 'omnivec_query_embedding_cache_total{result="miss"}',
                 "omnivec_query_embed_batch_size_count", "omnivec_query_embed_batch_size_sum"):
        m = re.search(re.escape(name) + r" ([0-9.e+-]+)", text)
        out[name] = float(m.group(1)) if m else 0.0
    return out


def percentiles(values: list[float]) -> dict:
    if not values:
        return {"n": 0}
    a = np.asarray(values)
    return {"n": len(a), "p50_ms": round(float(np.percentile(a, 50)), 2), "p90_ms": round(float(np.percentile(a, 90)), 2),
            "p99_ms": round(float(np.percentile(a, 99)), 2), "max_ms": round(float(a.max()), 2)}


def summarise(stats: Stats, elapsed: float, clients: int, before: dict, after: dict) -> dict:
    everything = [x for v in stats.latency.values() for x in v]
    delta = {k: after[k] - before.get(k, 0.0) for k in after}
    hits = delta['omnivec_query_embedding_cache_total{result="hit"}']
    misses = delta['omnivec_query_embedding_cache_total{result="miss"}']
    calls = delta["omnivec_query_embed_batch_size_count"]
    return {
        "clients": clients, "seconds": round(elapsed, 1), "requests": len(everything), "errors": len(stats.errors),
        "error_examples": stats.errors[:5], "throughput_rps": round(len(everything) / elapsed, 1),
        "latency": percentiles(everything), "by_kind": {k: percentiles(v) for k, v in sorted(stats.latency.items())},
        "right_colour": round(stats.right / stats.checked, 4) if stats.checked else None,
        "server": {"cache_hit_ratio": round(hits / (hits + misses), 3) if hits + misses else None,
                   "model_calls": int(calls), "mean_batch": round(delta["omnivec_query_embed_batch_size_sum"] / calls, 2)
                   if calls else None},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", help="a running server (else one is started on a sample collection)")
    ap.add_argument("--key", default=os.environ.get("OMNIVEC_API_KEY"), help="its API key, if any")
    ap.add_argument("--space", help="space for the sample collection (default: the trained shapes model)")
    ap.add_argument("--per-concept", type=int, default=20, help="sample images per colour/shape concept")
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--warmup", type=float, default=5)
    ap.add_argument("--json", metavar="FILE", help="also write the results here")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="omnivec-load-"))
    proc = None
    try:
        url = args.url
        if url is None:
            folder = build_collection(work, args.space, args.per_concept)
            proc, url = start_server(folder, work)
        load_before = os.getloadavg()[0]
        result = asyncio.run(run_load(url, args.key, args.clients, args.seconds, args.warmup))
        result.update(url=url, load_average_before=round(load_before, 2), load_average_after=round(os.getloadavg()[0], 2),
                      machine={"cpus": os.cpu_count(), "python": platform.python_version(),
                               "processor": platform.processor() or platform.machine()},
                      date=time.strftime("%Y-%m-%d"))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    sys.exit(1 if result["errors"] else 0)


if __name__ == "__main__":
    main()
