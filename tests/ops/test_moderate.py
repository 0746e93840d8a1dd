"""Moderation against written policies through the CLI and the Python API, with the trained shapes model:
flags, calibration for a target precision on a labelled split checked on a held-out split, versions, the audit
log, and clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import omnivec
from omnivec.errors import ConfigError
from omnivec.samples import scene, write_video

COLOURS = ("red", "blue", "green", "yellow", "purple", "orange")
ITEMS = 2 * 5 * len(COLOURS) + 2     # labelled and held-out images, and two videos
OTHERS = [c for c in COLOURS if c != "red"] + ["white", "black"]
POLICY = {"policies": [{
    "name": "red-things", "description": "anything red", "action": "review",
    "positives": ["a red shape", "a picture of something red"],
    "negatives": [f"{'an' if c[0] in 'aeiou' else 'a'} {c} shape" for c in OTHERS]}]}


def cli(capsys, *args) -> tuple[int, str, str]:
    from omnivec.cli import main

    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return e.value.code, captured.out, captured.err


def write_shapes(folder: Path, per_colour: int, seed: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for colour in COLOURS:
        for k in range(per_colour):
            shape = ("circle", "square", "triangle", "star")[k % 4]
            path = folder / f"{colour}-{shape}-{k}.png"
            scene(rng, colour, shape).render(64).save(path)
            paths.append(path)
    return paths


def is_red(path: str) -> bool:
    return Path(path).name.startswith("red-")


def write_policy(path: Path, **changes) -> Path:
    doc = json.loads(json.dumps(POLICY))
    doc["policies"][0].update(changes)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def world(shapes_clip_dir, tmp_path_factory):
    """A collection with a labelled split (calibration) and a held-out split of generated shape images."""
    from omnivec.cli import main

    root = tmp_path_factory.mktemp("moderation")
    labelled = write_shapes(root / "labelled", per_colour=5, seed=11)
    heldout = write_shapes(root / "heldout", per_colour=5, seed=12)
    (root / "videos").mkdir()
    rng = np.random.default_rng(13)
    for first, second in (("red", "blue"), ("green", "yellow")):   # five seconds of each colour at 10 fps
        frames = [scene(rng, first, "circle").render(64)] * 50 + [scene(rng, second, "square").render(64)] * 50
        write_video(root / "videos" / f"{first}-then-{second}.mp4", frames, fps=10)
    with pytest.raises(SystemExit) as e:
        main(["index", str(root / "labelled"), str(root / "heldout"), str(root / "videos"), "--collection",
              str(root / "col"), "--space", str(shapes_clip_dir), "--json"])
    assert e.value.code == 0
    # verdicts by relative path (resolved against the labels file's folder), one column per policy
    rows = ["item,red-things"] + [f"labelled/{p.name},{'yes' if is_red(p.name) else 'no'}" for p in labelled]
    (root / "verdicts.csv").write_text("\n".join(rows) + "\n")
    return root, root / "col", labelled, heldout


@pytest.fixture
def calibrated(world, capsys, tmp_path):
    root, col, labelled, heldout = world
    policy = write_policy(tmp_path / "policy.yaml")
    code, out, err = cli(capsys, "policy", "calibrate", "--policies", policy, "--labels", root / "verdicts.csv",
                         "--collection", col, "--target-precision", "0.9", "--json")
    assert code == 0, err
    return policy, json.loads(out)


def test_calibrate_reaches_target_precision_and_reports_counts(calibrated):
    policy, report = calibrated
    [cal] = report["policies"]
    assert cal["met"] and cal["positives"] == 5 and cal["negatives"] == 25
    assert cal["precision"] >= 0.9 and cal["recall"] > 0
    assert cal["new_version"] != cal["old_version"]     # the threshold was set: a new version
    saved = yaml.safe_load(policy.read_text())["policies"][0]
    assert saved["threshold"] == cal["threshold"] and saved["calibration"]["precision"] == cal["precision"]
    assert saved["calibration"]["positives"] == 5 and saved["positives"] == POLICY["policies"][0]["positives"]
    from omnivec.ops.policies import load_policies

    assert load_policies(policy).get("red-things").version == cal["new_version"]


def test_moderate_flags_red_images_and_holds_on_heldout(world, calibrated, capsys):
    root, col, labelled, heldout = world
    policy, _ = calibrated
    code, out, err = cli(capsys, "moderate", "--collection", col, "--policies", policy, "--json")
    assert code == 0, err
    s = json.loads(out)
    assert s["evaluated"] == ITEMS
    flagged = {f["paths"][0] for f in s["flagged"]}
    held = {str(p.resolve()) for p in heldout}
    held_flags = flagged & held
    held_reds = {p for p in held if is_red(p)}
    precision = sum(is_red(p) for p in held_flags) / max(1, len(held_flags))
    recall = len(held_flags & held_reds) / len(held_reds)
    assert precision >= 0.85 and recall >= 0.6, (precision, recall, sorted(held_flags))
    # decisions are on the items, to filter by ...
    c = omnivec.open_collection(col)
    by_filter = {r[0] for r in c.items("array_has(moderation_flags, 'red-things')", ["paths"])
                 .column("paths").to_pylist()}
    assert by_filter == flagged
    assert c.items("moderation_action = 'review'", ["id"]).num_rows == len(flagged)
    # ... and in the audit log, with policy, version, score, action and time
    flags = [json.loads(line) for line in (col / "audit" / "moderation.jsonl").read_text().splitlines()]
    flags = [e for e in flags if e["event"] == "flag" and e["run"] == s["run"]]
    assert {e["paths"][0] for e in flags} == flagged
    version = s["policies"][0]["version"]
    assert all(e["policy"] == "red-things" and e["version"] == version and e["action"] == "review" and
               e["score"] >= e["threshold"] and e["time"].startswith("20") for e in flags)
    # a video is judged by its worst part: the red first half flags it, and the decision says when
    videos = {Path(f["paths"][0]).name: f for f in s["flagged"] if f["paths"][0].endswith(".mp4")}
    assert set(videos) == {"red-then-blue.mp4"}
    assert videos["red-then-blue.mp4"]["segment"]["start"] < 5.0 <= videos["red-then-blue.mp4"]["segment"]["end"]


def test_changed_policy_is_a_new_version_and_old_decisions_keep_theirs(world, calibrated, capsys, tmp_path):
    root, col, _, _ = world
    policy, report = calibrated
    assert cli(capsys, "moderate", "-c", col, "-p", policy, "--json")[0] == 0
    v1 = report["policies"][0]["new_version"]
    log = col / "audit" / "moderation.jsonl"
    before = log.read_bytes()
    doc = yaml.safe_load(policy.read_text())
    doc["policies"][0]["positives"].append("a bright red object")
    policy.write_text(yaml.safe_dump(doc))
    code, out, _ = cli(capsys, "policy", "show", "-p", policy, "--json")
    v2 = json.loads(out)["policies"][0]["version"]
    assert code == 0 and v2 != v1
    code, out, _ = cli(capsys, "moderate", "-c", col, "-p", policy, "--new-only", "--json")
    s = json.loads(out)
    assert code == 0 and s["evaluated"] == ITEMS and s["policies"][0]["version"] == v2   # every decision was v1's
    after = log.read_bytes()
    assert after.startswith(before)                      # append-only: nothing earlier was rewritten
    entries = [json.loads(x) for x in after.splitlines()]
    old = [e for e in entries if e["event"] == "flag" and e["run"] != s["run"]]
    new = [e for e in entries if e["event"] == "flag" and e["run"] == s["run"]]
    assert old and new and {e["version"] for e in new} == {v2} and v1 in {e["version"] for e in old}
    assert all(e["previous"]["version"] != v2 for e in new if e["previous"])
    c = omnivec.open_collection(col)
    states = [json.loads(m)["red-things"]["version"] for m in c.items(None, ["moderation"]).column("moderation")
              .to_pylist()]
    assert set(states) == {v2}
    # nothing new to decide now
    code, out, _ = cli(capsys, "moderate", "-c", col, "-p", policy, "--new-only", "--json")
    assert json.loads(out)["evaluated"] == 0 and json.loads(out)["unchanged"] == ITEMS
    # the audit command reads the log back, per policy version
    code, out, _ = cli(capsys, "policy", "audit", "-c", col, "--event", "flag", "--json")
    assert code == 0 and {e["version"] for e in json.loads(out)["entries"]} >= {v1, v2}


def test_a_torn_last_line_is_left_alone(world, calibrated, capsys):
    root, col, _, _ = world
    policy, _ = calibrated
    log = col / "audit" / "moderation.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as f:
        f.write(b'{"event": "flag", "tor')          # a crash in the middle of a write
    torn = log.read_bytes()
    assert cli(capsys, "moderate", "-c", col, "-p", policy, "--json")[0] == 0
    after = log.read_bytes()
    assert after.startswith(torn) and after[len(torn):len(torn) + 1] == b"\n"
    from omnivec.ops.moderate import read_audit

    assert read_audit(omnivec.open_collection(col), event="run-end")   # readers skip the torn line


def test_calibrate_files_with_a_space_for_a_target_recall(world, capsys, tmp_path, shapes_clip_dir):
    """Labelled files that are not in any collection are embedded with the given space; videos count by their
    worst segment, as in moderation."""
    root, _, labelled, _ = world
    files = labelled + sorted((root / "videos").iterdir())
    verdicts = tmp_path / "verdicts.jsonl"
    verdicts.write_text("".join(json.dumps({"path": str(p), "red-things": "violates" if is_red(p.name) else "ok"})
                                + "\n" for p in files))
    policy = write_policy(tmp_path / "policy.yaml")
    code, out, err = cli(capsys, "policy", "calibrate", "-p", policy, "--labels", verdicts, "--space",
                         shapes_clip_dir, "--target-recall", "1.0", "--output", tmp_path / "out.yaml", "--json")
    assert code == 0, err
    [cal] = json.loads(out)["policies"]
    assert cal["positives"] == 6 and cal["negatives"] == 26 and cal["recall"] == 1.0 and cal["precision"] >= 0.85
    assert yaml.safe_load((tmp_path / "out.yaml").read_text())["policies"][0]["threshold"] == cal["threshold"]
    assert "threshold" not in yaml.safe_load(policy.read_text())["policies"][0]   # --output: the input is kept


def test_calibration_errors_and_unmet_targets(world, capsys, tmp_path):
    root, col, labelled, _ = world
    policy = write_policy(tmp_path / "policy.yaml")
    original = policy.read_text()
    # an item that is in neither the collection nor on disk: a usage error naming the line
    bad = root / "verdicts-with-unknown.csv"
    bad.write_text((root / "verdicts.csv").read_text() + "labelled/no-such-image.png,yes\n")
    code, _, err = cli(capsys, "policy", "calibrate", "-p", policy, "--labels", bad, "-c", col,
                       "--target-precision", "0.9")
    assert code == 2 and "line 32" in err and "no-such-image.png" in err and "--skip-unknown" in err
    assert policy.read_text() == original
    # with --skip-unknown the rest is used, and the exit code says something was left out
    code, out, _ = cli(capsys, "policy", "calibrate", "-p", policy, "--labels", bad, "-c", col,
                       "--target-precision", "0.9", "--skip-unknown", "--json")
    r = json.loads(out)
    assert code == 1 and r["skipped"][0]["item"] == "labelled/no-such-image.png" and r["policies"][0]["met"]
    # verdicts that contradict the images: the target cannot be met, and the file is left as it was
    write_policy(policy)
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text("".join(json.dumps({"path": str(p), "policy": "red-things",
                                         "verdict": p.name.startswith("blue-")}) + "\n" for p in labelled))
    code, out, _ = cli(capsys, "policy", "calibrate", "-p", policy, "--labels", wrong, "-c", col,
                       "--target-precision", "0.9", "--json")
    r = json.loads(out)
    assert code == 1 and not r["policies"][0]["met"] and "cannot be reached" in r["policies"][0]["reason"]
    assert r["output"] is None and policy.read_text() == write_policy(tmp_path / "same.yaml").read_text()
    # both targets, or none: usage error
    code, _, _ = cli(capsys, "policy", "calibrate", "-p", policy, "--labels", wrong, "-c", col)
    assert code == 2


@pytest.mark.parametrize("change, message", [
    ({"negatives": []}, "negatives"),
    ({"action": "delete"}, "action must be one of flag, review, block"),
    ({"positive": ["a red shape"]}, "unknown keys ['positive']"),
    ({"threshold": "high"}, "threshold must be a number"),
])
def test_bad_policy_files_are_usage_errors(world, capsys, tmp_path, change, message):
    _, col, _, _ = world
    policy = write_policy(tmp_path / "p.yaml", **({"threshold": 0.1} | change))
    code, _, err = cli(capsys, "moderate", "-c", col, "-p", policy)
    assert code == 2 and message in err and "'red-things'" in err


def test_unparseable_or_uncalibrated_policy_files(world, capsys, tmp_path):
    _, col, _, _ = world
    broken = tmp_path / "broken.yaml"
    broken.write_text("policies:\n  - name: x\n    positives: [a\n")
    code, _, err = cli(capsys, "moderate", "-c", col, "-p", broken)
    assert code == 2 and "not valid YAML" in err and "line" in err
    code, _, err = cli(capsys, "moderate", "-c", col, "-p", write_policy(tmp_path / "p.yaml"))
    assert code == 2 and "no threshold" in err and "omnivec policy calibrate" in err


def test_versions_follow_content_not_form():
    from omnivec.ops.policies import parse_policies

    base = POLICY["policies"][0] | {"threshold": 0.1}

    def version(**changes):
        return parse_policies({"policies": [base | changes]}).policies[0].version

    v = version()
    assert version(positives=list(reversed(base["positives"]))) == v       # order does not change a score
    assert version(description="something else", calibration={"precision": 1.0}) == v
    assert version(threshold=0.2) != v
    assert version(positives=base["positives"] + ["crimson"]) != v
    assert version(templates=["a photo of {}."]) != v
    assert version(action="block") != v


def test_choose_threshold_on_given_scores():
    from omnivec.ops.policies import choose_threshold

    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]
    truth = [True, True, False, True, False, False, False]
    c = choose_threshold(scores, truth, target_precision=0.75)
    assert c.met and c.precision == 0.75 and c.recall == 1.0 and 0.5 < c.threshold <= 0.6
    c = choose_threshold(scores, truth, target_precision=1.0)
    assert c.met and c.recall == round(2 / 3, 4) and 0.7 < c.threshold <= 0.8
    c = choose_threshold(scores, truth, target_recall=0.5)
    assert c.met and c.precision == 1.0 and c.flagged == 2
    c = choose_threshold([0.9, 0.1], [False, True], target_precision=0.9)
    assert not c.met and "cannot be reached" in c.reason
    c = choose_threshold([0.9, 0.1], [True, True], target_precision=0.9)
    assert not c.met and "both kinds" in c.reason
    with pytest.raises(ConfigError):
        choose_threshold(scores, truth)


def test_moderate_vectors_python_api(shapes_clip):
    from omnivec.ops.moderate import moderate_vectors
    from omnivec.ops.policies import parse_policies

    rng = np.random.default_rng(9)
    scenes = [scene(rng, c, "square") for c in ("red", "red", "blue", "green", "yellow")]
    vectors = shapes_clip.embed_image([s.render(64) for s in scenes])
    policies = parse_policies({"policies": [POLICY["policies"][0] | {"threshold": 0.0}]})
    decisions = moderate_vectors(shapes_clip, vectors, policies)
    assert [d[0]["flagged"] for d in decisions] == [True, True, False, False, False]
    assert all(d[0]["version"] == policies.policies[0].version for d in decisions)
