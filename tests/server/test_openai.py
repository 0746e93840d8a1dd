"""The OpenAI-style /v1/embeddings: the request and response shapes the openai client and LLM frameworks use."""
from __future__ import annotations

import base64

import numpy as np
import pytest


def test_texts_in_float_and_base64(client, shapes_clip):
    texts = ["a red shape", "a blue square on a white background"]
    r = client.post("/v1/embeddings", json={"input": texts, "model": shapes_clip.name})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list" and body["model"] == shapes_clip.name
    assert [d["index"] for d in body["data"]] == [0, 1] and all(d["object"] == "embedding" for d in body["data"])
    got = np.array([d["embedding"] for d in body["data"]], np.float32)
    np.testing.assert_allclose(got, shapes_clip.embed_text(texts), atol=1e-5)
    assert body["usage"]["prompt_tokens"] == sum(shapes_clip.backend.count_tokens(texts)) > 0
    # The openai client asks for base64 by default: little-endian float32.
    b64 = client.post("/v1/embeddings", json={"input": texts[0], "encoding_format": "base64"}).json()
    np.testing.assert_allclose(np.frombuffer(base64.b64decode(b64["data"][0]["embedding"]), "<f4"), got[0], atol=1e-6)


def test_images_as_data_uris(client, shapes_clip, server_media):
    path = server_media / "images" / "orange-circle-0.jpg"
    uri = "data:image/jpeg;base64," + base64.b64encode(path.read_bytes()).decode()
    body = client.post("/v1/embeddings", json={"input": ["an orange shape", uri]}).json()
    image_vec = np.array(body["data"][1]["embedding"], np.float32)
    np.testing.assert_allclose(image_vec, shapes_clip.embed_image([path])[0], atol=1e-5)
    assert body["usage"]["prompt_tokens"] == sum(shapes_clip.backend.count_tokens(["an orange shape"]))


@pytest.mark.parametrize("request_body, status, param", [
    ({"input": "x", "model": "text-embedding-3-small"}, 404, "model"),
    ({"input": [[101, 2023]]}, 400, "input"),
    ({"input": "x", "dimensions": 12}, 400, "dimensions"),
    ({"input": []}, 400, "input"),
    ({"input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
])
def test_errors_in_openai_shape(client, request_body, status, param):
    r = client.post("/v1/embeddings", json=request_body)
    assert r.status_code == status
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]


def test_models_lists_the_space(client, shapes_clip):
    assert [m["id"] for m in client.get("/v1/models").json()["data"]] == [shapes_clip.name]
