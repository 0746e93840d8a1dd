"""A mixed collection on a bound space: pictures, sounds and videos with sound tracks indexed together; search,
recommend and dupes across them; hits say which modality matched."""
from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import omnivec
from omnivec.ingest.pipeline import index
from omnivec.train.sounds import CONCEPTS, SAMPLE_RATE, Concept, sample_looks, sample_sounds

PER_CONCEPT = 2
FOLDER_SEED, QUERY_SEED = 31, 47
# (what the video shows, what its sound track plays): the picture and the sound are of different concepts
VIDEOS = ((CONCEPTS[0], CONCEPTS[2]), (CONCEPTS[1], CONCEPTS[3]))
VIDEO_SECONDS = 4


def _stem(c: Concept) -> str:
    return f"{c.colour}-{c.shape}"


def _write_video(path: Path, frame: np.ndarray, sound: Path, fps: int = 10) -> None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("ffmpeg is needed to make videos with sound tracks")
    h, w = frame.shape[:2]
    raw = np.ascontiguousarray(frame, np.uint8).tobytes() * (VIDEO_SECONDS * fps)
    subprocess.run([exe, "-nostdin", "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "rgb24", "-s",
                    f"{w}x{h}", "-r", str(fps), "-i", "-", "-i", str(sound), "-c:v", "libx264", "-preset",
                    "ultrafast", "-pix_fmt", "yuv420p", "-g", "25", "-c:a", "aac", "-shortest", str(path)],
                   input=raw, check=True, capture_output=True)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mixed")
    for sub in ("pictures", "sounds", "videos"):
        (root / sub).mkdir()
    for i, scene in enumerate(sample_looks(PER_CONCEPT, seed=FOLDER_SEED, split="heldout")):
        scene.render(64).save(root / "pictures" / f"{scene.colour}-{scene.shape}-{i}.png")
    for i, s in enumerate(sample_sounds(PER_CONCEPT, seed=FOLDER_SEED, split="heldout")):
        sf.write(root / "sounds" / f"{_stem(s.concept)}-{i}.wav", s.render(), SAMPLE_RATE)
    tracks = sample_sounds(1, seed=FOLDER_SEED + 1, split="heldout")
    for (shown, heard), look in zip(VIDEOS, sample_looks(1, seed=FOLDER_SEED + 1, split="heldout")[:2]):
        track = replace(next(t for t in tracks if t.concept == heard), seconds=VIDEO_SECONDS)
        wav = root / "sounds" / f"{_stem(heard)}-soundtrack-of-{_stem(shown)}-video.wav"
        sf.write(wav, track.render(), SAMPLE_RATE)  # the same sound also as a file of its own (for dupes)
        _write_video(root / "videos" / f"{_stem(shown)}-sounding-{_stem(heard)}.mp4", np.asarray(look.render(64)), wav)
    return root


@pytest.fixture(scope="module")
def indexed(bound, folder, tmp_path_factory):
    """(collection, index summary): the folder indexed into a collection pinned to the bound space's folder."""
    home = tmp_path_factory.mktemp("home")
    c = omnivec.open_collection(home / "mixed", space=str(bound[0]), create=True)
    return c, index(c, [folder])


@pytest.fixture(scope="module")
def col(indexed):
    return indexed[0]


def _names(hits) -> list[str]:
    return [Path(h.paths[0]).name for h in hits]


def _query_sound(concept: Concept, tmp_path: Path) -> Path:
    s = next(x for x in sample_sounds(1, seed=QUERY_SEED, split="heldout") if x.concept == concept)
    path = tmp_path / f"query-{_stem(concept)}.wav"
    sf.write(path, s.render(), SAMPLE_RATE)
    return path


def test_pictures_sounds_and_videos_are_indexed_together(indexed):
    col, s = indexed
    n_pictures, n_sounds = PER_CONCEPT * len(CONCEPTS), PER_CONCEPT * len(CONCEPTS) + len(VIDEOS)
    assert s.indexed == n_pictures + n_sounds + len(VIDEOS), s.to_dict()
    assert not s.skipped and not s.failed
    kinds = col.items(None, ["modality"]).column("modality").to_pylist()
    assert {m: kinds.count(m) for m in set(kinds)} == {"image": n_pictures, "audio": n_sounds, "video": len(VIDEOS)}


def test_a_video_sound_track_is_stored_as_segments(col, bound_space):
    window = bound_space.backend.audio_window_seconds
    rows = col.store.scan("kind = 'segment' AND modality = 'video'", ["id", "start", "end"]).to_pylist()
    per_video: dict[str, list] = {}
    for r in rows:
        per_video.setdefault(r["id"], []).append((r["start"], r["end"]))
    assert len(per_video) == len(VIDEOS)
    expected = [(0.0, float(VIDEO_SECONDS))] + [(t, t + window) for t in np.arange(0, VIDEO_SECONDS, window)]
    for spans in per_video.values():
        # one picture segment (segments are 5 s; the video lasts 4), plus the sound track's 2 s windows
        assert np.allclose(sorted(spans), sorted(expected), atol=0.1), spans


def test_a_sound_finds_its_concept_in_every_modality(col, tmp_path):
    shown, heard = VIDEOS[0]
    q = _query_sound(heard, tmp_path)
    top_picture = col.search(audio=str(q), k=1, modalities=["image"])[0]
    assert top_picture.modality == "image" and _names([top_picture])[0].startswith(_stem(heard) + "-")
    top_sound = col.search(audio=str(q), k=1, modalities=["audio"])[0]
    assert top_sound.modality == "audio" and _names([top_sound])[0].startswith(_stem(heard) + "-")
    # The video that shows something else but sounds like the query, found through its sound track's window.
    top_video = col.search(audio=str(q), k=1, modalities=["video"])[0]
    assert _names([top_video]) == [f"{_stem(shown)}-sounding-{_stem(heard)}.mp4"]
    assert top_video.start is not None and top_video.end - top_video.start == pytest.approx(2.0, abs=0.05)


def test_pictures_and_words_find_sounds(col, folder):
    pictures = sorted((folder / "pictures").glob("*.png"))
    by_picture = [(p.name.rsplit("-", 1)[0], col.search(image=str(p), k=1, modalities=["audio"])[0]) for p in pictures]
    by_words = [(_stem(c), col.search(f"a {c.colour} {c.shape}", k=1, modalities=["audio"])[0]) for c in CONCEPTS]
    for found in (by_picture, by_words):
        recall = np.mean([_names([h])[0].startswith(stem + "-") for stem, h in found])
        assert recall >= 0.7, [(stem, _names([h])[0]) for stem, h in found]


def test_hits_say_which_modality_matched(col, tmp_path):
    q = _query_sound(CONCEPTS[5], tmp_path)
    hits = col.search(audio=str(q), k=len(col))
    suffix = {"image": ".png", "audio": ".wav", "video": ".mp4"}
    assert {h.modality for h in hits} == {"image", "audio", "video"}
    assert all(h.paths[0].endswith(suffix[h.modality]) for h in hits)
    assert all((h.start is None) == (h.modality == "image") for h in hits)


def test_search_through_the_cli_reopens_the_bound_space(col, cli, tmp_path):
    q = _query_sound(CONCEPTS[4], tmp_path)
    r = cli("search", "--collection", col.folder, "--audio", q, "-k", "3", "--json")
    assert r.returncode == 0, r.stderr
    hits = json.loads(r.stdout)["hits"]
    assert hits[0]["modality"] == "audio" and Path(hits[0]["paths"][0]).name.startswith(_stem(CONCEPTS[4]) + "-")


def test_recommend_sounds_like_a_picture(col, folder):
    from omnivec.ops.recommend import recommend

    picture = folder / "pictures" / f"{_stem(CONCEPTS[6])}-{6 * PER_CONCEPT}.png"
    recs = recommend(col, like=[str(picture)], modalities=["audio"], k=2)
    assert [h.modality for h in recs.hits] == ["audio", "audio"]
    assert all(n.startswith(_stem(CONCEPTS[6]) + "-") for n in _names(recs.hits))


def test_dupes_join_a_sound_file_and_the_video_it_plays_in(col):
    from omnivec.ops.dupes import find_dupes

    shown, heard = VIDEOS[1]
    result = find_dupes(col, threshold=0.95)
    video = next(h for h in col.items(None, ["id", "paths"]).to_pylist()
                 if h["paths"][0].endswith(f"{_stem(shown)}-sounding-{_stem(heard)}.mp4"))
    group = result.group_of(video["id"])
    assert group is not None
    members = {Path(m["paths"][0]).name: m["modality"] for m in group.members}
    assert f"{_stem(heard)}-soundtrack-of-{_stem(shown)}-video.wav" in members
    # only sounds of that concept (the tiny CLAP hears every rendering of a concept alike) and the video
    assert all(name.startswith(_stem(heard) + "-") or name.endswith(".mp4") for name in members), members
