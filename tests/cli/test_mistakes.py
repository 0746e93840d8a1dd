"""Every mistake gets a clear error and a meaningful exit code, never a traceback or a silent empty answer; and a
command that fails changes nothing stored (a hypothesis fuzz test over commands, options and bad values)."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import omnivec
from omnivec.samples import scene

from cli_run import Run, in_process

COLOURS = ("red", "blue", "green", "yellow")


def cli(*args, home: Path) -> Run:
    return in_process(*args, home=home)


@pytest.fixture(scope="module")
def world(tmp_path_factory, tiny_clip_dir):
    """A collection of shape images from a manifest (year, album), one wav the space does not cover, one broken
    file; labels and policies files."""
    root = tmp_path_factory.mktemp("mistakes")
    pics = root / "pics"
    pics.mkdir()
    rng = np.random.default_rng(2)
    rows = []
    for i in range(12):
        path = pics / f"{COLOURS[i % 4]}-{i}.png"
        scene(rng, COLOURS[i % 4], "circle").render(48).save(path)
        rows.append({"path": path.name, "year": 2015 + i % 6, "album": "trips" if i % 3 else "home"})
    t = np.arange(16000) / 16000
    sf.write(pics / "tone.wav", (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000)
    rows.append({"path": "tone.wav", "year": 2020, "album": "home"})
    (pics / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    rows.append({"path": "broken.png", "year": 2020, "album": "home"})
    with open(pics / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "year", "album"])
        w.writeheader()
        w.writerows(rows)
    home = root / "home"
    r = cli("index", pics / "manifest.csv", "-c", "lib", "--space", tiny_clip_dir, "--json", home=home)
    assert r.returncode == 1, r.stderr   # the broken file
    summary = json.loads(r.stdout)
    assert summary["indexed"] == 12 and sum(summary["skipped"].values()) == 1
    (root / "labels.txt").write_text("red: a red shape\nblue: a blue shape\n")
    (root / "policy.yaml").write_text("policies:\n- name: red\n  threshold: 0.1\n  positives: [a red shape]\n"
                                      "  negatives: [a blue shape]\n")
    return {"root": root, "home": home, "pics": pics, "col": home / "collections" / "lib"}


def clean(r: Run) -> None:
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert r.returncode in (0, 1, 2, 3, 4), r.returncode


BAD_WHERE = ("search red", "cluster --method kmeans --k 2", "recommend --text red", "retrieve red", "dupes",
             "explain red {item}", "tag --labels {labels}", "diagnose")


@pytest.mark.parametrize("command", BAD_WHERE)
def test_a_misspelt_filter_field_is_named_with_the_valid_ones(world, command):
    col = omnivec.open_collection(world["col"])
    item = col.items(None, ["id"]).column("id")[0].as_py()
    args = command.format(item=item, labels=world["root"] / "labels.txt").split()
    if args[0] == "diagnose":   # diagnose takes no filter; drift's windows do
        args = ["drift", "--where-a", "yeer >= 2020", "--where-b", "year < 2020"]
    else:
        args += ["--where", "yeer >= 2020"]
    r = cli(*args, "-c", "lib", home=world["home"])
    clean(r)
    assert r.returncode == 2, (args, r.stderr)
    assert "'yeer'" in r.stderr and "album" in r.stderr and "year" in r.stderr, r.stderr


def test_a_filter_the_engine_rejects_is_a_usage_error(world):
    r = cli("search", "red", "-c", "lib", "--where", "year >>> 3", home=world["home"])
    clean(r)
    assert r.returncode == 2 and "not valid" in r.stderr


def test_unknown_and_uncovered_modalities_are_errors_not_empty_answers(world):
    r = cli("search", "red", "-c", "lib", "-m", "imag", home=world["home"])
    clean(r)
    assert r.returncode == 2 and "unknown modality 'imag'" in r.stderr
    r = cli("search", "red", "-c", "lib", "-m", "audio", home=world["home"])
    clean(r)
    assert r.returncode == 4 and "does not cover audio" in r.stderr
    col = omnivec.open_collection(world["col"])
    with pytest.raises(omnivec.ModalityError):
        col.search("red", modalities=["audio"])


def test_server_answers_the_same_mistakes_with_400(world):
    from fastapi.testclient import TestClient

    from omnivec.server import ServerConfig, create_app

    col = omnivec.open_collection(world["col"])
    with TestClient(create_app(col, ServerConfig(query_log=world["root"] / "q.jsonl"))) as client:
        for body, words in (({"text": "red", "where": "yeer >= 2020"}, "'yeer'"),
                            ({"text": "red", "modalities": ["imag"]}, "unknown modality"),
                            ({"text": "red", "modalities": ["audio"]}, "does not cover audio")):
            r = client.post("/search", json=body)
            assert r.status_code == 400 and words in r.text, (body, r.text)


def test_content_the_space_does_not_cover_is_a_modality_error(world, tiny_clip_dir):
    wav = world["pics"] / "tone.wav"
    r = cli("embed", wav, "--space", tiny_clip_dir, "--json", home=world["home"])
    clean(r)
    assert r.returncode == 4 and "does not cover audio" in json.loads(r.stdout)["failed"][0]["error"]
    space = omnivec.load_space(str(tiny_clip_dir))
    with pytest.raises(omnivec.ModalityError):
        space.embed([str(wav)])
    out = space.embed_items([str(wav)], on_error="return")[0]
    assert isinstance(out, omnivec.MediaError) and out.stage == "modality"   # one item's failure, in its place


def test_a_missing_input_creates_nothing(world, tiny_clip_dir):
    r = cli("index", world["root"] / "no-such-dir", "-c", "stray", "--space", tiny_clip_dir, home=world["home"])
    clean(r)
    assert r.returncode == 2 and "no such file or folder" in r.stderr
    assert not (world["home"] / "collections" / "stray").exists()


def test_like_takes_ids_hashes_and_paths_and_an_unknown_one_is_a_usage_error(world):
    home = world["home"]
    path = world["pics"] / "red-0.png"
    by_path = json.loads(cli("search", "--like", path, "-c", "lib", "-k", "3", "--json", home=home).stdout)
    col = omnivec.open_collection(world["col"])
    iid = col.find_item(str(path))
    by_id = json.loads(cli("search", "--like", iid, "-c", "lib", "-k", "3", "--json", home=home).stdout)
    assert by_path == by_id and iid not in [h["id"] for h in by_id["hits"]]
    for command in (("search", "--like", "0123456789abcdef"), ("explain", "red", "0123456789abcdef"),
                    ("recommend", "--like", "0123456789abcdef")):
        r = cli(*command, "-c", "lib", home=home)
        clean(r)
        assert r.returncode == 2 and "0123456789abcdef" in r.stderr, (command, r.stderr)


def test_empty_text_and_bad_event_are_usage_errors(world, tiny_clip_dir):
    home = world["home"]
    r = cli("search", "  ", "-c", "lib", home=home)
    clean(r)
    assert r.returncode == 2 and "empty" in r.stderr
    r = cli("embed", "--text", "", "--space", tiny_clip_dir, "--json", home=home)
    clean(r)
    assert r.returncode == 1 and "empty text" in json.loads(r.stdout)["failed"][0]["error"]
    r = cli("policy", "audit", "-c", "lib", "--event", "bogus", home=home)
    clean(r)
    assert r.returncode == 2 and "run-start, flag, clear, run-end" in r.stderr


def test_rerun_reports_skipped_content_as_skipped(world):
    r = cli("index", world["pics"] / "manifest.csv", "-c", "lib", "--json", home=world["home"])
    s = json.loads(r.stdout)
    assert s["unchanged"] == 12 and list(s["skipped"].values()) == [1], s
    assert "audio not covered" in next(iter(s["skipped"]))


def test_version_and_progress_lines_off_a_terminal(world, tiny_clip_dir, monkeypatch):
    r = cli("--version", home=world["home"])
    assert r.returncode == 0 and r.stdout.strip() == f"omnivec {omnivec.__version__}"
    monkeypatch.setenv("OMNIVEC_PROGRESS_SECONDS", "0")   # a line at every step, as a long run gets every 10 s
    pics = world["root"] / "more"
    shutil.copytree(world["pics"], pics)
    r = cli("index", pics, "-c", "progress", "--space", tiny_clip_dir, home=world["home"])
    lines = [x for x in r.stderr.splitlines() if x.startswith("indexing: ")]
    assert len(lines) >= 5 and lines[-1].startswith("indexing: 15/15 files"), r.stderr
    assert all("files/s" in x and "elapsed" in x for x in lines)


def test_eval_names_no_winner_on_a_tie(world, tiny_clip_dir, tmp_path):
    twin = tmp_path / "twin"
    shutil.copytree(tiny_clip_dir, twin)
    pairs = tmp_path / "pairs"
    pairs.mkdir()
    for p in sorted(world["pics"].glob("*-[0-7].png")):
        shutil.copy(p, pairs / p.name)
        (pairs / p.with_suffix(".txt").name).write_text(f"a {p.stem.split('-')[0]} circle\n")
    r = cli("eval", "retrieval", pairs, "--space", tiny_clip_dir, "--space", twin, "--json", home=world["home"])
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert all(best is None for best in report["best"].values()) and report["tied"], report["best"]
    r = cli("eval", "retrieval", pairs, "--space", tiny_clip_dir, "--space", twin, home=world["home"])
    assert "no single best for text->image" in r.stdout and "best for text->image by" not in r.stdout


# ---- fuzz: random commands, options and bad values ----------------------------------------------------------------
def snapshot(col_path: Path) -> tuple:
    """What a failed command must leave as it was: records (without vectors), errors, files, audit log."""
    col = omnivec.open_collection(col_path)
    rows = sorted((json.dumps({k: v for k, v in r.items() if k != "vector"}, sort_keys=True, default=str)
                   for r in col.store.scan(None).to_pylist()))
    audit = sorted(p.read_text() for p in col_path.rglob("*audit*") if p.is_file())
    return rows, col.errors(), sorted(map(str, col.store.all_files().to_pylist())), audit


WHERE = st.sampled_from(["year >= 2016", "yeer >= 2020", "album = 'trips'", "album = ", "year >>> 3", "",
                         "nosuch = 1 OR year = 2020", "array_has(tags, 'red')", "'unclosed"])
MODALITY = st.sampled_from(["image", "imag", "audio", "image,video", "", "video,smell"])
K = st.sampled_from(["3", "0", "-2", "1000000", "abc"])
ITEM = st.sampled_from(["0123456789abcdef", "../../etc/passwd", "", "{first}", "{path}"])


def commands(root: Path):
    labels, policy = str(root / "labels.txt"), str(root / "policy.yaml")
    return st.one_of(
        st.tuples(st.just("search"), st.sampled_from(["red", "", "a blue circle"]), st.just("--where"), WHERE,
                  st.just("-m"), MODALITY, st.just("-k"), K),
        st.tuples(st.just("search"), st.just("--like"), ITEM, st.just("-k"), K),
        st.tuples(st.just("cluster"), st.just("--method"), st.sampled_from(["kmeans", "hdbscan", "bogus"]),
                  st.just("--k"), K, st.just("--where"), WHERE),
        st.tuples(st.just("dupes"), st.just("--threshold"), st.sampled_from(["0.9", "2", "-1", "x"]),
                  st.just("-m"), MODALITY),
        st.tuples(st.just("recommend"), st.just("--like"), ITEM, st.just("--diversity"),
                  st.sampled_from(["0.3", "7", "-1"]), st.just("-m"), MODALITY),
        st.tuples(st.just("retrieve"), st.sampled_from(["red", ""]), st.just("--where"), WHERE, st.just("-k"), K),
        st.tuples(st.just("explain"), st.sampled_from(["red", ""]), ITEM),
        st.tuples(st.just("tag"), st.just("--labels"), st.sampled_from([labels, policy, "/no/such.txt"]),
                  st.just("--where"), WHERE, st.just("--top-k"), K),
        st.tuples(st.just("moderate"), st.just("--policies"), st.sampled_from([policy, labels, "/no/such.yaml"]),
                  st.just("--where"), WHERE),
        st.tuples(st.just("policy"), st.just("audit"), st.just("--event"),
                  st.sampled_from(["flag", "bogus", "run-end"])),
        st.tuples(st.just("drift"), st.just("--by"), st.sampled_from(["added", "year", "nope", "album"]),
                  st.just("--windows"), st.sampled_from(["2", "1", "9"])),
        st.tuples(st.just("errors")),
        st.tuples(st.just("diagnose"), st.just("-k"), K),
    )


@pytest.fixture(scope="module")
def fuzz_world(world, tmp_path_factory):
    """A copy of the collection for the fuzz test, so commands that succeed (tag, moderate) change only it."""
    home = tmp_path_factory.mktemp("fuzz-home")
    shutil.copytree(world["col"], home / "collections" / "lib")
    return {**world, "home": home, "col": home / "collections" / "lib"}


def test_fuzz_no_traceback_meaningful_exit_codes_and_failures_change_nothing(fuzz_world):
    col = omnivec.open_collection(fuzz_world["col"])
    fill = {"first": col.items(None, ["id"]).column("id")[0].as_py(), "path": str(fuzz_world["pics"] / "red-0.png")}

    @settings(max_examples=60, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(command=commands(fuzz_world["root"]), collection=st.sampled_from(["lib", "lib", "lib", "nosuch"]),
           json_out=st.booleans())
    def run(command, collection, json_out):
        args = [a.format(**fill) if "{" in a else a for a in command]
        args += ["-c", collection] + (["--json"] if json_out else [])
        before = snapshot(fuzz_world["col"])
        r = cli(*args, home=fuzz_world["home"])
        clean(r)
        if r.returncode != 0:
            assert r.stderr.strip(), (args, "a failure must say why")
            assert snapshot(fuzz_world["col"]) == before, (args, r.stderr)
        if json_out and r.returncode in (0, 1):
            json.loads(r.stdout)   # --json output is JSON whatever happened

    run()
