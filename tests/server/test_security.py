"""Attacks on the server: binding beyond loopback without a key, missing and wrong keys, oversized bodies,
path traversal and symlink escapes, decompression bombs, URL fetches (SSRF), CORS from unknown origins."""
from __future__ import annotations

import base64
import os
import struct
import zlib

import pytest

import omnivec
from omnivec.server import ServerConfig

KEY = "s3cret-key-for-tests"


def png_bomb(side: int = 30000) -> bytes:
    """A valid PNG header claiming side x side pixels with a tiny body: a decompression bomb."""
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(b"\x00" * (side // 8 + 1) * 64, 9)) + chunk(b"IEND", b""))


def test_non_loopback_needs_a_key():
    with pytest.raises(omnivec.ConfigError, match="without an API key"):
        ServerConfig(host="0.0.0.0")
    with pytest.raises(omnivec.ConfigError, match="without an API key"):
        ServerConfig(host="192.168.1.20")
    assert ServerConfig(host="0.0.0.0", api_key=KEY).api_key == KEY
    ServerConfig(host="::1")  # loopback: no key needed
    with pytest.raises(omnivec.ConfigError, match="at least 8"):
        ServerConfig(api_key="short")


def test_keys_are_required_when_set(make_client):
    c = make_client(host="0.0.0.0", api_key=KEY)
    assert c.get("/stats").status_code == 401
    assert c.get("/stats", headers={"X-API-Key": "wrong-key-123"}).status_code == 401
    assert c.get("/stats", headers={"Authorization": "Bearer wrong-key-123"}).status_code == 401
    assert c.post("/search", json={"text": "a red shape"}).status_code == 401
    assert c.get("/metrics").status_code == 401
    assert c.get("/items/0123456789abcdef/media").status_code == 401
    assert c.get("/stats", headers={"X-API-Key": KEY}).status_code == 200
    assert c.post("/v1/embeddings", json={"input": "a red shape"},
                  headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    # The page, liveness and API docs are public; they hold no data.
    assert c.get("/").status_code == 200 and c.get("/health").status_code == 200
    assert c.get("/static/app.js").status_code == 200


def test_session_cookie_carries_a_digest_not_the_key(make_client):
    c = make_client(api_key=KEY)
    assert c.get("/session").json() == {"key_required": True, "authenticated": False}
    assert c.post("/session", json={"key": "wrong-key-123"}).status_code == 401
    r = c.post("/session", json={"key": KEY})
    assert r.status_code == 200
    cookie = r.headers["set-cookie"]
    assert KEY not in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert c.get("/session").json()["authenticated"] is True
    assert c.get("/stats").status_code == 200  # the cookie now opens the API (and <img>/<video> sources)


def test_oversized_requests_get_413(make_client):
    c = make_client(max_request_bytes=10_000)
    big = {"text": "x" * 20_000}
    r = c.post("/search", json=big)
    assert r.status_code == 413 and "exceeds the limit" in r.json()["detail"]

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(20):
            yield b"x" * 1000

    for path, content_type in (("/search", "application/json"), ("/search/upload", "multipart/form-data; boundary=b")):
        r = c.post(path, content=chunks(), headers={"Content-Type": content_type})
        assert r.status_code == 413, path
    assert c.post("/search", json={"text": "a red shape"}).status_code == 200  # the server is fine afterwards


def test_decompression_bomb_upload_is_rejected(client):
    bomb = png_bomb()
    r = client.post("/search/upload", files={"file": ("bomb.png", bomb, "image/png")})
    assert r.status_code == 413
    detail = r.json()["detail"]
    assert detail["stage"] == "limits" and "bomb.png" in detail["item"] and "pixel" in detail["error"].lower() + \
        detail["message"].lower()
    r = client.post("/embed", json={"input": [{"image": "data:image/png;base64," + base64.b64encode(bomb).decode()}]})
    assert r.status_code == 413 and r.json()["detail"]["item"] == "input[0]"
    r = client.post("/v1/embeddings", json={"input": ["data:image/png;base64," + base64.b64encode(bomb).decode()]})
    assert r.status_code == 413 and "input[0]" in r.json()["error"]["message"]


def test_garbage_upload_is_a_400_naming_the_file(client):
    r = client.post("/search/upload", files={"file": ("noise.bin", os.urandom(3000), "application/octet-stream")})
    assert r.status_code == 400 and "noise.bin" in r.json()["detail"]["message"]


def test_urls_are_not_fetched_unless_allowed(client):
    for body in ({"image": "http://169.254.169.254/latest/meta-data/"}, {"image": "http://127.0.0.1:1/x.png"}):
        r = client.post("/search", json=body)
        assert r.status_code == 400 and "does not fetch URLs" in r.json()["detail"]
    r = client.post("/knn-service", json={"image_url": "http://127.0.0.1:1/x.png", "modality": "image",
                                          "num_images": 3, "indice_name": None})
    assert r.status_code == 400 and "does not fetch URLs" in r.json()["detail"]


def test_strings_are_never_read_as_server_paths(client, server_media):
    path = str(server_media / "images" / "red-circle-0.jpg")
    # As an image: not base64, so refused (the file is not opened).
    r = client.post("/search", json={"image": path})
    assert r.status_code == 400 and "not a data URI, base64 content or URL" in r.json()["detail"]
    # As text: the words are embedded, not the file they name.
    as_text = client.post("/embed", json={"input": [{"text": path}]}).json()["data"][0]["embedding"]
    as_image = client.post("/search/upload", files={"file": ("q.jpg", open(path, "rb"), "image/jpeg")},
                           data={"k": "1"}).json()["hits"][0]["score"]
    assert as_image > 0.99 and as_text != pytest.approx(as_image)


def _get_raw(client, raw_path: str):
    """Send the path exactly as written (clients normalise `..`; attackers do not)."""
    return client.get(client.base_url.copy_with(raw_path=raw_path.encode()))


def test_path_traversal_and_outside_files_are_refused(client, server_media, tmp_path):
    indexed = server_media / "images" / "red-circle-0.jpg"
    assert client.get(f"/files{indexed}").status_code == 200  # a recorded path is served
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    attempts = [
        "/files/etc/passwd",
        "/files//etc/passwd",
        f"/files{secret}",
        f"/files{server_media}/images/../../../../../../etc/passwd",
        f"/files{server_media}/images/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"/files{server_media}/images/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/files/%2fetc%2fpasswd",
        f"/files{server_media}/images/red-circle-0.jpg%00.png",
        "/files/relative/../../etc/passwd",
    ]
    for raw in attempts:
        r = _get_raw(client, raw)
        assert r.status_code in (403, 404), (raw, r.status_code)
        assert b"root:" not in r.content and b"do not serve" not in r.content


def test_symlink_planted_in_an_indexed_folder_is_refused(client, server_media, tmp_path):
    secret = tmp_path / "secret.jpg"
    secret.write_bytes((server_media / "images" / "blue-square-0.jpg").read_bytes())  # even a real image
    link = server_media / "images" / "planted.jpg"
    link.symlink_to(secret)
    try:
        assert client.get(f"/files{link}").status_code == 404
        assert client.get(f"/files{secret}").status_code == 404
    finally:
        link.unlink()


def test_indexed_file_swapped_for_a_symlink_is_refused(make_client, shapes_clip, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    from omnivec.samples import make_sample_folder
    from omnivec.ingest import index

    make_sample_folder(tmp_path / "gen", per_concept=1, image_size=48)
    target = folder / "red.jpg"
    target.write_bytes((tmp_path / "gen" / "images" / "red-circle-0.jpg").read_bytes())
    col = omnivec.open_collection(tmp_path / "col", space=shapes_clip, create=True)
    index(col, [folder])
    c = make_client(collection=col)
    item = c.post("/search", json={"text": "a red shape", "k": 1}).json()["hits"][0]
    assert c.get(item["media"]).status_code == 200
    secret = tmp_path / "secret.txt"
    secret.write_text("private key material")
    target.unlink()
    target.symlink_to(secret)
    for url in (item["media"], f"/files{target}", item["thumbnail"]):
        r = c.get(url)
        assert r.status_code in (404, 409), (url, r.status_code)
        assert b"private key" not in r.content


def test_cors_only_for_configured_origins(make_client):
    c = make_client(cors_origins=("https://photos.example.org",))
    ok = c.get("/health", headers={"Origin": "https://photos.example.org"})
    assert ok.headers.get("access-control-allow-origin") == "https://photos.example.org"
    other = c.get("/health", headers={"Origin": "https://evil.example.com"})
    assert "access-control-allow-origin" not in other.headers
    pre = c.options("/search", headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers
    pre = c.options("/search", headers={"Origin": "https://photos.example.org",
                                        "Access-Control-Request-Method": "POST",
                                        "Access-Control-Request-Headers": "X-API-Key"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "https://photos.example.org"
    plain = make_client()  # no origins configured: no CORS headers at all
    assert "access-control-allow-origin" not in plain.get("/health", headers={"Origin": "https://photos.example.org"}).headers
    with pytest.raises(omnivec.ConfigError, match="'\\*'"):
        ServerConfig(cors_origins=("*",), api_key=KEY)


def test_served_media_cannot_run_scripts(client, server_media):
    r = client.get(f"/files{server_media / 'images' / 'red-circle-0.jpg'}")
    assert r.headers["content-security-policy"].startswith("sandbox")
    assert r.headers["x-content-type-options"] == "nosniff"


def test_indexed_html_is_served_as_inert_text(make_client, shapes_clip, tmp_path):
    from omnivec.ingest import index

    folder = tmp_path / "docs"
    folder.mkdir()
    page = folder / "page.html"
    page.write_text("<html><body><p>a red circle</p><script>fetch('/stats')</script></body></html>")
    col = omnivec.open_collection(tmp_path / "col", space=shapes_clip, create=True)
    index(col, [folder])
    c = make_client(collection=col)
    r = c.get(f"/files{page}")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    assert r.headers["content-security-policy"].startswith("sandbox")
