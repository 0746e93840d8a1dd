"""`omnivec serve`: the HTTP API, the search page and the compatible endpoints for one collection."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from .collections import COLLECTION
from .output import emit_json, err


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_cmd(
        collection: str = COLLECTION,
        host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on; anything beyond loopback "
                                 "needs an API key."),
        port: int = typer.Option(8000, "--port", min=0, max=65535),
        api_key: str = typer.Option(None, "--api-key", envvar="OMNIVEC_API_KEY",
                                    help="Key clients must send (X-API-Key or Authorization: Bearer). Prefer the "
                                    "environment variable: command lines are visible to other users."),
        cors: list[str] = typer.Option(None, "--cors", help="A web origin allowed to call the API from a browser "
                                       "(repeatable), e.g. https://photos.example.org."),
        max_request_mb: float = typer.Option(32.0, "--max-request-mb", help="Largest request body (uploads)."),
        allow_urls: bool = typer.Option(False, "--allow-urls", help="Let requests name http(s) URLs for the "
                                        "server to fetch. Off by default: a client could make the server reach "
                                        "internal addresses (SSRF)."),
        query_log: str = typer.Option(None, "--query-log", help="Query log file (JSONL); default "
                                      "$OMNIVEC_HOME/logs/<collection>/queries.jsonl; 'off' to disable."),
        log_vectors: bool = typer.Option(False, "--log-query-vectors", help="Also log each query's vector."),
        query_log_mb: float = typer.Option(64.0, "--query-log-mb", help="Size budget of all query-log files."),
        query_log_days: float = typer.Option(30.0, "--query-log-days", help="Delete log entries older than this."),
        policies: Path = typer.Option(None, "--policies", help="Moderation policy file for /moderate requests "
                                      "that bring none."),
        json_out: bool = typer.Option(False, "--json", help="Print where the server listens as JSON, then serve."),
    ) -> None:
        """Serve a collection over HTTP: API (docs at /docs), search page (/), /metrics, clip-retrieval and
        OpenAI-style endpoints."""
        from ..server.config import MiB, ServerConfig  # the server extra is needed only by this command

        config = ServerConfig(host=host, port=port, api_key=api_key or None, cors_origins=tuple(cors or ()),
                              max_request_bytes=int(max_request_mb * MiB), allow_url_fetch=allow_urls,
                              query_log=None if query_log in (None, "off") else Path(query_log),
                              query_log_enabled=query_log != "off", query_log_vectors=log_vectors,
                              query_log_max_bytes=int(query_log_mb * MiB), query_log_max_age_days=query_log_days,
                              policies=policies)
        import uvicorn

        from ..server import create_app
        from ..store import open_collection

        col = open_collection(collection)
        app = create_app(col, config)
        info = {"collection": col.name, "items": len(col), "space": col.pinned["name"],
                "url": f"http://{host if ':' not in host else f'[{host}]'}:{port}/", "api_key_required": bool(api_key),
                "query_log": str(app.state.omnivec.querylog.path) if app.state.omnivec.querylog else None,
                "pid": os.getpid()}
        if json_out:
            emit_json(info)
            sys.stdout.flush()  # a parent process reads this before the server answers
        else:
            err.print(f"serving [bold]{col.name}[/bold] ({info['items']} items, space {info['space']}) at "
                      f"{info['url']}  (API docs: {info['url']}docs)")
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
