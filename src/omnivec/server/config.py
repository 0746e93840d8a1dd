"""What a server may do: where it listens, who may call it, how big a request may be, what it logs."""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..media import Limits

MiB = 1024 * 1024


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None            # required (and checked) when bound beyond loopback
    cors_origins: tuple[str, ...] = ()    # origins allowed to call from a browser; none by default
    max_request_bytes: int = 32 * MiB     # any request body: JSON, uploads
    max_query_seconds: float = 600.0      # audio/video uploaded as a query
    # Server requests never make the server fetch a URL unless this is on: a query naming
    # http://169.254.169.254/... or an intranet address must not turn the server into a proxy (SSRF).
    allow_url_fetch: bool = False
    max_k: int = 1000
    cache_size: int = 2048                # query embeddings kept (LRU)
    refresh_seconds: float = 2.0          # how often to look for commits by other processes (omnivec index)
    query_log: Path | None = None         # default: $OMNIVEC_HOME/logs/<collection name>/queries.jsonl
    query_log_enabled: bool = True
    query_log_max_bytes: int = 64 * MiB   # all query-log files together
    query_log_max_age_days: float = 30.0
    query_log_vectors: bool = False       # also log each query vector (for drift analysis)
    thumbnail_dir: Path | None = None     # default: <collection>/cache/thumbnails
    policies: Path | None = None          # moderation policy file used when a request brings none

    def __post_init__(self) -> None:
        if not is_loopback(self.host) and not self.api_key:
            raise ConfigError(f"refusing to listen on {self.host!r} without an API key: anyone who can reach it "
                              f"could search and read the collection. Set --api-key (or $OMNIVEC_API_KEY), or "
                              f"bind to 127.0.0.1")
        if self.api_key is not None and len(self.api_key) < 8:
            raise ConfigError("the API key must be at least 8 characters long")
        if "*" in self.cors_origins and self.api_key:
            # A wildcard origin lets any web page a key-holder visits drive the API with their browser session.
            raise ConfigError("CORS origin '*' cannot be combined with an API key; list the origins instead")

    @property
    def media_limits(self) -> Limits:
        """Limits for media sent in requests: smaller than for indexing, a query must stay cheap."""
        return Limits(max_bytes=self.max_request_bytes, max_audio_seconds=self.max_query_seconds,
                      max_video_seconds=self.max_query_seconds, url_max_bytes=self.max_request_bytes)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere
