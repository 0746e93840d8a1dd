"""Moderation: score items against written policies (policies.py), flag those at or above a policy's threshold,
keep each decision on the item and in an append-only audit log, and calibrate thresholds from labelled items.
An item with segments (audio windows, video scenes, document chunks) is judged by its pooled vector or its
worst segment, whichever scores higher, and the decision names that segment.

Every item carries three fields: `moderation` (policy name -> version, score, threshold, action, flagged, time of
the latest decision), `moderation_flags` (names of the policies that flag it) and `moderation_action` (the most
severe action among those), so `where="moderation_action = 'block'"` or `"array_has(moderation_flags, 'x')"`
filter on them. The audit log (`audit/moderation.jsonl` in the collection's folder) gets, per run, a start entry
with the full policy definitions, one entry per flag and per flag lifted, and an end entry with the counts."""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from ..errors import ConfigError, MediaError
from ..spaces import Space
from ..store.collection import Collection
from ..store.filters import sql_in
from .policies import ACTIONS, Calibration, Policy, PolicySet, choose_threshold, load_policies, read_verdicts
from .tag import item_vectors, prompts, select_items

AUDIT_LOG = Path("audit") / "moderation.jsonl"
FIELDS = ("moderation", "moderation_flags", "moderation_action")


# ---- scoring --------------------------------------------------------------------------------------------------------
def description_vectors(space: Space, policy: Policy) -> tuple[np.ndarray, np.ndarray]:
    """One unit vector per positive and per negative description, each ensembled over the policy's templates."""
    def embed(descriptions):
        return space.embed_labels([prompts(d, policy.templates) for d in descriptions], templates=("{}",))
    return embed(policy.positives), embed(policy.negatives)


def policy_scores(space: Space, vectors: np.ndarray, policy: Policy,
                  described: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """score = (similarity to the closest positive description) - (similarity to the closest negative one).

    The max over each side lets a policy name several distinct things ("a knife", "a gun") and fire on any one of
    them, where a mean would dilute a clear match. The difference removes what raw similarities share: some items
    are close to every text, so a threshold on the positive similarity alone would track the item rather than the
    policy, while the negatives supply the zero point (score > 0: closer to what the policy targets than to what it
    must not match), as CLIP's zero-shot classifier compares classes instead of thresholding one."""
    pos, neg = described if described is not None else description_vectors(space, policy)
    v = np.asarray(vectors, np.float32)
    return (v @ pos.T).max(axis=1) - (v @ neg.T).max(axis=1)


def moderate_vectors(space: Space, vectors: np.ndarray, policies: Any) -> list[list[dict]]:
    """Decisions for any vectors of `space`: per vector, one dict per policy (policy, version, score, threshold,
    action, flagged)."""
    ps = as_policies(policies)
    _require_thresholds(ps)
    per_policy = [(p, policy_scores(space, vectors, p)) for p in ps]
    return [[_decision(p, float(s[i])) for p, s in per_policy] for i in range(len(vectors))]


def _decision(policy: Policy, score: float) -> dict:
    return {"policy": policy.name, "version": policy.version, "score": round(score, 6),
            "threshold": policy.threshold, "action": policy.action, "flagged": bool(score >= policy.threshold)}


def as_policies(policies: Any) -> PolicySet:
    if isinstance(policies, PolicySet):
        return policies
    if isinstance(policies, Policy):
        return PolicySet((policies,))
    if isinstance(policies, (str, Path)):
        if not Path(policies).is_file():
            raise ConfigError(f"policy file {policies} does not exist")
        return load_policies(policies)
    if isinstance(policies, (list, tuple)) and all(isinstance(p, Policy) for p in policies):
        return PolicySet(tuple(policies))
    raise ConfigError(f"expected a policy file, a PolicySet or Policy objects, got {type(policies).__name__}")


def _require_thresholds(ps: PolicySet) -> None:
    for p in ps:
        if p.threshold is None:
            raise ConfigError(f"policy {p.name!r} has no threshold: set one in the policy file or run "
                              f"`omnivec policy calibrate`")


# ---- the audit log --------------------------------------------------------------------------------------------------
class AuditLog:
    """JSON lines, only ever appended: each append is one write of whole lines, under an exclusive lock, fsync'd
    before it returns, so entries survive a crash and concurrent runs never interleave within a line."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def append(self, entries: list[dict]) -> None:
        if not entries:
            return
        data = "".join(json.dumps(e, default=str) + "\n" for e in entries).encode()
        created = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _lock(fd)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data    # a crash tore the last line: leave it be, start on a fresh line
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:  # the new file's directory entry must be durable too
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def entries(self) -> Iterator[dict]:
        """Every readable entry, oldest first (a line torn by a crash is skipped)."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8") as f:
            for line in f:
                try:
                    yield json.loads(line)
                except json.JSONDecodeError:
                    continue


def _lock(fd: int) -> None:
    try:
        import fcntl
    except ImportError:  # Windows: O_APPEND alone still puts each write at the end
        return
    fcntl.flock(fd, fcntl.LOCK_EX)   # released when the descriptor is closed


def audit_log(col: Collection) -> AuditLog:
    return AuditLog(col.folder / AUDIT_LOG)


AUDIT_EVENTS = ("run-start", "flag", "clear", "run-end")


def read_audit(col: Collection, *, policy: str | None = None, item: str | None = None,
               event: str | None = None) -> list[dict]:
    """Audit entries of a collection, oldest first, optionally for one policy, item (id) or event kind. An event
    kind that does not exist is a usage error, not an empty answer."""
    if event is not None and event not in AUDIT_EVENTS:
        raise ConfigError(f"unknown audit event {event!r}; the events are {', '.join(AUDIT_EVENTS)}")
    out = []
    for e in audit_log(col).entries():
        if event and e.get("event") != event:
            continue
        if policy and e.get("policy") != policy and policy not in {p.get("name") for p in e.get("policies", [])}:
            continue
        if item and e.get("item") != item:
            continue
        out.append(e)
    return out


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


# ---- moderating a collection ----------------------------------------------------------------------------------------
@dataclass
class ModerationSummary:
    collection: str
    run: str
    space: dict
    policies: list[dict]                  # per policy: name, version, threshold, action, evaluated, flagged, cleared
    evaluated: int = 0                    # items looked at by at least one policy
    unchanged: int = 0                    # skipped by new_only: every policy already decided at its version
    flagged: list[dict] = field(default_factory=list)   # this run's flags: item, paths, policy, version, score, action
    warnings: list[str] = field(default_factory=list)
    audit_log: str = ""
    dry_run: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return {"collection": self.collection, "run": self.run, "space": self.space, "policies": self.policies,
                "evaluated": self.evaluated, "unchanged": self.unchanged, "flagged": self.flagged,
                "warnings": self.warnings, "audit_log": self.audit_log, "dry_run": self.dry_run,
                "seconds": round(self.seconds, 2)}


def moderate_collection(col: Collection, policies: Any, *, where: str | None = None, new_only: bool = False,
                        dry_run: bool = False, batch_size: int = 4096, progress: bool = False) -> ModerationSummary:
    """Score the items matching `where` against every policy and record the decisions. With new_only, an item is
    scored only by the policies whose current version has not decided it yet. Per batch, the audit entries are
    written (and fsync'd) before the item fields are committed, so no stored decision is missing from the log."""
    t0 = time.monotonic()
    ps = as_policies(policies)
    _require_thresholds(ps)
    space = col.space
    run = uuid.uuid4().hex[:12]
    log = audit_log(col)
    summary = ModerationSummary(col.name, run, {"name": space.name, "version": space.version},
                                [{"name": p.name, "version": p.version, "threshold": p.threshold,
                                  "action": p.action, "evaluated": 0, "flagged": 0, "cleared": 0} for p in ps],
                                audit_log=str(log.path), dry_run=dry_run)
    summary.warnings = _space_warnings(ps, space)
    has_state = FIELDS[0] in col.store.columns()
    rows = select_items(col, where, ["id", "paths", "modality"] + ([FIELDS[0]] if has_state else []))
    for r in rows:
        r["state"] = json.loads(r[FIELDS[0]]) if has_state and r[FIELDS[0]] else {}
    if new_only:
        todo = [r for r in rows if any(r["state"].get(p.name, {}).get("version") != p.version for p in ps)]
        summary.unchanged = len(rows) - len(todo)
        rows = todo
    if not dry_run:
        log.append([{"event": "run-start", "time": _now(), "run": run, "collection": col.name,
                     "space": summary.space, "where": where, "new_only": new_only, "items": len(rows),
                     "policies": [{"name": p.name, "version": p.version, **p.content()} for p in ps]}])
    described = {p.name: description_vectors(space, p) for p in ps}
    stats = {s["name"]: s for s in summary.policies}
    bar = _bar(progress, len(rows))
    for i in range(0, len(rows), batch_size):
        batch = rows[i:i + batch_size]
        vecs = item_vectors(col, [r["id"] for r in batch])
        segments = _Segments.load(col, [r["id"] for r in batch if r["modality"] in SEGMENTED])
        entries: list[dict] = []
        for p in ps:
            pos = [j for j, r in enumerate(batch)
                   if not new_only or r["state"].get(p.name, {}).get("version") != p.version]
            if not pos:
                continue
            scores, parts = worst_part_scores(space, p, [batch[j]["id"] for j in pos], vecs[pos], segments,
                                              described[p.name])
            stats[p.name]["evaluated"] += len(pos)
            for j, score, part in zip(pos, scores, parts):
                entries += _decide(batch[j], p, float(score), part, run, stats[p.name], summary)
        if not dry_run:
            log.append(entries)
            col.update_metadata([r["id"] for r in batch], _fields(batch, ps))
        summary.evaluated += len(batch)
        if bar:
            bar.advance(len(batch))
    if bar:
        bar.close()
    if not dry_run:
        log.append([{"event": "run-end", "time": _now(), "run": run, "evaluated": summary.evaluated,
                     "policies": [{k: s[k] for k in ("name", "version", "evaluated", "flagged", "cleared")}
                                  for s in summary.policies]}])
    summary.seconds = time.monotonic() - t0
    return summary


def _decide(row: dict, policy: Policy, score: float, segment: dict | None, run: str, stats: dict,
            summary: ModerationSummary) -> list[dict]:
    """Record one decision in the item's state; return the audit entries it calls for (a flag, or a lifted flag)."""
    decision = _decision(policy, score) | ({"segment": segment} if segment else {})
    previous = row["state"].get(policy.name)
    at = _now()
    row["state"][policy.name] = {k: v for k, v in decision.items() if k != "policy"} | {"at": at}
    entry = {"event": "flag" if decision["flagged"] else "clear", "time": at, "run": run, "item": row["id"],
             "paths": row["paths"] or [], **decision,
             "previous": {k: previous.get(k) for k in ("version", "flagged", "score")} if previous else None}
    if decision["flagged"]:
        stats["flagged"] += 1
        summary.flagged.append({k: entry.get(k) for k in ("item", "paths", "policy", "version", "score", "action",
                                                          "segment")})
        return [entry]
    if previous and previous.get("flagged"):
        stats["cleared"] += 1
        return [entry]
    return []


SEGMENTED = ("audio", "video", "text")   # modalities whose items may have segments (windows, scenes, chunks)


class _Segments:
    """The segment rows of a batch's items. A policy judges an item by its worst part: a clip with a few
    offending seconds, or a document with one offending passage, is flagged though its pooled vector is not."""

    def __init__(self, ids: list[str], info: list[dict], vectors: np.ndarray):
        self.ids, self.info, self.vectors = ids, info, vectors

    @classmethod
    def load(cls, col: Collection, ids: list[str]) -> "_Segments":
        if not ids:
            return cls([], [], np.zeros((0, col.dim), np.float32))
        t = col.store.scan(f"kind = 'segment' AND {sql_in('id', ids)}", ["id", "segment", "start", "end", "vector"])
        n = t.num_rows
        vectors = np.asarray(t.column("vector").combine_chunks().flatten().to_numpy(), np.float32).reshape(n, -1) \
            if n else np.zeros((0, col.dim), np.float32)
        info = [{"index": r["segment"], "start": r["start"], "end": r["end"]}
                for r in t.select(["segment", "start", "end"]).to_pylist()]
        return cls(t.column("id").to_pylist(), info, vectors)

    @classmethod
    def concat(cls, parts: list["_Segments"], dim: int) -> "_Segments":
        parts = [p for p in parts if p.ids]
        if not parts:
            return cls([], [], np.zeros((0, dim), np.float32))
        return cls([i for p in parts for i in p.ids], [x for p in parts for x in p.info],
                   np.concatenate([p.vectors for p in parts]))

    def best(self, scores: np.ndarray) -> dict[str, tuple[float, dict]]:
        """item id -> (its highest segment score, that segment)."""
        out: dict[str, tuple[float, dict]] = {}
        for iid, info, s in zip(self.ids, self.info, scores):
            if iid not in out or s > out[iid][0]:
                out[iid] = (float(s), info)
        return out


def worst_part_scores(space: Space, policy: Policy, keys: list[str], pooled: np.ndarray, segments: _Segments,
                      described: tuple[np.ndarray, np.ndarray] | None = None) -> tuple[np.ndarray, list[dict | None]]:
    """Per item (keys[i] with pooled vector pooled[i]): the higher of its pooled score and its best segment's
    score, and that segment (None when the pooled vector wins). Moderation and calibration both score this way,
    so a calibrated threshold means the same thing when it is applied."""
    described = described or description_vectors(space, policy)
    scores = policy_scores(space, pooled, policy, described).astype(np.float64)
    best = segments.best(policy_scores(space, segments.vectors, policy, described))
    parts: list[dict | None] = []
    for i, key in enumerate(keys):
        seg_score, part = best.get(key, (-np.inf, None))
        if seg_score > scores[i]:
            scores[i] = seg_score
            parts.append(part)
        else:
            parts.append(None)
    return scores, parts


def _fields(batch: list[dict], ps: PolicySet) -> dict[str, list]:
    """The three item fields from each item's state (which may hold decisions of policies from other files)."""
    severity = {a: i for i, a in enumerate(ACTIONS)}
    states, flags, actions = [], [], []
    for r in batch:
        flagged = sorted(name for name, d in r["state"].items() if d.get("flagged"))
        states.append(r["state"])
        flags.append(flagged or None)
        actions.append(max((r["state"][n]["action"] for n in flagged), key=severity.get) if flagged else None)
    return {FIELDS[0]: states, FIELDS[1]: flags, FIELDS[2]: actions}


def _space_warnings(ps: PolicySet, space: Space) -> list[str]:
    out = []
    for p in ps:
        cal_space = (p.calibration or {}).get("space")
        if cal_space and cal_space != f"{space.name}@{space.version}":
            out.append(f"policy {p.name!r} was calibrated in space {cal_space}, this collection uses "
                       f"{space.name}@{space.version}: its threshold may not carry over; calibrate it again")
    return out


def _bar(progress: bool, total: int):
    if not progress or not total:
        return None
    from ..progress import ProgressBar

    return ProgressBar("moderating", total)


# ---- calibration from labelled items --------------------------------------------------------------------------------
@dataclass
class CalibrationReport:
    policies: list[Calibration]
    skipped: list[dict]                   # labelled items that could not be used: item, where, reason
    output: str | None                    # the policy file written (None when nothing changed or dry_run)
    space: dict

    @property
    def ok(self) -> bool:
        """Every policy with labelled examples met its target, and every labelled item was used."""
        tried = [c for c in self.policies if c.positives or c.negatives]
        return bool(tried) and all(c.met for c in tried) and not self.skipped

    def to_dict(self) -> dict:
        return {"ok": self.ok, "policies": [c.to_dict() for c in self.policies], "skipped": self.skipped,
                "output": self.output, "space": self.space}


def calibrate_policies(policies: Any, labels: str | Path, *, collection: Collection | None = None,
                       space: Space | None = None, target_precision: float | None = None,
                       target_recall: float | None = None, only: Sequence[str] | None = None,
                       output: str | Path | None = None, skip_unknown: bool = False,
                       dry_run: bool = False) -> CalibrationReport:
    """Set each policy's threshold from labelled items (see policies.read_verdicts for the file) to meet a target
    precision or recall, and write the policy file (`output`, default: the file read) with the new thresholds
    and versions. Items are ids or paths in `collection`, or files embedded with `space`. A policy whose target
    cannot be met keeps its threshold and says why. Unusable items are an error unless `skip_unknown`."""
    ps = as_policies(policies)
    if only:
        for name in only:
            ps.get(name)   # an unknown name is an error, not a silent no-op
    if collection is None and space is None:
        raise ConfigError("calibration needs a collection (for item ids and stored paths) or a space")
    space = space or collection.space
    if collection is not None:
        collection.check_space(space.name, space.version, space.dim)
    verdicts = [v for v in read_verdicts(labels, ps) if not only or v.policy in only]
    vectors, segments, skipped = _resolve_items(collection, space, [v.item for v in verdicts], Path(labels).parent)
    if skipped and not skip_unknown:
        first = {s["item"]: s for s in skipped}
        where = {v.item: v.where for v in verdicts}
        lines = [f"{where[i]}: {i!r}: {s['reason']}" for i, s in list(first.items())[:5]]
        raise ConfigError(f"{len(first)} labelled item(s) cannot be used:\n  " + "\n  ".join(lines) +
                          ("\n  ..." if len(first) > 5 else "") + "\nfix the labels file, or pass --skip-unknown")
    for s in skipped:
        s["where"] = next(v.where for v in verdicts if v.item == s["item"])
    results, updated = [], ps
    for p in ps:
        if only and p.name not in only:
            continue
        truth = _examples(p.name, [v for v in verdicts if v.item in vectors])
        if truth:
            items = list(truth)
            scores, _ = worst_part_scores(space, p, items, np.stack([vectors[i] for i in items]), segments)
            cal = choose_threshold(scores, [truth[i] for i in items], target_precision=target_precision,
                                   target_recall=target_recall, policy=p.name)
        else:
            cal = choose_threshold([], [], target_precision=target_precision, target_recall=target_recall,
                                   policy=p.name)
        cal.old_version = cal.new_version = p.version
        if cal.met:
            new = replace(p, threshold=cal.threshold, calibration={
                **cal.target, "precision": cal.precision, "recall": cal.recall, "positives": cal.positives,
                "negatives": cal.negatives, "labels": str(labels), "space": f"{space.name}@{space.version}",
                "time": _now()})
            cal.new_version = new.version
            updated = updated.replace(new)
        results.append(cal)
    target = Path(output) if output else ps.path
    written = None
    if any(c.met for c in results) and not dry_run:
        if target is None:
            raise ConfigError("say where to write the calibrated policies (output=)")
        from .policies import save_policies

        written = str(save_policies(updated, target))
    return CalibrationReport(results, skipped, written, {"name": space.name, "version": space.version})


def _examples(policy: str, verdicts: list) -> dict[str, bool]:
    """item -> verdict for one policy; the same item labelled both ways is an error naming both lines."""
    truth: dict[str, tuple[bool, str]] = {}
    for v in verdicts:
        if v.policy != policy:
            continue
        if v.item in truth and truth[v.item][0] != v.verdict:
            raise ConfigError(f"{v.where}: item {v.item!r} is labelled both ways for policy {policy!r} (also at "
                              f"{truth[v.item][1]})")
        truth[v.item] = (v.verdict, v.where)
    return {k: t for k, (t, _) in truth.items()}


def _resolve_items(col: Collection | None, space: Space, items: list[str],
                   base: Path) -> tuple[dict[str, np.ndarray], _Segments, list[dict]]:
    """A vector (and segments) per labelled item: a stored item (id, content hash or stored path), else a file
    embedded now. Segments are keyed by the labelled item as written."""
    wanted = list(dict.fromkeys(items))
    ids: dict[str, str] = {}
    if col is not None:
        known = {}
        for r in col.items(None, ["id", "content_hash", "paths"]).to_pylist():
            known[r["id"]] = known[r["content_hash"]] = r["id"]
            for p in r["paths"] or []:
                known[p] = r["id"]
        for item in wanted:
            key = next((k for k in (item, *_path_forms(item, base)) if k in known), None)
            if key is not None:
                ids[item] = known[key]
    vectors: dict[str, np.ndarray] = {}
    segments: list[_Segments] = []
    if ids:
        unique = list(dict.fromkeys(ids.values()))
        stored = dict(zip(unique, item_vectors(col, unique)))
        vectors = {item: stored[iid] for item, iid in ids.items()}
        seg = _Segments.load(col, unique)
        for item, iid in ids.items():
            rows = [j for j, x in enumerate(seg.ids) if x == iid]
            if rows:
                segments.append(_Segments([item] * len(rows), [seg.info[j] for j in rows], seg.vectors[rows]))
    skipped, files = [], []
    for item in wanted:
        if item in vectors:
            continue
        found = next((f for f in _path_forms(item, base) if Path(f).is_file()), None)
        if found:
            files.append((item, found))
        else:
            where = f"collection {col.name!r}" if col is not None else "the collection (none given)"
            skipped.append({"item": item, "reason": f"not an item id or stored path of {where}, and not a file"})
    if files:
        for (item, _), res in zip(files, space.embed_items([Path(f) for _, f in files], on_error="return")):
            if isinstance(res, MediaError):
                skipped.append({"item": item, "reason": f"{res.stage} failed: {res.cause}"})
                continue
            vectors[item] = res.vector
            if res.segments:
                segments.append(_Segments([item] * len(res.segments),
                                          [{"index": n, "start": g.start, "end": g.end}
                                           for n, g in enumerate(res.segments)],
                                          np.stack([g.vector for g in res.segments])))
    return vectors, _Segments.concat(segments, space.dim), skipped


def _path_forms(item: str, base: Path) -> list[str]:
    """The absolute paths a labelled item may mean: relative to the labels file, then to the working folder."""
    p = Path(item).expanduser()
    if p.is_absolute():
        return [str(p.resolve())]
    return list(dict.fromkeys([str((base / p).resolve()), str(p.resolve())]))
