"""Recommendation end to end with the trained shapes model: likes and unlikes move the ranking by colour, MMR
diversifies, exclusions hold, a photo recommends the video segments that show its colour, a photo plus a text
combine."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli_run import cli, main
import omnivec
from omnivec.ops.recommend import recommend
from omnivec.samples import scene, write_video
from omnivec.train.shapes import Scene

COLOURS = ("red", "blue", "green", "yellow", "purple", "orange")
SHAPES = ("circle", "square", "triangle", "star")
VIDEOS = (("red", "blue"), ("green", "yellow"), ("purple", "orange"), ("blue", "green"))


def colour_of(path: str) -> str:
    return Path(path).name.split("-")[0]






@pytest.fixture(scope="module")
def library(shapes_clip_dir, tmp_path_factory) -> tuple[Path, Path]:
    """Shapes of six colours on white, a few red and blue ones on black, and four videos of two scenes each."""
    root = tmp_path_factory.mktemp("library")
    rng = np.random.default_rng(5)

    def render(colour: str, shape: str, background: str):
        s = scene(rng, colour, shape)
        return Scene(shape, colour, s.size, background, s.x, s.y, s.radius, s.angle).render(64)

    for colour in COLOURS:
        for i, shape in enumerate(SHAPES):
            render(colour, shape, "white").save(root / f"{colour}-{shape}-white-{i}.png")
    for colour in ("red", "blue"):
        for i, shape in enumerate(SHAPES[:2]):
            render(colour, shape, "black").save(root / f"{colour}-{shape}-black-{i}.png")
    for first, second in VIDEOS:   # 5 s of each scene: one video segment each
        write_video(root / f"{first}-then-{second}.mp4",
                    [render(first, "circle", "white")] * 10 + [render(second, "square", "white")] * 10, fps=2)
    home = tmp_path_factory.mktemp("home")
    r = cli("index", root, "--collection", "lib", "--space", shapes_clip_dir, "--json", home=home)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["indexed"] == 6 * 4 + 4 + 4
    return home, root


@pytest.fixture(scope="module")
def col(library, shapes_clip):
    home, _ = library
    return omnivec.open_collection(home / "collections" / "lib", space=shapes_clip)


def names(hits) -> list[str]:
    return [Path(h.paths[0]).name for h in hits]


def test_liking_red_images_returns_red_items(col, library):
    _, root = library
    liked = [root / "red-circle-white-0.png", root / "red-square-white-1.png"]
    recs = recommend(col, like=[str(p) for p in liked], modalities="image", k=40)
    ranking = [colour_of(n) for n in names(recs.hits)]
    # What every seed of the shapes recipe gives (seeds 0-2 checked, docs/training.md): the two nearest are red
    # and red ranks best on average. How many of the next few are red is not: seed 2 puts purple, the palette's
    # nearest hue to red, at ranks 3-5.
    assert ranking[:2] == ["red", "red"], ranking
    mean_rank = {c: np.mean([i for i, x in enumerate(ranking) if x == c]) for c in COLOURS}
    assert min(mean_rank, key=mean_rank.get) == "red", mean_rank
    # the liked items are stored ones: their stored vectors are used and they are not recommended back
    assert all(e.item for e in recs.likes) and not {e.item for e in recs.likes} & set(recs.ids)
    assert len(recs.hits) == 6 * 4 + 4 - 2 and {h.modality for h in recs.hits} == {"image"}


def test_unlike_blue_pushes_blue_down(library, monkeypatch, capsys):
    home, root = library
    base = ["recommend", "--collection", "lib", "--like", root / "purple-circle-white-0.png", "--modality", "image",
            "-k", "40", "--json"]
    rankings = []
    for extra in ([], ["--unlike", root / "blue-square-white-1.png"]):
        code, stdout, stderr = main(*base, *extra, home=home, monkeypatch=monkeypatch, capsys=capsys)
        assert code == 0, stderr
        rankings.append([Path(h["paths"][0]).name for h in json.loads(stdout)["hits"]])
    before, after = rankings
    blue = [n for n in after if colour_of(n) == "blue"]
    assert blue and all(after.index(n) > before.index(n) for n in blue), (before, after)
    assert any(colour_of(n) == "blue" for n in before[:10]) and not any(colour_of(n) == "blue" for n in after[:10])


def test_diversity_returns_more_distinct_colours(col, library):
    _, root = library
    liked = [str(root / "red-circle-white-0.png"), str(root / "red-square-white-1.png")]
    plain = recommend(col, like=liked, modalities="image", k=5)
    diverse = recommend(col, like=liked, modalities="image", k=5, diversity=0.5)
    plain_colours = {colour_of(n) for n in names(plain.hits)}
    diverse_colours = {colour_of(n) for n in names(diverse.hits)}
    assert len(diverse_colours) > len(plain_colours), (names(plain.hits), names(diverse.hits))
    assert diverse.hits[0].id == plain.hits[0].id      # the most relevant item still comes first
    # diversity 1 picks for novelty alone, yet never repeats an item
    assert len(set(recommend(col, like=liked, modalities="image", k=10, diversity=1.0).ids)) == 10


def test_excluded_items_never_appear(library, monkeypatch, capsys, tmp_path):
    home, root = library
    col = omnivec.open_collection(home / "collections" / "lib")
    red = sorted(str(p) for p in root.glob("red-*.png"))
    red_ids = {r["id"] for r in col.items("modality = 'image'", ["id", "paths"]).to_pylist()
               if colour_of(r["paths"][0]) == "red"}
    seen = tmp_path / "seen.txt"
    keep = red[0]   # one red image stays recommendable; the rest are listed by path, one by id
    listed = [p for p in red if p != keep]
    one_id = next(r["id"] for r in col.items(None, ["id", "paths"]).to_pylist() if r["paths"][0] == listed[0])
    seen.write_text("# already seen\n" + "\n".join([one_id] + listed[1:] + ["/not/in/the/collection.png"]) + "\n")
    code, stdout, stderr = main("recommend", "--collection", "lib", "--like", root / "red-star-white-3.png",
                                "--exclude-seen", seen, "-k", "50", "--json", home=home, monkeypatch=monkeypatch,
                                capsys=capsys)
    assert code == 0, stderr
    report = json.loads(stdout)
    got = {h["id"] for h in report["hits"]}
    returned_red = {h["paths"][0] for h in report["hits"] if h["id"] in red_ids}
    assert returned_red == {keep}, returned_red
    # everything else comes back, nothing twice (the liked item is itself one of the listed ones)
    assert str(root / "red-star-white-3.png") in listed
    assert len(got) == len(report["hits"]) == len(col) - len(listed)
    assert report["excluded"] == len(listed)


def test_photo_recommends_video_segments_of_its_colour(col, library, monkeypatch, capsys):
    home, root = library
    recs = recommend(col, like=[str(root / "red-circle-white-0.png")], modalities="video", k=4)
    assert {h.modality for h in recs.hits} == {"video"} and len(recs.hits) == 4
    top = recs.hits[0]
    assert Path(top.paths[0]).name == "red-then-blue.mp4" and (top.start, top.end) == (0.0, 5.0)
    # a blue photo: the two videos with a blue scene come first, each at its blue segment (through the CLI)
    code, stdout, stderr = main("recommend", "--collection", "lib", "--like", root / "blue-circle-white-0.png",
                                "--modality", "video", "-k", "2", "--json", home=home, monkeypatch=monkeypatch,
                                capsys=capsys)
    assert code == 0, stderr
    hits = {Path(h["paths"][0]).name: (h["start"], h["end"]) for h in json.loads(stdout)["hits"]}
    assert hits == {"red-then-blue.mp4": (5.0, 10.0), "blue-then-green.mp4": (0.0, 5.0)}


def test_photo_plus_text_combine(col, library):
    """A red photo on white plus "a black background" (the "this photo, at night" case): red shapes on black rise,
    and the first black-background item is red, not blue (the photo's colour with the text's background)."""
    _, root = library
    photo = [str(root / "red-circle-white-0.png")]
    alone = names(recommend(col, like=photo, modalities="image", k=40).hits)
    both = recommend(col, like=photo, text="a black background", modalities="image", k=40)
    combined = names(both.hits)
    red_black = [n for n in combined if n.startswith("red-") and "-black-" in n]
    assert np.mean([combined.index(n) for n in red_black]) < np.mean([alone.index(n) for n in red_black])
    first_black = next(n for n in combined if "-black-" in n)
    assert colour_of(first_black) == "red", combined
    assert [e.source for e in both.texts] == ["<text: a black background>"]


@pytest.mark.parametrize("args, code, words", [
    (["--like", "no-such-item"], 2, "no-such-item"),
    (["--text", "red", "--modality", "audio"], 4, "audio"),
    (["--like", "LIKE", "--like-weights", "1,2"], 2, "weights"),
    (["--modality", "image"], 2, "something to like"),
    (["--like", "LIKE", "--diversity", "2"], 2, "diversity"),
])
def test_cli_errors(library, args, code, words, monkeypatch, capsys):
    home, root = library
    args = [str(root / "red-circle-white-0.png") if a == "LIKE" else a for a in args]
    got, _, stderr = main("recommend", "--collection", "lib", *args, home=home, monkeypatch=monkeypatch,
                          capsys=capsys)
    assert got == code and words in stderr, stderr
