"""The index job on a Ray cluster: Ray Data reads and decodes on CPU workers, model actors embed, and the driver
commits to the collection in batches, exactly as the single-machine job does.

    driver: list inputs (folders, manifests, URLs) -> skip paths unchanged since the last run (files table)
    CPU tasks: read bytes -> sha256 -> drop contents already stored -> sniff -> decode (images to pixels at the
               model's reduced size, audio to a wave at the model's rate; video and text travel as bytes)
    actors: one model each (a GPU each when the cluster has them) -> Space.embed_items -> vectors and segments
    driver: records (the single-machine job's code, so rows are identical) -> batched commits -> files table

Resuming after a crash is the single-machine job's: records are committed before the files table marks a path
done, content is found by its hash, and writes are keyed by content, so a re-run stores nothing twice. Decoded
pixels and waves are what the model would decode itself, so vectors equal the single-machine job's (to float
rounding). One difference: when byte-identical copies are new in the same run, their record takes the file times
(mtime, year) of the copy that finished first, not of the first in walk order. Text documents (PDF, HTML,
Markdown, plain text) are chunked and embedded on the driver."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa

from ..errors import ConfigError, MediaError, OmnivecError
from ..media import Limits, fetch_url, load_audio, load_image, to_media
from ..media.document import document_mime
from ..progress import ProgressBar
from ..spaces import Embedding, Segment
from ..store.collection import Collection
from .pipeline import IndexSummary, _Entry, _Job, sources

# One row of the dataset between stages. `status` says what became of it: embed (decoded, for the actors),
# embedded (vectors attached), duplicate (content already stored), skipped, document (for the driver), failed.
ROW = pa.schema([
    ("location", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()), ("content_hash", pa.string()),
    ("status", pa.string()), ("stage", pa.string()), ("reason", pa.string()), ("modality", pa.string()),
    ("payload", pa.binary()), ("shape", pa.list_(pa.int64())), ("sample_rate", pa.int64()), ("info", pa.string()),
    ("vector", pa.binary()), ("segments", pa.binary()), ("spans", pa.string()), ("version", pa.string()),
])


DECODE_MEMORY_BASE = 160 << 20      # a decode worker process: Python, numpy, PIL, PyAV (about 110 MiB measured)
DECODE_MEMORY_PER_FILE = 16 << 20   # plus, per file of its batch, the file and its decoded pixels or wave


@dataclass(frozen=True)
class DecodeSettings:
    """What the CPU workers need to decode as the model would, taken from the driver's copy of the space."""

    modalities: tuple[str, ...]
    space_name: str
    limits: Limits
    image_min_size: int | None      # the reduced JPEG decode's smallest side (None: full decode)
    sample_rate: int | None         # the audio model's rate

    @classmethod
    def of(cls, space) -> "DecodeSettings":
        backend = space.backend
        return cls(modalities=tuple(space.modalities), space_name=space.name, limits=space.limits,
                   image_min_size=backend.image_size if space.config.image.reduced_decode and "image" in
                   space.modalities else None,
                   sample_rate=getattr(backend, "sample_rate", None) if "audio" in space.modalities else None)


# ---- the driver -------------------------------------------------------------------------------------------------
def index_distributed(col: Collection, inputs: Iterable[str | os.PathLike], *, ray_address: str = "auto",
                      workers: int | None = None, gpus_per_worker: float | None = None,
                      cpus_per_worker: float = 1.0, decode_cpus: float = 0.5, batch_size: int = 16,
                      space_source: str | None = None, sync: bool = False, include_hidden: bool = False,
                      progress: bool = False, commit_every: int | None = None,
                      commit_seconds: float = 5.0) -> IndexSummary:
    """Index like `pipeline.index`, with decoding and embedding on a Ray cluster.

    ray_address: "auto" (a running cluster, else a local one on this machine) or a cluster address
    ("ray://head:10001", "head:6379"); an already initialised Ray is used as it is.
    workers: model actors (default: one per GPU, else half the CPUs). gpus_per_worker: default 1 when the
    cluster has GPUs, else 0. space_source: what the actors load (default: the source the collection was pinned
    with); the loaded space must have the pinned version."""
    import ray

    t0 = time.perf_counter()
    commit_every = commit_every or int(os.environ.get("OMNIVEC_COMMIT_EVERY", "64"))
    source = space_source or col.pinned.get("source")
    if not source:
        raise ConfigError(f"collection {col.name!r} does not say which space its workers should load; pass "
                          f"space_source=")
    space = col.space                      # the driver's copy: decode settings, documents, version check
    job = _Job(col, commit_every, commit_seconds)
    entries = list(sources(inputs, include_hidden))
    job.summary.seen = len(entries)
    bar = ProgressBar("indexing", len(entries), unit="files") if progress else None
    started = _connect(ray_address)
    try:
        todo = _triage_on_driver(job, entries, bar)
        if todo:
            gpus = float(ray.cluster_resources().get("GPU", 0))
            cpus = float(ray.cluster_resources().get("CPU", 1))
            per_gpu = gpus_per_worker if gpus_per_worker is not None else (1.0 if gpus >= 1 else 0.0)
            n = workers or max(1, int(gpus // per_gpu) if per_gpu else int(cpus // 2))
            results = _dataset(todo, job, DecodeSettings.of(space), source, col.pinned, n, per_gpu,
                               cpus_per_worker, decode_cpus, batch_size, progress)
            try:
                for batch in results.iter_batches(batch_size=None, batch_format="pyarrow"):
                    for row in batch.to_pylist():
                        _settle(job, row, todo, space)
                        if bar:
                            bar.advance()
                        job.maybe_flush()
            except Exception as e:  # what finished is committed; a re-run resumes from there
                job.flush()
                raise _cluster_error(e) from e
        job.embed_documents(bar)
        job.flush()
        if sync:
            job.sync({loc for loc, _ in entries}, [str(Path(str(s)).expanduser().resolve()) for s in inputs])
        if job.commits > 8:
            col.store.compact()
        if job.commits:
            col.refresh_index()
    finally:
        if bar:
            bar.close()
        if started:
            ray.shutdown()
    job.summary.seconds = time.perf_counter() - t0
    return job.summary


def _connect(address: str) -> bool:
    """Join the cluster; True when this call started Ray (and so shuts it down after the run)."""
    import ray

    if ray.is_initialized():
        return False
    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    if address == "auto":
        try:
            ray.init(address="auto", **{k: v for k, v in quiet.items() if k != "include_dashboard"})
        except ConnectionError:  # no cluster running: this machine is the cluster
            ray.init(**quiet)
    else:
        _check_reachable(address)
        try:
            ray.init(address=address, **{k: v for k, v in quiet.items() if k != "include_dashboard"})
        except ConnectionError as e:
            raise ConfigError(f"cannot reach the Ray cluster at {address}: {e}") from None
    return True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Ray retries an unreachable head for minutes; a plain connection attempt answers in seconds."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"--ray {address!r}: expected 'auto', HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None


def _triage_on_driver(job: _Job, entries: list[tuple[str, dict]], bar) -> dict[str, _Entry]:
    """Paths unchanged since the last run (same size and mtime, or a URL done before) are settled here from file
    metadata alone; everything else goes to the workers, which read the bytes."""
    todo: dict[str, _Entry] = {}
    for location, meta in entries:
        e = _Entry(location, meta)
        prev = job.files.get(location)
        if location.startswith(("http://", "https://")):
            if prev and prev["status"] in ("indexed", "skipped"):
                job.summary.unchanged += 1
                _advance(bar)
                continue
        else:
            try:
                st = os.stat(location)
            except OSError as err:
                job._fail(e, "fetch", "no such file" if not os.path.exists(location) else
                          f"cannot read: {err.strerror}")
                _advance(bar)
                continue
            e.size, e.mtime_ns = st.st_size, st.st_mtime_ns
            if prev and prev["status"] in ("indexed", "skipped") and prev["size"] == e.size \
                    and prev["mtime_ns"] == e.mtime_ns:
                job.summary.unchanged += 1
                _advance(bar)
                continue
        todo.setdefault(location, e)
    job.maybe_flush()
    return todo


def _dataset(todo: dict[str, _Entry], job: _Job, settings: DecodeSettings, source: str, pinned: dict,
             workers: int, gpus_per_worker: float, cpus_per_worker: float, decode_cpus: float, batch_size: int,
             progress: bool):
    import ray
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = progress
    logging.getLogger("ray.data").setLevel(logging.INFO if progress else logging.WARNING)
    known = ray.put(np.sort(np.array([bytes.fromhex(h) for h in job.known], dtype="S32")))
    rows = [{"location": e.location, "size": e.size, "mtime_ns": e.mtime_ns} for e in todo.values()]
    batch_size = max(1, min(batch_size, -(-len(rows) // (2 * workers))))  # small jobs still reach every actor
    ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 8 * workers)))
    # A decode task holds a batch of files and their decoded pixels: it asks for that memory. Asking for other
    # resources than the actors also keeps Ray Data from fusing decoding into the actors' processes, so decoding
    # runs on its own CPU workers and scales apart from the models.
    ds = ds.map_batches(decode_batch, batch_size=batch_size, batch_format="pyarrow", num_cpus=decode_cpus,
                        memory=DECODE_MEMORY_BASE + DECODE_MEMORY_PER_FILE * batch_size,
                        fn_kwargs={"settings": settings, "known": known})
    return ds.map_batches(EmbedActor, batch_size=batch_size, batch_format="pyarrow",
                          compute=ray.data.ActorPoolStrategy(size=workers),
                          num_cpus=cpus_per_worker, num_gpus=gpus_per_worker,
                          fn_constructor_kwargs={"source": source, "version": pinned["version"],
                                                 "precision": pinned.get("precision", "fp32"),
                                                 "threads": max(1, int(cpus_per_worker)),
                                                 "gpu": gpus_per_worker > 0})


def _settle(job: _Job, row: dict, todo: dict[str, _Entry], space) -> None:
    """One worker result into the job: the same calls the single-machine job makes, so the same rows."""
    e = todo[row["location"]]
    e.content_hash = row["content_hash"] or e.content_hash
    if row["size"] is not None:
        e.size = row["size"]
    status = row["status"]
    if status == "failed":
        job._fail(e, row["stage"], row["reason"])
    elif status == "skipped":
        job.summary.skipped[row["reason"]] += 1
        job._file_row(e, "skipped", row["reason"])
    elif status == "duplicate" or e.content_hash in job.known:   # stored before, or earlier in this run
        job._add_path(e)
    elif e.content_hash in job.inflight:                          # the same bytes wait as a queued document
        job.inflight[e.content_hash].append(e)
    elif status == "document":
        e.mime = row["reason"]
        e.data = row["payload"]                                   # a downloaded document's bytes (else None)
        job.documents.append(e)
        job.inflight[e.content_hash] = []
    elif status == "embedded":
        job.inflight[e.content_hash] = []
        job.done(e, _embedding(row, space))
    else:
        raise OmnivecError(f"{e.location}: unexpected worker status {status!r}")


def _embedding(row: dict, space) -> Embedding:
    vector = np.frombuffer(row["vector"], np.float32).copy()
    spans = json.loads(row["spans"]) if row["spans"] else []
    seg_vectors = np.frombuffer(row["segments"], np.float32).reshape(len(spans), -1) if spans else []
    return Embedding(item=row["location"], modality=row["modality"], vector=vector, space=space.name,
                     model=space.model, version=row["version"],
                     segments=[Segment(s, t, seg_vectors[k].copy()) for k, (s, t) in enumerate(spans)],
                     info=json.loads(row["info"]) if row["info"] else {})


def _advance(bar) -> None:
    if bar:
        bar.advance()


def _cluster_error(e: Exception) -> OmnivecError:
    """A worker's own error (e.g. the model would not load) rather than Ray's wrapping of it. An actor that fails
    in its constructor reaches the driver as ActorDiedError, which carries the error only as traceback text."""
    from .. import errors

    cause = getattr(e, "cause", None)
    if isinstance(cause, OmnivecError):
        return cause
    found = re.findall(r"omnivec\.errors\.(\w+): (.+)", str(e))
    if found:
        kind = getattr(errors, found[-1][0], None)
        if isinstance(kind, type) and issubclass(kind, OmnivecError) and kind is not MediaError:
            return kind(found[-1][1])
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return OmnivecError(f"the Ray run stopped: {type(e).__name__}: {first}")


# ---- CPU workers ------------------------------------------------------------------------------------------------
_KNOWN_CACHE: dict[Any, np.ndarray] = {}


def decode_batch(batch: pa.Table, *, settings: DecodeSettings, known) -> pa.Table:
    """Read, hash, sniff and decode each file of the batch (a Ray Data task on a CPU worker)."""
    stored = _resolve(known)
    return pa.Table.from_pylist([_decode_one(r, settings, stored) for r in batch.to_pylist()], schema=ROW)


def _resolve(known) -> np.ndarray:
    import ray

    if not isinstance(known, ray.ObjectRef):
        return known
    key = known.hex()
    if key not in _KNOWN_CACHE:  # one copy per worker process, read from the object store without copying
        _KNOWN_CACHE.clear()
        _KNOWN_CACHE[key] = ray.get(known)
    return _KNOWN_CACHE[key]


def _decode_one(row: dict, s: DecodeSettings, stored: np.ndarray) -> dict:
    location = row["location"]
    out = {**{f: None for f in ROW.names}, **row}
    try:
        data = fetch_url(location, s.limits) if location.startswith(("http://", "https://")) \
            else _read(location, s.limits)
        digest = hashlib.sha256(data).digest()
        out.update(content_hash=digest.hex(), size=len(data))
        i = int(np.searchsorted(stored, digest))
        if i < len(stored) and stored[i] == digest:
            return {**out, "status": "duplicate"}
        head = data[:256]
        mime = document_mime(location, head)
        if mime is not None:
            if "text" not in s.modalities:
                return {**out, "status": "skipped", "reason": f"text not covered by space {s.space_name}"}
            return {**out, "status": "document", "reason": mime,
                    "payload": data if location.startswith(("http://", "https://")) else None}
        media = to_media(data, 0, s.limits)
        media.name = location
        if media.modality not in s.modalities:
            return {**out, "status": "skipped", "reason": f"{media.modality} not covered by space {s.space_name}"}
        out.update(status="embed", modality=media.modality)
        if media.modality == "image":
            image = load_image(media, s.limits, min_size=s.image_min_size)
            info = {"mime": media.mime, "width": image.width, "height": image.height, **media.meta}
            if (image.width, image.height) != (info["width"], info["height"]):
                info["decoded_size"] = [image.width, image.height]   # as Space._parts_image records it
            pixels = np.asarray(image, np.uint8)
            out.update(payload=pixels.tobytes(), shape=list(pixels.shape), info=json.dumps(info))
        elif media.modality == "audio" and s.sample_rate:
            wave = np.ascontiguousarray(load_audio(media, s.sample_rate, s.limits), np.float32)
            out.update(payload=wave.tobytes(), shape=[len(wave)], sample_rate=s.sample_rate,
                       info=json.dumps({"mime": media.mime}))
        else:  # video (frames are sampled next to the model) and text travel as bytes
            out.update(payload=data, info=json.dumps({"mime": media.mime}))
        return out
    except MediaError as err:
        return {**out, "status": "failed", "stage": err.stage, "reason": err.cause}
    except Exception as err:  # noqa: BLE001 - an unexpected decoder failure is still one item's failure
        return {**out, "status": "failed", "stage": "decode", "reason": f"{type(err).__name__}: {err}"}


def _read(path: str, limits: Limits) -> bytes:
    try:
        size = os.path.getsize(path)
        if size > limits.max_bytes:
            raise MediaError(path, f"{size} bytes exceed the limit of {limits.max_bytes}", "limits")
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise MediaError(path, "no such file" if not os.path.exists(path) else f"cannot read: {e.strerror or e}",
                         "fetch") from None


# ---- model actors -----------------------------------------------------------------------------------------------
class EmbedActor:
    """One model per actor, loaded once; embeds the decoded items of each batch (rows of other statuses pass)."""

    def __init__(self, source: str, version: str, threads: int = 1, gpu: bool = False, precision: str = "fp32"):
        import torch

        from ..spaces import load_space

        torch.set_num_threads(threads)
        device = "cuda" if gpu and torch.cuda.is_available() else "cpu"
        try:
            self.space = load_space(source, device=device, overrides={"precision": precision})
        except OmnivecError as e:  # the same kind of error (ModelNotFoundError, ConfigError), naming the worker
            kind = ConfigError if isinstance(e, MediaError) else type(e)
            raise kind(f"a Ray worker could not load space {source!r}: {e}") from None
        if self.space.version != version:
            raise ConfigError(f"the Ray workers load space {source!r} at version {self.space.version}, but the "
                              f"collection is pinned to version {version}; give the workers the same model")

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        todo = [r for r in rows if r["status"] == "embed"]
        if todo:
            from PIL import Image

            items = []
            for r in todo:
                if r["modality"] == "image":
                    shape = tuple(r["shape"])
                    items.append(Image.fromarray(np.frombuffer(r["payload"], np.uint8).reshape(shape)))
                elif r["modality"] == "audio" and r["sample_rate"]:
                    items.append((np.frombuffer(r["payload"], np.float32).copy(), int(r["sample_rate"])))
                else:
                    items.append(r["payload"])
            for r, res in zip(todo, self.space.embed_items(items, on_error="return")):
                if isinstance(res, MediaError):
                    r.update(status="failed", stage=res.stage, reason=res.cause)
                    continue
                info = {**res.info, **(json.loads(r["info"]) if r["info"] else {})}
                r.update(status="embedded", modality=res.modality, version=res.version,
                         vector=np.asarray(res.vector, np.float32).tobytes(), info=json.dumps(info, default=str),
                         spans=json.dumps([[s.start, s.end] for s in res.segments]) if res.segments else None,
                         segments=np.stack([s.vector for s in res.segments]).astype(np.float32).tobytes()
                         if res.segments else None)
        for r in rows:
            r["payload"] = r["payload"] if r["status"] == "document" else None  # pixels are not sent back
            r["shape"] = None
        return pa.Table.from_pylist(rows, schema=ROW)
