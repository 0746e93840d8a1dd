"""Written moderation policies: the YAML file, content-hash versions, and threshold calibration.

    policies:
      - name: red-things
        action: review                  # flag | review | block
        threshold: 0.05                 # on the score: max positive similarity minus max negative similarity
        positives: [a red shape, a picture of something red]
        negatives: [a blue shape, a green shape]
        templates: ["{}"]               # optional; the default uses each description as written

A policy's version is a hash of what decides its verdicts (descriptions, templates, threshold, action), so a
changed description or threshold is a new version, while its name, prose description and calibration record are
not part of it. Decisions record the version that made them."""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError

ACTIONS = ("flag", "review", "block")   # in rising severity
DEFAULT_TEMPLATES: tuple[str, ...] = ("{}",)   # policy descriptions are written phrases, used as they are
POLICY_KEYS = ("name", "description", "action", "threshold", "positives", "negatives", "templates", "calibration")
FEW_EXAMPLES = 10   # below this many positives or negatives, a measured precision or recall is only a rough guide


@dataclass(frozen=True)
class Policy:
    name: str
    positives: tuple[str, ...]
    negatives: tuple[str, ...]
    threshold: float | None = None        # None until set by hand or by calibration
    action: str = "flag"
    templates: tuple[str, ...] = DEFAULT_TEMPLATES
    description: str = ""
    calibration: Mapping[str, Any] | None = field(default=None, compare=False)

    def content(self) -> dict:
        """What decides verdicts. Descriptions are sorted: their order does not change a score."""
        return {"positives": sorted(self.positives), "negatives": sorted(self.negatives),
                "templates": list(self.templates), "threshold": self.threshold, "action": self.action}

    @property
    def version(self) -> str:
        return hashlib.sha256(json.dumps(self.content(), sort_keys=True).encode()).hexdigest()[:12]

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"name": self.name}
        if self.description:
            d["description"] = self.description
        d.update(action=self.action, threshold=self.threshold, positives=list(self.positives),
                 negatives=list(self.negatives))
        if self.templates != DEFAULT_TEMPLATES:
            d["templates"] = list(self.templates)
        if self.calibration:
            d["calibration"] = dict(self.calibration)
        return d


@dataclass(frozen=True)
class PolicySet:
    policies: tuple[Policy, ...]
    path: Path | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)   # other top-level keys, written back as they were
    templates: tuple[str, ...] | None = None                 # the file's default templates

    def __iter__(self):
        return iter(self.policies)

    def __len__(self) -> int:
        return len(self.policies)

    def get(self, name: str) -> Policy:
        for p in self.policies:
            if p.name == name:
                return p
        raise ConfigError(f"no policy named {name!r} (policies: {', '.join(p.name for p in self.policies)})")

    def replace(self, policy: Policy) -> "PolicySet":
        return replace(self, policies=tuple(policy if p.name == policy.name else p for p in self.policies))


# ---- reading and writing --------------------------------------------------------------------------------------------
def load_policies(path: str | Path) -> PolicySet:
    import yaml

    p = Path(path)
    try:
        obj = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"policy file {p}: cannot read it ({e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"policy file {p}: not valid YAML: {e}") from None
    return replace(parse_policies(obj, source=f"policy file {p}"), path=p)


def parse_policies(obj: Any, source: str = "policies") -> PolicySet:
    """A PolicySet from a parsed document: {policies: [...], templates: [...]}, {policies: {name: {...}}}, or a
    bare list of policies. Every mistake is reported with the policy it is in."""
    extra: dict[str, Any] = {}
    templates = None
    if isinstance(obj, Mapping):
        if "policies" not in obj:
            raise ConfigError(f"{source}: expected a top-level `policies:` list")
        extra = {k: v for k, v in obj.items() if k not in ("policies", "templates")}
        if obj.get("templates") is not None:
            templates = _strings(obj["templates"], f"{source}: templates")
        entries = obj["policies"]
        if isinstance(entries, Mapping):
            entries = [{"name": k, **(v or {})} if isinstance(v, Mapping) or v is None else v
                       for k, v in entries.items()]
    else:
        entries = obj
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{source}: `policies` must be a non-empty list of policies")
    policies, seen = [], set()
    for i, entry in enumerate(entries, 1):
        policy = _policy(entry, templates, f"{source}, policy {i}")
        if policy.name in seen:
            raise ConfigError(f"{source}: policy {policy.name!r} is defined twice")
        seen.add(policy.name)
        policies.append(policy)
    return PolicySet(tuple(policies), None, extra, templates)


def _policy(entry: Any, templates: tuple[str, ...] | None, where: str) -> Policy:
    if not isinstance(entry, Mapping):
        raise ConfigError(f"{where}: expected a mapping with name, positives, negatives, threshold, action")
    name = entry.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: a policy needs a `name`")
    where = f"{where} ({name!r})"
    unknown = sorted(set(entry) - set(POLICY_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; a policy has {', '.join(POLICY_KEYS)}")
    positives = _strings(entry.get("positives"), f"{where}: positives")
    # Similarities of different texts to one image are not on a common scale; the negatives give the score its
    # zero point (see moderate.policy_scores), so a policy without them could not be thresholded meaningfully.
    negatives = _strings(entry.get("negatives"), f"{where}: negatives (what the policy must NOT match)")
    threshold = entry.get("threshold")
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
            raise ConfigError(f"{where}: threshold must be a number, got {threshold!r}")
        threshold = float(threshold)
    action = entry.get("action", "flag")
    if action not in ACTIONS:
        raise ConfigError(f"{where}: action must be one of {', '.join(ACTIONS)}, got {action!r}")
    own = entry.get("templates")
    tmpl = _strings(own, f"{where}: templates") if own is not None else (templates or DEFAULT_TEMPLATES)
    if any(t.count("{}") > 1 for t in tmpl):
        raise ConfigError(f"{where}: a template holds one '{{}}' where the description goes")
    calibration = entry.get("calibration")
    if calibration is not None and not isinstance(calibration, Mapping):
        raise ConfigError(f"{where}: calibration must be a mapping (it is written by `omnivec policy calibrate`)")
    description = entry.get("description") or ""
    return Policy(name.strip(), positives, negatives, threshold, action, tmpl, str(description), calibration)


def _strings(value: Any, where: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or \
            not all(isinstance(s, str) and s.strip() for s in items):
        raise ConfigError(f"{where}: expected one or more non-empty strings, got {value!r}")
    return tuple(s.strip() for s in items)


def save_policies(policies: PolicySet, path: str | Path) -> Path:
    """Write the policy file atomically (a reader sees the old file or the new one). Comments are not kept."""
    import yaml

    p = Path(path)
    doc: dict[str, Any] = dict(policies.extra)
    if policies.templates is not None:
        doc["templates"] = list(policies.templates)
    doc["policies"] = [_file_dict(pol, policies.templates) for pol in policies.policies]
    tmp = p.with_name(f".{p.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(doc, f, sort_keys=False, allow_unicode=True, width=110)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
    return p


def _file_dict(policy: Policy, file_templates: tuple[str, ...] | None) -> dict:
    d = policy.to_dict()
    if file_templates is not None and policy.templates == file_templates:
        d.pop("templates", None)       # inherited from the file's default
    elif file_templates is not None:
        d["templates"] = list(policy.templates)
    return d


# ---- labelled verdicts ----------------------------------------------------------------------------------------------
TRUE_WORDS = {"1", "true", "yes", "y", "positive", "pos", "violation", "violates", "flag", "flagged"}
FALSE_WORDS = {"0", "false", "no", "n", "negative", "neg", "ok", "clean", "pass", "allowed"}
ITEM_KEYS = ("item", "path", "id")


@dataclass(frozen=True)
class Verdict:
    item: str          # a path or an item id, as written
    policy: str
    verdict: bool
    where: str         # "verdicts.csv line 4", for error messages


def read_verdicts(path: str | Path, policies: PolicySet) -> list[Verdict]:
    """Labelled verdicts from CSV (with a header) or JSONL. Each row names an item (`item`, `path` or `id`) and
    either `policy` + `verdict`, or one column per policy name; with a single policy a bare `verdict` will do.
    Verdicts are yes/no words (1/0, true/false, yes/no, violates/ok, ...); an empty cell means no verdict."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"labels file {p}: cannot read it ({e})") from None
    if p.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ConfigError(f"labels file {p} line {n}: not JSON ({e})") from None
                if not isinstance(row, dict):
                    raise ConfigError(f"labels file {p} line {n}: expected a JSON object")
                rows.append((f"{p.name} line {n}", row))
    else:
        reader = csv.DictReader(text.splitlines())
        if not reader.fieldnames:
            raise ConfigError(f"labels file {p}: empty, or no header row")
        rows = [(f"{p.name} line {reader.line_num}", row) for row in reader]
    names = {pol.name for pol in policies}
    verdicts: list[Verdict] = []
    for where, row in rows:
        row = {str(k).strip(): v for k, v in row.items() if k is not None}
        key = next((k for k in ITEM_KEYS if _present(row.get(k))), None)
        if key is None:
            raise ConfigError(f"{where}: no item (give an `item`, `path` or `id` column)")
        item = str(row[key]).strip()
        if "policy" in row:
            pol = str(row["policy"]).strip()
            if pol not in names:
                raise ConfigError(f"{where}: unknown policy {pol!r} (policies: {', '.join(sorted(names))})")
            pairs = [(pol, row.get("verdict"))]
        elif any(n in row for n in names):
            pairs = [(n, row.get(n)) for n in names if n in row]
        elif "verdict" in row and len(names) == 1:
            pairs = [(next(iter(names)), row["verdict"])]
        else:
            raise ConfigError(f"{where}: say which policy the verdict is for: a `policy` column, or one column "
                              f"per policy name ({', '.join(sorted(names))})")
        for pol, value in pairs:
            if _present(value):
                verdicts.append(Verdict(item, pol, _truth(value, where), where))
    return verdicts


def _present(v: Any) -> bool:
    return v is not None and str(v).strip() != ""


def _truth(v: Any, where: str) -> bool:
    if isinstance(v, bool):
        return v
    word = str(v).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(f"{where}: verdict {v!r} is neither yes (1, true, yes, violates) nor no (0, false, no, ok)")


# ---- calibration ----------------------------------------------------------------------------------------------------
@dataclass
class Calibration:
    policy: str
    positives: int
    negatives: int
    met: bool
    threshold: float | None = None     # the new threshold (None when the target cannot be met)
    precision: float | None = None     # on the labelled examples, at that threshold
    recall: float | None = None
    flagged: int | None = None
    reason: str = ""                   # why not met, or a caution about few examples
    target: dict = field(default_factory=dict)
    old_version: str = ""
    new_version: str = ""

    def to_dict(self) -> dict:
        return {"policy": self.policy, "met": self.met, "threshold": self.threshold, "precision": self.precision,
                "recall": self.recall, "flagged": self.flagged, "positives": self.positives,
                "negatives": self.negatives, "target": self.target, "reason": self.reason,
                "old_version": self.old_version, "new_version": self.new_version}


def choose_threshold(scores: Sequence[float], truth: Sequence[bool], *, target_precision: float | None = None,
                     target_recall: float | None = None, policy: str = "") -> Calibration:
    """The threshold (flag when score >= threshold) that meets the target on these labelled examples: for a target
    precision, the one with the highest recall among those reaching it; for a target recall, the one with the
    highest precision. It sits halfway between the lowest flagged score and the next lower one, so it makes the
    same calls on these examples with some room on either side."""
    from sklearn.metrics import precision_recall_curve

    if (target_precision is None) == (target_recall is None):
        raise ConfigError("give exactly one of a target precision or a target recall")
    target = target_precision if target_precision is not None else target_recall
    if not 0 < target <= 1:
        raise ConfigError(f"a target must be in (0, 1], got {target}")
    s, y = np.asarray(scores, np.float64), np.asarray(truth, bool)
    goal = {"precision": target_precision} if target_precision is not None else {"recall": target_recall}
    cal = Calibration(policy, int(y.sum()), int((~y).sum()), False, target=goal)
    if cal.positives == 0 and cal.negatives == 0:
        cal.reason = "no labelled examples: threshold unchanged"
        return cal
    if cal.positives == 0 or cal.negatives == 0:
        cal.reason = (f"needs labelled examples of both kinds; got {cal.positives} positive and {cal.negatives} "
                      f"negative")
        return cal
    precision, recall, thresholds = precision_recall_curve(y, s)
    precision, recall = precision[:-1], recall[:-1]       # the last point is "flag nothing", with no threshold
    if target_precision is not None:
        ok = np.flatnonzero(precision >= target_precision)
        if not len(ok):
            best = int(np.argmax(precision))
            cal.reason = (f"precision {target_precision} cannot be reached on these examples: the best is "
                          f"{precision[best]:.3f} (at recall {recall[best]:.3f})")
            return cal
        pick = ok[np.lexsort((-thresholds[ok], -precision[ok], -recall[ok]))[0]]
    else:
        ok = np.flatnonzero(recall >= target_recall)
        pick = ok[np.lexsort((-thresholds[ok], -precision[ok]))[0]]
    lowest_flagged = float(thresholds[pick])
    below = s[s < lowest_flagged]
    middle = (lowest_flagged + float(below.max())) / 2 if len(below) else lowest_flagged
    threshold = math.floor(middle * 1e6) / 1e6       # rounded down, so the lowest flagged example stays flagged
    flagged = s >= threshold
    tp = int((flagged & y).sum())
    cal.met, cal.threshold, cal.flagged = True, threshold, int(flagged.sum())
    cal.precision, cal.recall = round(tp / max(1, cal.flagged), 4), round(tp / cal.positives, 4)
    if min(cal.positives, cal.negatives) < FEW_EXAMPLES:
        cal.reason = (f"only {cal.positives} positive and {cal.negatives} negative examples: the measured "
                      f"precision and recall are rough; label more to trust the threshold")
    return cal
