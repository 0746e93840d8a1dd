"""Write Hugging Face ``CLIPTokenizer`` files that reproduce open_clip's BPE ids.

open_clip ships the OpenAI CLIP BPE merges as a gzip text file. Rebuilding the
vocabulary exactly the way ``open_clip.tokenizer.SimpleTokenizer`` does lets a
model trained here be tokenised identically by transformers and by open_clip,
without needing the model hub.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
MODEL_MAX_LENGTH = 77
# SimpleTokenizer keeps merges[1 : 49152 - 256 - 2 + 1]; line 0 is a version header.
_N_MERGES = 49152 - 256 - 2


def _bytes_to_unicode() -> dict[int, str]:
    """Same reversible byte -> printable-unicode table as OpenAI CLIP / GPT-2."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def _read_merges(bpe_path: str | Path) -> list[str]:
    with gzip.open(bpe_path) as fh:
        lines = fh.read().decode("utf-8").split("\n")
    return lines[1 : _N_MERGES + 1]


def build_vocab(merges: list[str]) -> dict[str, int]:
    """Vocabulary in SimpleTokenizer order: bytes, bytes+'</w>', merges, specials."""
    byte_tokens = list(_bytes_to_unicode().values())
    tokens = byte_tokens + [t + "</w>" for t in byte_tokens]
    tokens += ["".join(m.split()) for m in merges]
    # open_clip names these <start_of_text>/<end_of_text>; the ids (49406, 49407) match.
    tokens += [BOS_TOKEN, EOS_TOKEN]
    return {tok: i for i, tok in enumerate(tokens)}


def write_clip_tokenizer(out_dir: str | Path, bpe_path: str | Path | None = None) -> Path:
    """Write vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json.

    ``bpe_path`` defaults to the BPE file shipped with open_clip (imported lazily so
    that omnivec's core never depends on open_clip).
    """
    if bpe_path is None:
        from open_clip.tokenizer import default_bpe

        bpe_path = default_bpe()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    merges = _read_merges(bpe_path)
    vocab = build_vocab(merges)

    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    specials = {
        "bos_token": BOS_TOKEN,
        "eos_token": EOS_TOKEN,
        "unk_token": EOS_TOKEN,
        "pad_token": EOS_TOKEN,  # as in openai/clip-vit-* on the hub
    }
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": MODEL_MAX_LENGTH,
        "do_lower_case": True,
        **specials,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (out / "special_tokens_map.json").write_text(json.dumps(specials, indent=2), encoding="utf-8")
    return out
