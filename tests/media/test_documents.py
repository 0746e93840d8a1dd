"""Text documents: detection, extraction (plain text, Markdown, HTML, PDF) and chunk boundaries and offsets."""
from __future__ import annotations

import io
import re

import pytest

from omnivec.errors import MediaError
from omnivec.media.document import (HTML, MARKDOWN, PDF, PLAIN, chunk, chunk_budget, document_mime, extract,
                                    read_document)


def make_pdf(pages: list[list[str]]) -> bytes:
    """A PDF with one page per list of lines, written by matplotlib with TrueType fonts (text pypdf can read)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    buf = io.BytesIO()
    with matplotlib.rc_context({"pdf.fonttype": 42}), PdfPages(buf) as pdf:
        for lines in pages:
            fig = plt.figure(figsize=(6, 4))
            for i, line in enumerate(lines):
                fig.text(0.05, 0.9 - 0.08 * i, line)
            if not lines:
                fig.add_artist(plt.Rectangle((0.2, 0.2), 0.5, 0.5, color="red"))  # a page with no text
            pdf.savefig(fig)
            plt.close(fig)
    return buf.getvalue()


def check_exact(doc, chunks, max_chars):
    for i, c in enumerate(chunks):
        assert c.index == i
        assert doc.text[c.start:c.end] == c.text and c.text == c.text.strip() and c.text
        assert len(c.text) <= max_chars
    assert [c.start for c in chunks] == sorted(c.start for c in chunks)


def test_detection_by_content_then_suffix():
    html = b"\xef\xbb\xbf  <!DOCTYPE html><html><body><p>hi</p></body></html>"
    assert document_mime("page", html) == HTML                  # content, no suffix
    assert document_mime("page.txt", html) == HTML
    assert document_mime("fragment.htm", b"<p>hi</p>") == HTML   # a fragment: the suffix says HTML
    assert document_mime("notes.md", b"# Title\n") == MARKDOWN
    assert document_mime("notes.txt", b"# Title\n") == PLAIN
    assert document_mime("README", b"plain words") == PLAIN
    assert document_mime("report.txt", b"%PDF-1.7\n%\xe2\xe3") == PDF    # content beats the name
    assert document_mime("photo.md", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40) is None
    assert document_mime("blob.txt", bytes(range(256))) is None


def test_paragraphs_pack_up_to_the_budget_and_end_at_paragraph_ends():
    paras = [f"Paragraph {i} says something about colour number {i}." for i in range(12)]
    raw = ("\ufeff" + "\r\n\r\n".join(paras) + "\r\n").encode()   # a BOM and Windows newlines
    doc = extract(raw, "notes.txt")
    assert doc.mime == PLAIN and "\r" not in doc.text and not doc.text.startswith("\ufeff")
    chunks = chunk(doc, max_chars=160, overlap_chars=40)
    check_exact(doc, chunks, 160)
    assert len(chunks) >= 4
    # Every chunk is whole paragraphs: whole paragraphs fit, so none is cut and no overlap is needed.
    assert [p for c in chunks for p in c.text.split("\n\n")] == paras
    assert all(b.start >= a.end for a, b in zip(chunks, chunks[1:]))


def test_a_long_paragraph_splits_at_sentences_with_overlap():
    sentences = [f"Sentence {i:02d} is about the colour {c}." for i, c in
                 enumerate(["red", "blue", "green", "yellow"] * 8)]
    doc = extract(" ".join(sentences).encode(), "long.txt")
    chunks = chunk(doc, max_chars=200, overlap_chars=80)
    check_exact(doc, chunks, 200)
    assert len(chunks) > 5
    for a, b in zip(chunks, chunks[1:]):
        assert a.start < b.start < a.end <= b.end          # consecutive chunks overlap ...
        assert 0 < a.end - b.start <= 80                   # ... by at most the overlap
    starts = {m.start() for m in re.finditer(r"Sentence", doc.text)}
    assert all(c.start in starts for c in chunks)          # chunks start and end at sentence boundaries
    assert all(c.text.endswith(".") for c in chunks)
    assert all(any(s in c.text for c in chunks) for s in sentences)   # every sentence is whole in some chunk
    no_overlap = chunk(doc, max_chars=200, overlap_chars=0)
    assert all(b.start > a.end for a, b in zip(no_overlap, no_overlap[1:]))


def test_words_longer_than_the_budget_are_cut():
    doc = extract(("x" * 250 + " tail words here").encode(), "blob.txt")
    chunks = chunk(doc, max_chars=100, overlap_chars=0)
    check_exact(doc, chunks, 100)
    assert [c.text for c in chunks] == ["x" * 100, "x" * 100, "x" * 50 + " tail words here"]


def test_markdown_headings_start_chunks_and_name_them():
    md = ("Preamble line.\n\n# Colours\n\n## Red\nA large red circle on a white background.\n\n"
          "```python\n# not a heading\nx = 1\n```\n\n## Blue\nA large blue square.\n\n### Dark blue\nNavy.\n")
    doc = extract(md.encode(), "notes.md")
    assert doc.mime == MARKDOWN
    chunks = chunk(doc, max_chars=300)
    check_exact(doc, chunks, 300)
    assert [c.heading for c in chunks] == [None, "Colours > Red", "Blue", "Dark blue"]
    assert chunks[0].text == "Preamble line."
    assert chunks[1].text.startswith("# Colours\n\n## Red\nA large red circle") and "# not a heading" in chunks[1].text
    assert chunks[2].text == "## Blue\nA large blue square."
    assert "red" not in chunks[2].text and "blue" not in chunks[1].text.lower()
    # The same text as plain text has no headings: one chunk within the budget.
    plain = extract(md.encode(), "notes.txt")
    assert [c.heading for c in chunk(plain, max_chars=1000)] == [None]


def test_headings_stay_with_their_text_when_the_budget_is_tight():
    doc = extract(b"# Red\nA large red circle on a white background. It is red.\n\nMore red things here.", "a.md")
    chunks = chunk(doc, max_chars=70, overlap_chars=0)
    check_exact(doc, chunks, 70)
    assert chunks[0].text.startswith("# Red\nA large red circle")   # never a chunk of the bare heading
    assert all(c.heading == "Red" for c in chunks)


def test_html_visible_text_only():
    page = b"""<!doctype html><html><head><title>Shapes</title>
      <meta charset="iso-8859-1"><style>p { color: red } .SECRETSTYLE {}</style>
      <script>var SECRETSCRIPT = "a red circle"; document.write('<p>injected</p>');</script></head>
      <body><noscript>SECRETNOSCRIPT enable javascript</noscript><!-- SECRETCOMMENT -->
      <h1>Blue <small>things</small></h1>
      <p>A small <b>blue</b> square on a white background &amp; a <i>light</i>blue line.<br>Second line.</p>
      <div>intro text<p>inner paragraph</p>tail text</div>
      <script type="module">import SECRETMODULE from "x";</script>
      <ul><li>caf\xe9 one</li><li>two</li></ul><template><p>SECRETTEMPLATE</p></template></body></html>"""
    doc = extract(page, "page.html")
    assert doc.mime == HTML
    assert "SECRET" not in doc.text and "injected" not in doc.text and "color" not in doc.text
    texts = [doc.text[b.start:b.end] for b in doc.blocks]
    assert texts == ["Blue things", "A small blue square on a white background & a lightblue line. Second line.",
                     "intro text", "inner paragraph", "tail text", "caf\u00e9 one", "two"]
    assert [b.heading for b in doc.blocks] == [True] + [False] * 6
    chunks = chunk(doc, max_chars=120)
    check_exact(doc, chunks, 120)
    assert chunks[0].heading == "Blue things" and chunks[0].text.startswith("Blue things\n\nA small blue square")
    assert not any("SECRET" in c.text for c in chunks)


def test_pdf_pages_are_kept_apart_and_numbered(tmp_path):
    data = make_pdf([["A green triangle on a black background.", "", "It is small."], [],
                     ["A large yellow star on a blue background."]])
    path = tmp_path / "report.pdf"
    path.write_bytes(data)
    doc = read_document(path)
    assert doc.mime == PDF and doc.pages == 3
    chunks = chunk(doc, max_chars=1000)
    check_exact(doc, chunks, 1000)
    assert [c.page for c in chunks] == [1, 3]       # the empty page 2 gives nothing; pages never share a chunk
    assert "green triangle" in chunks[0].text and "It is small." in chunks[0].text
    assert chunks[1].text == "A large yellow star on a blue background."


def test_bad_documents_are_errors_that_name_the_file(tmp_path):
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >>\n" + b"\x00garbage" * 40)
    with pytest.raises(MediaError) as e:
        read_document(broken)
    assert e.value.item == str(broken) and e.value.stage == "decode" and "cannot read PDF" in e.value.cause
    truncated = tmp_path / "truncated.pdf"
    truncated.write_bytes(make_pdf([["Some text."]])[:600])
    with pytest.raises(MediaError, match="truncated.pdf: decode failed: cannot read PDF"):
        read_document(truncated)
    with pytest.raises(MediaError, match="no extractable text"):
        extract(make_pdf([[]]), "scan.pdf")
    with pytest.raises(MediaError, match="empty.txt: decode failed: document has no text"):
        extract(b" \n\n \t\n", "empty.txt")
    with pytest.raises(MediaError, match="not valid UTF-8 at byte 5"):
        extract(b"hello\xff\xfe world", "latin.txt", PLAIN)
    with pytest.raises(MediaError, match="not a text document") as e:
        extract(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, "photo.png")
    assert e.value.stage == "sniff"
    with pytest.raises(MediaError, match="no.txt: fetch failed"):
        read_document(tmp_path / "no.txt")


def test_budgets():
    assert chunk_budget(75) == 300          # CLIP's context: a chunk fits one text window
    assert chunk_budget(510) == 2000 and chunk_budget(8) == 200 and chunk_budget(None) == 1000
    doc = extract(b"Some words.", "a.txt")
    for bad in ({"max_chars": 0}, {"max_chars": 100, "overlap_chars": 100}, {"overlap_chars": -1}):
        with pytest.raises(ValueError):
            chunk(doc, **bad)
