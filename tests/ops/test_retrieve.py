"""Retrieval for multimodal RAG, end to end with the trained shapes model: a folder of shape images, a video and
text documents (Markdown, HTML, PDF, plain text) is indexed with `omnivec index`; `omnivec retrieve` must return
the chunks and images that match a question, with citations and a context block.

The commands run through the CLI's `main` in this process (argument parsing, output and exit codes as in a shell),
so the model loads once for the module instead of once per command."""
from __future__ import annotations

import base64
import contextlib
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import omnivec
from omnivec.ops.retrieve import retrieve
from omnivec.samples import scene, write_video

IMAGES = {"red": ["circle", "square", "star"], "blue": ["square", "circle", "cross"], "green": ["triangle", "star"],
          "yellow": ["star", "circle"]}
COLOURS_MD = ("# Colour notes\n\n## Red\nA large red circle on a white background.\n\n"
              "## Blue\nA large blue square on a black background.\n\n"
              "## Green\nA small green triangle on a white background.\n")
PAGE_HTML = """<!doctype html><html><head><title>Blue</title><style>.SECRETSTYLE { color: red }</style></head>
<body><script>var SECRETSCRIPT = "a large red circle on a white background";</script>
<h1>Blue</h1><p>A picture of a <b>blue</b> square.</p></body></html>"""
NOTES_TXT = "Meeting notes.\n\nThe quarterly report covers revenue and costs for the year.\n"


def make_pdf(path: Path, pages: list[str]) -> None:
    """One line of text per page, TrueType fonts so that pypdf reads the text back."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(path) as pdf:
        for line in pages:
            fig = plt.figure(figsize=(6, 4))
            fig.text(0.05, 0.8, line)
            pdf.savefig(fig)
            plt.close(fig)


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str


def cli(*args, home: Path) -> Run:
    from omnivec.cli import main

    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setenv("OMNIVEC_HOME", str(home))
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as e:
            code = e.code
    return Run(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rag") / "library"
    (root / "images").mkdir(parents=True)
    (root / "docs").mkdir()
    rng = np.random.default_rng(11)
    for colour, shapes in IMAGES.items():
        for shape in shapes:
            scene(rng, colour, shape).render(64).save(root / "images" / f"{colour}-{shape}.png")
    red, blue = scene(rng, "red", "circle"), scene(rng, "blue", "square")
    frames = [red.render(64)] * 40 + [blue.render(64)] * 40   # 4 s of red, then 4 s of blue, at 10 fps
    write_video(root / "images" / "red-then-blue.mp4", frames, fps=10)
    (root / "docs" / "colours.md").write_text(COLOURS_MD)
    (root / "docs" / "page.html").write_text(PAGE_HTML)
    (root / "docs" / "notes.txt").write_text(NOTES_TXT)
    make_pdf(root / "docs" / "report.pdf", ["A small green triangle on a black background.",
                                            "A large yellow star on a white background."])
    (root / "docs" / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog >>\n" + b"\x00junk" * 50)
    return root


@pytest.fixture(scope="module")
def indexed(library, shapes_clip_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    col = home / "rag-collection"
    r = cli("index", library, "--collection", col, "--space", shapes_clip_dir, "--json", home=home)
    return home, col, r


def retrieve_cli(indexed, *args) -> dict:
    home, col, _ = indexed
    r = cli("retrieve", *args, "--collection", col, "--json", home=home)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_documents_are_indexed_beside_media_and_a_broken_pdf_is_an_error(indexed):
    home, col, r = indexed
    assert r.returncode == 1, r.stderr           # one input failed, the rest were indexed
    s = json.loads(r.stdout)
    assert s["indexed"] == 10 + 1 + 4            # images, the video, four documents
    assert s["failed"] == {"decode": 1} and s["skipped"] == {}
    errors = json.loads(cli("errors", "--collection", col, "--json", home=home).stdout)["errors"]
    assert [Path(e["path"]).name for e in errors] == ["broken.pdf"]
    assert errors[0]["stage"] == "decode" and "cannot read PDF" in errors[0]["error"]


def test_chunks_are_segments_with_text_and_offsets(indexed, library):
    _, col_path, _ = indexed
    col = omnivec.open_collection(col_path)
    items = {Path(r["paths"][0]).name: r for r in col.items("modality = 'text'", ["id", "paths", "mime"]).to_pylist()}
    assert {n: r["mime"] for n, r in items.items()} == {"colours.md": "text/markdown", "page.html": "text/html",
                                                         "notes.txt": "text/plain", "report.pdf": "application/pdf"}
    rows = col.store.scan("kind = 'segment' AND modality = 'text'",
                          ["id", "segment", "chunk_text", "chunk_start", "chunk_end", "chunk_page", "chunk_heading",
                           "vector"]).to_pylist()
    by_doc = {name: sorted((r for r in rows if r["id"] == item["id"]), key=lambda r: r["segment"])
              for name, item in items.items()}
    md = by_doc["colours.md"]
    assert [r["chunk_heading"] for r in md] == ["Colour notes > Red", "Blue", "Green"]
    assert all(COLOURS_MD[r["chunk_start"]:r["chunk_end"]] == r["chunk_text"] for r in md)
    assert [r["chunk_page"] for r in by_doc["report.pdf"]] == [1, 2]
    assert "yellow star" in by_doc["report.pdf"][1]["chunk_text"]
    html = by_doc["page.html"]
    assert [r["chunk_text"] for r in html] == ["Blue\n\nA picture of a blue square."]   # no script or style text
    assert not any("SECRET" in r["chunk_text"] for r in rows)
    # A document's item vector pools its chunks' vectors, weighted by chunk length.
    for name, chunks in by_doc.items():
        pooled = sum(len(r["chunk_text"]) * np.asarray(r["vector"]) for r in chunks)
        assert np.allclose(col.vector(items[name]["id"]), pooled / np.linalg.norm(pooled), atol=1e-5), name


def test_retrieve_returns_the_red_chunk_and_the_red_images_with_citations(indexed, library):
    out = retrieve_cli(indexed, "a red shape", "--modality", "text,image", "-k", "8")
    hits = out["hits"]
    assert len(hits) == 8 and {h["modality"] for h in hits} == {"text", "image"}
    assert [h["rank"] for h in hits] == list(range(1, 9))
    assert all(a["score"] >= b["score"] for a, b in zip(hits, hits[1:]))
    texts = [h for h in hits if h["modality"] == "text"]
    best = texts[0]
    assert Path(best["path"]).name == "colours.md" and "large red circle" in best["text"]
    assert best["chunk"] == 0 and best["heading"] == "Colour notes > Red"
    assert COLOURS_MD[best["chars"][0]:best["chars"][1]] == best["text"]
    cite = best["citation"]
    assert cite["path"] == best["path"] and cite["chunk"] == 0 and cite["chars"] == best["chars"]
    assert cite["score"] == best["score"] and cite["label"].startswith(f"[{best['rank']}] ")
    assert not any("red" in h["text"].lower() for h in texts[1:])   # no other chunk is about red
    images = [Path(h["path"]).name for h in hits if h["modality"] == "image"]
    red = [n for n in images if n.startswith("red-")]
    assert sorted(red) == ["red-circle.png", "red-square.png", "red-star.png"]
    assert images[:3] == red                                       # the red images outrank every other image
    assert all("data_uri" not in h for h in hits)                 # thumbnails only when asked
    context = out["context"]
    assert context.startswith("[1] ") and best["text"] in context
    assert all(f"[{h['rank']}] {h['path']}" in context for h in hits)
    assert "SECRET" not in context


def test_pdf_chunks_cite_their_page(indexed):
    out = retrieve_cli(indexed, "a yellow star", "--modality", "text", "-k", "3")
    top = out["hits"][0]
    assert Path(top["path"]).name == "report.pdf" and top["page"] == 2 and "yellow star" in top["text"]
    assert top["citation"]["page"] == 2 and ", page 2, chunk 1" in top["citation"]["label"]


def test_video_hits_give_the_matching_time_range(indexed):
    out = retrieve_cli(indexed, "a blue square", "--modality", "video", "-k", "1")
    (hit,) = out["hits"]
    assert Path(hit["path"]).name == "red-then-blue.mp4"
    assert hit["start"] >= 4.0 and hit["end"] > hit["start"]          # the blue half of the video
    assert hit["citation"]["start"] == hit["start"] and "Video file: " in out["context"]


def test_filters_and_per_document_cap(indexed):
    out = retrieve_cli(indexed, "a red shape", "--where", "mime = 'text/markdown'", "-k", "5", "--per-document", "2")
    assert [Path(h["path"]).name for h in out["hits"]] == ["colours.md", "colours.md"]
    assert "large red circle" in out["hits"][0]["text"]
    home, col, _ = indexed
    r = cli("retrieve", "a red shape", "--collection", col, "--modality", "text,smell", home=home)
    assert r.returncode == 2 and "unknown modality smell" in r.stderr
    plain = cli("retrieve", "a red shape", "--collection", col, "-k", "2", "--modality", "text", home=home)
    assert plain.returncode == 0 and plain.stdout.startswith("[1] ") and "large red circle" in plain.stdout


def test_image_hits_as_size_limited_data_uris(indexed):
    _, col_path, _ = indexed
    col = omnivec.open_collection(col_path)
    result = retrieve(col, "a blue shape", k=3, modalities=["image"], data_uri=True, thumbnail_px=32,
                      max_data_uri_bytes=4000)
    assert sorted(Path(p.path).name for p in result.hits) == ["blue-circle.png", "blue-cross.png", "blue-square.png"]
    for p in result.hits:
        assert p.data_uri.startswith("data:image/jpeg;base64,") and len(p.data_uri) <= 4000
        thumb = Image.open(io.BytesIO(base64.b64decode(p.data_uri.split(",", 1)[1])))
        assert max(thumb.size) <= 32
        assert f"(attached as image [{p.rank}])" in result.context
    tiny = retrieve(col, "a blue shape", k=1, modalities=["image"], data_uri=True, max_data_uri_bytes=900)
    uri = tiny.hits[0].data_uri
    assert (uri is not None and len(uri) <= 900) or "no thumbnail fits" in tiny.hits[0].note


def test_rerun_skips_unchanged_documents(indexed, library):
    home, col, _ = indexed
    r = cli("index", library, "--collection", col, "--json", home=home)
    s = json.loads(r.stdout)
    assert s["indexed"] == 0 and s["unchanged"] == 15 and s["failed"] == {"decode": 1}
