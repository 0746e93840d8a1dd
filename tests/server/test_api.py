"""The core API over a collection indexed with the trained shapes model: embed, search by text, upload, item and
vector, filters, items, thumbnails, media streams, stats and metrics."""
from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def name_of(hit: dict) -> str:
    return Path(hit["paths"][0]).name


def colour_of(hit: dict) -> str:
    return name_of(hit).split("-")[0]


def data_uri(path: Path) -> str:
    mime = "image/png" if path.suffix == ".png" else "image/jpeg"
    return f"data:{mime};base64," + base64.b64encode(path.read_bytes()).decode()


def test_embed_mixed_inputs_match_the_space(client, shapes_clip, server_media):
    image = server_media / "images" / "blue-square-1.png"
    r = client.post("/embed", json={"input": [{"text": "a red shape"}, {"image": data_uri(image)},
                                              {"image": base64.b64encode(image.read_bytes()).decode()}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["dim"] == shapes_clip.dim and [d["modality"] for d in body["data"]] == ["text", "image", "image"]
    got = np.array([d["embedding"] for d in body["data"]], np.float32)
    want = np.concatenate([shapes_clip.embed_text(["a red shape"]), shapes_clip.embed_image([image])])
    np.testing.assert_allclose(got[:2], want, atol=1e-5)
    np.testing.assert_allclose(got[2], got[1], atol=1e-6)  # base64 and data URI are the same bytes
    b64 = client.post("/embed", json={"input": [{"text": "a red shape"}], "encoding_format": "base64"}).json()
    np.testing.assert_allclose(np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), "<f4"), got[0], atol=1e-6)


def test_embed_names_the_bad_input(client):
    r = client.post("/embed", json={"input": [{"text": "fine"}, {"image": "bm90IGFuIGltYWdl"}]})
    assert r.status_code == 400
    assert "input[1]" in r.json()["detail"]["message"]
    r = client.post("/embed", json={"input": [{"picture": "x"}]})
    assert r.status_code == 400 and "input[0]" in r.json()["detail"]


def test_text_search_ranks_the_named_colour_first(client):
    for colour in ("red", "blue", "green"):
        r = client.post("/search", json={"text": f"a {colour} shape", "k": 4, "modalities": ["image"]})
        assert r.status_code == 200, r.text
        hits = r.json()["hits"]
        assert [colour_of(h) for h in hits[:2]] == [colour, colour], [name_of(h) for h in hits]
        assert hits[0]["score"] >= hits[1]["score"] >= hits[-1]["score"]
        assert hits[0]["thumbnail"] == f"/items/{hits[0]['id']}/thumbnail"
    r = client.get("/search", params={"q": "a blue shape", "k": 2, "modalities": "image"})
    assert [colour_of(h) for h in r.json()["hits"]] == ["blue", "blue"]


def test_video_hits_carry_the_matching_segment(client):
    hits = client.post("/search", json={"text": "a picture of a blue square", "k": 3,
                                        "modalities": ["video"]}).json()["hits"]
    top = hits[0]
    assert name_of(top) == "red-circle-then-blue-square.mp4"
    assert (top["start"], top["end"]) == (5.0, 9.0)  # blue square from 5 s on; red circle 1-5 s
    red = client.post("/search", json={"text": "a picture of a red circle", "k": 1,
                                       "modalities": ["video"]}).json()["hits"][0]
    assert name_of(red) == "red-circle-then-blue-square.mp4" and red["start"] == 0.0


def test_search_by_uploaded_image(client, server_media):
    path = server_media / "images" / "green-triangle-0.jpg"
    with open(path, "rb") as f:
        r = client.post("/search/upload", files={"file": ("query.jpg", f, "image/jpeg")},
                        data={"k": "3", "modalities": "image"})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert name_of(hits[0]) == "green-triangle-0.jpg" and hits[0]["score"] == pytest.approx(1.0, abs=1e-4)
    assert colour_of(hits[1]) == "green"
    assert r.json()["query"]["modality"] == "image"


def test_more_like_this_excludes_the_item_itself(client):
    first = client.post("/search", json={"text": "a yellow shape", "k": 1, "modalities": ["image"]}).json()["hits"][0]
    hits = client.post("/search", json={"like": first["id"], "k": 3, "modalities": ["image"]}).json()["hits"]
    assert first["id"] not in [h["id"] for h in hits]
    assert colour_of(hits[0]) == "yellow"
    r = client.post("/search", json={"like": "0123456789abcdef"})
    assert r.status_code == 404


def test_filters_min_score_and_k(client):
    everything = client.post("/search", json={"text": "a red shape", "k": 50}).json()["hits"]
    assert len(everything) == 14
    scores = [h["score"] for h in everything]
    cut = (scores[3] + scores[4]) / 2
    above = client.post("/search", json={"text": "a red shape", "k": 50, "min_score": cut}).json()["hits"]
    assert len(above) == 4 and all(h["score"] >= cut for h in above)
    videos = client.post("/search", json={"text": "a red shape", "k": 50, "modalities": ["video"]}).json()["hits"]
    assert {h["modality"] for h in videos} == {"video"} and len(videos) == 2
    pngs = client.post("/search", json={"text": "a red shape", "k": 50, "where": "mime = 'image/png'"}).json()["hits"]
    assert len(pngs) == 6 and all(name_of(h).endswith(".png") for h in pngs)
    bad = client.post("/search", json={"text": "a red shape", "where": "no_such_column = 1"})
    assert bad.status_code == 400 and "has no field 'no_such_column'" in bad.json()["detail"]
    assert client.post("/search", json={"text": "x", "k": 0}).status_code == 400
    assert client.post("/search", json={}).status_code == 400


def test_items_by_id(client):
    hit = client.post("/search", json={"text": "a blue shape", "k": 1, "modalities": ["image"]}).json()["hits"][0]
    item = client.get(f"/items/{hit['id']}", params={"vector": "true"}).json()
    assert item["id"] == hit["id"] and item["paths"] == hit["paths"] and item["mime"] in ("image/png", "image/jpeg")
    assert len(item["vector"]) == 64 and "meta" not in item
    assert client.get(f"/items/{item['content_hash']}").json()["id"] == hit["id"]
    assert client.get("/items/0123456789abcdef").status_code == 404
    assert client.get("/items/not-an-id'--").status_code == 404


def test_thumbnails_are_small_jpegs_and_cached(client, server_col):
    hit = client.post("/search", json={"text": "a red shape", "k": 1, "modalities": ["image"]}).json()["hits"][0]
    r = client.get(hit["thumbnail"], params={"size": 48})
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    im = Image.open(io.BytesIO(r.content))
    assert im.format == "JPEG" and max(im.size) <= 64
    assert list((server_col.folder / "cache" / "thumbnails").glob(f"{server_col.get(hit['id'])['content_hash']}-64*"))
    video = client.post("/search", json={"text": "a blue square", "k": 1, "modalities": ["video"]}).json()["hits"][0]
    frame = Image.open(io.BytesIO(client.get(video["thumbnail"], params={"t": 6}).content)).convert("RGB")
    black = Image.open(io.BytesIO(client.get(video["thumbnail"], params={"t": 0}).content)).convert("RGB")
    assert np.asarray(frame).std() > 10  # the frame at 6 s shows a shape; t=0 skips the black lead-in
    assert np.asarray(black).std() > 10


def test_media_streams_support_ranges(client, server_media):
    video = client.post("/search", json={"text": "a blue square", "k": 1, "modalities": ["video"]}).json()["hits"][0]
    data = (server_media / "videos" / name_of(video)).read_bytes()
    whole = client.get(video["media"])
    assert whole.status_code == 200 and whole.content == data and whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["x-content-type-options"] == "nosniff"
    part = client.get(video["media"], headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert client.get(video["media"], params={"path": 5}).status_code == 404


def test_stats_health_and_metrics(client):
    assert client.get("/health").json()["status"] == "ok"
    stats = client.get("/stats").json()
    assert stats["items"] == 14 and stats["by_modality"] == {"image": 12, "video": 2} and stats["errors"] == 0
    client.post("/search", json={"text": "a red shape", "k": 3})
    client.post("/search", json={"text": "a red shape", "k": 3})
    client.post("/search", json={"text": "a red shape", "k": 3, "min_score": 0.999})
    text = client.get("/metrics").text
    assert _metric(text, 'omnivec_queries_total{endpoint="search",modality="text"}') == 3
    assert _metric(text, 'omnivec_query_no_match_total{endpoint="search"}') == 1
    assert _metric(text, 'omnivec_query_best_score_count{endpoint="search"}') == 2
    assert _metric(text, 'omnivec_query_embedding_cache_total{result="hit"}') == 2
    assert _metric(text, 'omnivec_collection_items{modality="image"}') == 12
    assert _metric(text, 'omnivec_ingest_files{status="indexed"}') == 14
    assert _metric(text, 'omnivec_request_seconds_count{method="POST",route="/search",status="200"}') == 3


def _metric(text: str, series: str) -> float:
    m = re.search(re.escape(series) + r" ([0-9.e+-]+)", text)
    assert m, f"{series} not in metrics"
    return float(m.group(1))
