"""Find a model's files on disk, or fetch them from the hub; fail within seconds, clearly, when neither works."""
from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from ..errors import ModelNotFoundError

MODEL_DIR_ENV = "OMNIVEC_MODEL_DIR"
PROBE_TIMEOUT = 3.0
# The files a space needs; TF/Flax weights and second copies of the weights are never downloaded.
TOKENIZER_FILES = ["*.json", "*.txt", "*.model", "*.tiktoken"]
WEIGHTS = {"transformers": ["model.safetensors", "model-*.safetensors", "pytorch_model.bin", "pytorch_model-*.bin"],
           "open_clip": ["open_clip_model.safetensors", "open_clip_pytorch_model.safetensors",
                         "open_clip_pytorch_model.bin"]}


def local_candidates(name: str, hub_id: str | None) -> list[Path]:
    """Folders under $OMNIVEC_MODEL_DIR that may hold a copy: <dir>/<space name>, <dir>/<org>/<repo>, <dir>/<repo>."""
    root = os.environ.get(MODEL_DIR_ENV)
    if not root:
        return []
    names = [name] + ([hub_id, hub_id.replace("/", "--"), hub_id.split("/")[-1]] if hub_id else [])
    return [Path(root).expanduser() / n for n in dict.fromkeys(names)]


def locate(name: str, hub_id: str | None, revision: str = "main", model_path: str | os.PathLike | None = None,
           backend: str = "transformers") -> Path:
    """Return a folder holding the model's files.

    Order: an explicit `model_path`; $OMNIVEC_MODEL_DIR; the Hugging Face cache; a download (unless offline)."""
    if model_path is not None:
        p = Path(model_path).expanduser()
        if not p.exists():
            raise ModelNotFoundError(f"model {name!r}: the given model path {p} does not exist")
        return p
    looked = []
    for cand in local_candidates(name, hub_id):
        looked.append(str(cand))
        if cand.is_dir() and any(cand.glob("*.json")):
            return cand
    if hub_id is None:
        raise ModelNotFoundError(_missing_message(name, hub_id, looked, "no hub id is known for it"))
    from huggingface_hub import constants, snapshot_download

    looked.append(f"Hugging Face cache {constants.HF_HUB_CACHE}")
    try:
        cached = Path(snapshot_download(hub_id, revision=revision, local_files_only=True,
                                        allow_patterns=TOKENIZER_FILES + WEIGHTS[backend]))
        if has_weights(cached, backend):
            return cached
    except Exception:  # not cached (huggingface_hub raises several types for that)
        pass
    why = _hub_unreachable()
    if why:
        raise ModelNotFoundError(_missing_message(name, hub_id, looked, why))
    try:
        patterns = TOKENIZER_FILES + _one_weights_file(hub_id, revision, backend)
        folder = Path(snapshot_download(hub_id, revision=revision, allow_patterns=patterns))
    except Exception as e:
        raise ModelNotFoundError(_missing_message(name, hub_id, looked, f"download failed: {e}")) from e
    if not has_weights(folder, backend):
        raise ModelNotFoundError(f"model {name!r}: the hub repo {hub_id} has no {backend} weights ({WEIGHTS[backend]})")
    return folder


def has_weights(folder: Path, backend: str) -> bool:
    return any(any(folder.glob(p)) for p in WEIGHTS[backend])


def _one_weights_file(hub_id: str, revision: str, backend: str) -> list[str]:
    """The first weights format the repo has, in order of preference (safetensors before pickles)."""
    import fnmatch

    from huggingface_hub import HfApi

    files = HfApi().list_repo_files(hub_id, revision=revision)
    for pattern in WEIGHTS[backend]:
        if any(fnmatch.fnmatch(f, pattern) for f in files):
            stem = pattern.split("-*")[0].split(".")[0]
            return [p for p in WEIGHTS[backend] if p.startswith(stem) and p.rsplit(".", 1)[-1] == pattern.rsplit(".", 1)[-1]]
    return WEIGHTS[backend]


def _hub_unreachable() -> str | None:
    """A reason the hub cannot be used now, found in at most a few seconds; None when it answers."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("TRANSFORMERS_OFFLINE", "") in ("1", "true", "TRUE"):
        return "offline mode is on (HF_HUB_OFFLINE)"
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=PROBE_TIMEOUT).close()
    except OSError as e:
        return f"the hub at {constants.ENDPOINT} is unreachable ({e.strerror or e})"
    return None


def _missing_message(name: str, hub_id: str | None, looked: list[str], why: str) -> str:
    where = "; ".join(looked) if looked else "nowhere (no local path given)"
    return (f"model {name!r}{f' ({hub_id})' if hub_id else ''} is not on disk and cannot be fetched: {why}. "
            f"Looked in: {where}. Point omnivec at a local copy with --model-path DIR (Python: "
            f"load_space(..., model_path=DIR)), or put it under ${MODEL_DIR_ENV}/{name}/, or download it where the "
            f"hub is reachable (huggingface-cli download {hub_id or '<repo>'}) and copy the cache.")


def fingerprint(folder: Path) -> str:
    """A short content hash of the weight files, so vectors from different weights never share a version."""
    if folder.parent.name == "snapshots":  # a hub snapshot: the folder name is the commit hash
        return folder.name[:12]
    files = sorted(f for f in (folder.iterdir() if folder.is_dir() else [folder])
                   if f.suffix in (".safetensors", ".bin", ".pt", ".pth", ".json"))
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode())
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()[:12]
