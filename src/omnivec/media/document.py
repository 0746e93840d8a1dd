"""Text documents (plain text, Markdown, HTML, PDF): detection, text extraction and chunking. Pure functions.

Extraction turns a file into one `Document`: its text (newlines normalised to "\\n") and the text's blocks
(paragraphs and headings, each with its PDF page). Chunking packs blocks into `Chunk`s whose text is always the
exact slice `doc.text[start:end]`, so a chunk's character offsets can be checked and cited.

Chunking choice: a heading (Markdown `#` lines, HTML h1-h6) or a new PDF page starts a new chunk, so a chunk never
mixes two sections or two pages. Within a section, paragraphs are packed greedily up to `max_chars`; when the budget
is hit the chunk ends at a paragraph end if one lies in its second half. A paragraph longer than the budget is split
at sentence ends (then at spaces, then anywhere); where a chunk boundary cuts a paragraph, the next chunk repeats
up to `overlap_chars` of the previous chunk's trailing sentences, so a thought cut there is still whole in one.
The budget is in characters, not tokens: offsets stay tokenizer-free, and callers derive it from their encoder's
context (`chunk_budget`); a chunk that still overflows the encoder is windowed and pooled by the text encoder.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import MediaError
from .limits import DEFAULT_LIMITS, Limits
from .sniff import HEAD_BYTES, sniff

PLAIN, MARKDOWN, HTML, PDF = "text/plain", "text/markdown", "text/html", "application/pdf"
DOCUMENT_MIMES = (PLAIN, MARKDOWN, HTML, PDF)
_SUFFIX_MIMES = {".md": MARKDOWN, ".markdown": MARKDOWN, ".mdown": MARKDOWN, ".html": HTML, ".htm": HTML,
                 ".xhtml": HTML}

DEFAULT_MAX_CHARS = 1000
DEFAULT_OVERLAP_CHARS = 150


@dataclass(frozen=True)
class Block:
    """A paragraph or heading: the span doc.text[start:end], on a PDF page (1-based) or None."""

    start: int
    end: int
    heading: bool = False
    page: int | None = None


@dataclass
class Document:
    name: str
    mime: str
    text: str
    blocks: list[Block]
    pages: int | None = None   # PDF page count


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str                  # == document text[start:end]
    start: int
    end: int
    page: int | None = None
    heading: str | None = None  # the headings that open the chunk's section, "Colours > Red"


# ---- detection ------------------------------------------------------------------------------------------------
def document_mime(name: str, head: bytes) -> str | None:
    """The document type of a file from its first bytes (content first, the suffix only to tell Markdown and HTML
    from plain text); None when it is not a text document."""
    kind = sniff(head)
    if kind is None:
        return None
    if kind[1] in DOCUMENT_MIMES and kind[1] != PLAIN:
        return kind[1]
    if kind[0] != "text":
        return None
    if _looks_like_html(head):
        return HTML
    return _SUFFIX_MIMES.get(Path(name).suffix.lower(), PLAIN)


def _looks_like_html(head: bytes) -> bool:
    h = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return h.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or \
        (h.startswith(b"<!--") and b"<html" in h)


# ---- extraction -----------------------------------------------------------------------------------------------
def read_document(path: str | Path, limits: Limits = DEFAULT_LIMITS, mime: str | None = None) -> Document:
    """Read and extract one document file; MediaError names the file and the cause."""
    name = str(path)
    try:
        size = Path(path).stat().st_size
        if size > limits.max_bytes:
            raise MediaError(name, f"{size} bytes exceed the limit of {limits.max_bytes}", "limits")
        data = Path(path).read_bytes()
    except OSError as e:
        raise MediaError(name, f"cannot read: {e.strerror or e}", "fetch") from e
    return extract(data, name, mime, limits)


def extract(data: bytes, name: str, mime: str | None = None, limits: Limits = DEFAULT_LIMITS) -> Document:
    """Text and blocks of a document given as bytes; `mime` is detected when not given."""
    mime = mime or document_mime(name, data[:HEAD_BYTES * 4])
    if mime is None:
        raise MediaError(name, "not a text document (plain text, Markdown, HTML or PDF)", "sniff")
    if mime == PDF:
        doc = _pdf(data, name)
    else:
        if mime == HTML:
            text, blocks = _html(data)
        else:
            text = _decode(data, name)
            blocks = _text_blocks(text, 0, len(text), None, markdown=mime == MARKDOWN)
        doc = Document(name, mime, text, blocks)
    if len(doc.text) > limits.max_text_chars:
        raise MediaError(name, f"{len(doc.text)} characters of text exceed the limit of {limits.max_text_chars}",
                         "limits")
    if not doc.blocks:
        cause = ("PDF has no extractable text (a scan without a text layer?)" if mime == PDF
                 else "document has no text")
        raise MediaError(name, cause, "decode")
    return doc


def _decode(data: bytes, name: str) -> str:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise MediaError(name, f"text is not valid UTF-8 at byte {e.start}", "decode") from e
    return _newlines(text)


def _newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


_HEADING = re.compile(r"#{1,6}(\s|$)")
_FENCE = re.compile(r"(```|~~~)")


def _text_blocks(text: str, start: int, end: int, page: int | None, markdown: bool) -> list[Block]:
    """Paragraphs (runs of non-blank lines) of text[start:end]; in Markdown, `#` lines outside code fences are
    headings of their own."""
    blocks: list[Block] = []
    para_start = para_end = None
    in_fence = False
    pos = start
    while pos < end:
        nl = text.find("\n", pos, end)
        line_end = end if nl < 0 else nl
        line = text[pos:line_end]
        stripped = line.strip()
        lead = len(line) - len(line.lstrip())
        is_heading = markdown and not in_fence and lead < 4 and _HEADING.match(stripped) is not None
        if markdown and _FENCE.match(stripped):
            in_fence = not in_fence
        if not stripped or is_heading:
            if para_start is not None:
                blocks.append(Block(para_start, para_end, False, page))
                para_start = None
            if is_heading:
                blocks.append(Block(pos + lead, pos + lead + len(stripped), True, page))
        else:
            if para_start is None:
                para_start = pos + lead
            para_end = pos + len(line.rstrip())
        pos = line_end + 1
    if para_start is not None:
        blocks.append(Block(para_start, para_end, False, page))
    return blocks


# Tags whose content is never readable text; removed with everything inside them.
_HTML_DROP = ("script", "style", "noscript", "template", "head", "svg", "math", "iframe", "object", "canvas")
# Tags that break text into separate blocks; inline tags (b, a, span ...) join their text to the surrounding block.
_HTML_BLOCKS = {"p", "div", "li", "dt", "dd", "pre", "blockquote", "td", "th", "caption", "figcaption", "section",
                "article", "main", "header", "footer", "nav", "aside", "address", "form", "fieldset", "legend",
                "details", "summary", "table", "tr", "ul", "ol", "dl", "figure", "body", "html"}
_HTML_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


def _html(data: bytes) -> tuple[str, list[Block]]:
    """Visible text of an HTML page as blocks (one per paragraph-like element), joined by blank lines."""
    from bs4 import BeautifulSoup, Comment, Declaration, Doctype, NavigableString, ProcessingInstruction

    soup = BeautifulSoup(data, "html.parser")  # bytes: bs4 detects the encoding (BOM, <meta charset>)
    for tag in soup(list(_HTML_DROP)):
        tag.decompose()
    for br in soup("br"):
        br.replace_with(NavigableString("\n"))
    groups: list[tuple[object, bool, list[str]]] = []
    for s in soup.find_all(string=True):
        if isinstance(s, (Comment, Declaration, Doctype, ProcessingInstruction)):
            continue
        owner = next((p for p in s.parents if p.name in _HTML_BLOCKS or p.name in _HTML_HEADINGS), soup)
        if groups and groups[-1][0] is owner:
            groups[-1][2].append(str(s))
        else:
            groups.append((owner, getattr(owner, "name", None) in _HTML_HEADINGS, [str(s)]))
    parts: list[str] = []
    blocks: list[Block] = []
    pos = 0
    for _, heading, pieces in groups:
        text = " ".join("".join(pieces).split())
        if not text:
            continue
        if parts:
            pos += 2  # the "\n\n" between blocks
        blocks.append(Block(pos, pos + len(text), heading))
        parts.append(text)
        pos += len(text)
    return "\n\n".join(parts), blocks


def _pdf(data: bytes, name: str) -> Document:
    """Text per page through pypdf; pages are joined by blank lines and each page's paragraphs keep its number."""
    import logging

    import pypdf

    logging.getLogger("pypdf").setLevel(logging.ERROR)  # pypdf warns on every recoverable quirk of a file
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise MediaError(name, "PDF is encrypted with a password", "decode")
        texts = [_newlines(page.extract_text() or "").strip() for page in reader.pages]
    except MediaError:
        raise
    except Exception as e:  # pypdf raises its own errors plus ValueError, KeyError, struct errors on broken files
        raise MediaError(name, f"cannot read PDF: {type(e).__name__}: {e}", "decode") from e
    text, blocks, pos = "", [], 0
    for number, page_text in enumerate(texts, 1):
        if not page_text:
            continue
        if text:
            text += "\n\n"
        start = len(text)
        text += page_text
        blocks += _text_blocks(text, start, len(text), number, markdown=False)
    return Document(name, PDF, text, blocks, pages=len(texts))


# ---- chunking -------------------------------------------------------------------------------------------------
def chunk_budget(max_tokens: int | None) -> int:
    """A chunk size in characters for an encoder that reads `max_tokens` tokens: about four characters a token
    (English BPE), kept between 200 and 2000 so chunks stay passages, not phrases or chapters."""
    if not max_tokens:
        return DEFAULT_MAX_CHARS
    return max(200, min(2000, 4 * int(max_tokens)))


def chunk(doc: Document, max_chars: int = DEFAULT_MAX_CHARS, overlap_chars: int | None = None) -> list[Chunk]:
    """Split a document into chunks of at most `max_chars` characters (see the module docstring for the rules)."""
    overlap = max_chars * DEFAULT_OVERLAP_CHARS // DEFAULT_MAX_CHARS if overlap_chars is None else overlap_chars
    if max_chars < 1 or not 0 <= overlap < max_chars:
        raise ValueError(f"need max_chars >= 1 and 0 <= overlap_chars < max_chars, got {max_chars}, {overlap}")
    chunks: list[Chunk] = []
    for section in _sections(doc.blocks):
        titles = [_heading_text(doc.text[b.start:b.end]) for b in section if b.heading]
        heading = " > ".join(t for t in titles if t) or None
        units = _keep_headings_with_text([u for b in section for u in _units(doc.text, b, max_chars)], max_chars)
        for start, end in _pack(units, max_chars, overlap):
            chunks.append(Chunk(len(chunks), doc.text[start:end], start, end, section[0].page, heading))
    return chunks


def _sections(blocks: list[Block]) -> list[list[Block]]:
    """Runs of blocks that may share a chunk: a heading after body text, or a new page, starts a new run."""
    sections: list[list[Block]] = []
    for b in blocks:
        cur = sections[-1] if sections else None
        if cur is None or b.page != cur[0].page or (b.heading and any(not x.heading for x in cur)):
            sections.append([b])
        else:
            cur.append(b)
    return sections


def _heading_text(line: str) -> str:
    return line.lstrip("#").strip().rstrip("#").strip()


@dataclass(frozen=True)
class _Unit:
    start: int
    end: int
    closes_paragraph: bool
    heading: bool = False


_SENTENCE_END = re.compile(r"[.!?][\"')\]]*\s+|\n")


def _units(text: str, b: Block, max_chars: int) -> list[_Unit]:
    """A block as one unit when it fits the budget, else its sentences (long ones cut at spaces, then anywhere)."""
    if b.end - b.start <= max_chars:
        return [_Unit(b.start, b.end, True, b.heading)]
    spans, pos = [], b.start
    for m in _SENTENCE_END.finditer(text, b.start, b.end):
        spans.append((pos, m.start() + len(m.group().rstrip())))
        pos = m.end()
    spans.append((pos, b.end))
    spans = [_trim(text, s, e) for s, e in spans]
    pieces = [p for s, e in spans if e > s for p in _cut(text, s, e, max_chars)]
    return [_Unit(s, e, i == len(pieces) - 1) for i, (s, e) in enumerate(pieces)]


def _cut(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """Pieces of at most max_chars, cut at the last space that fits (anywhere in a longer word)."""
    out = []
    while end - start > max_chars:
        cut = text.rfind(" ", start + 1, start + max_chars + 1)
        if cut <= start:
            cut = start + max_chars
        out.append(_trim(text, start, cut))
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if end > start:
        out.append((start, end))
    return out


def _keep_headings_with_text(units: list[_Unit], max_chars: int) -> list[_Unit]:
    """Join headings to the text after them when both fit, so no chunk ends on a bare heading."""
    out: list[_Unit] = []
    for u in units:
        prev = out[-1] if out else None
        if prev is not None and prev.heading and u.end - prev.start <= max_chars:
            out[-1] = _Unit(prev.start, u.end, u.closes_paragraph, u.heading)
        else:
            out.append(u)
    return out


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _pack(units: list[_Unit], max_chars: int, overlap: int) -> list[tuple[int, int]]:
    """Greedy packing of consecutive units into spans of at most max_chars, with sentence-level overlap."""
    spans, i = [], 0
    while i < len(units):
        j = i + 1
        while j < len(units) and units[j].end - units[i].start <= max_chars:
            j += 1
        if j < len(units):  # the budget ended this chunk: prefer to end it where a paragraph ends
            for m in range(j - 1, i, -1):
                if units[m].closes_paragraph and units[m].end - units[i].start >= max_chars // 2:
                    j = m + 1
                    break
        spans.append((units[i].start, units[j - 1].end))
        if j >= len(units):
            break
        # A chunk that cut a paragraph: the next one repeats the trailing sentences that fit in the overlap (always
        # moving forward by at least one unit). A chunk that ended with its paragraph needs no overlap.
        k = j
        while not units[j - 1].closes_paragraph and k - 1 > i and units[j - 1].end - units[k - 1].start <= overlap:
            k -= 1
        i = k
    return spans
