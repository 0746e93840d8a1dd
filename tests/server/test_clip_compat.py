"""clip-retrieval's own ClipClient, unchanged, against a live omnivec server; and the front end's /metadata."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import requests


def clip_client_module():
    """clip_retrieval/clip_client.py by file path: the package's __init__ imports heavy modules that are not
    installed; the client module itself needs only requests."""
    spec = importlib.util.find_spec("clip_retrieval")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("clip-retrieval is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "clip_client.py"
    module_spec = importlib.util.spec_from_file_location("clip_client_under_test", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def colour(result: dict) -> str:
    return result["caption"].split("-")[0]


def test_clip_client_queries_by_text_image_and_vector(live_server, server_col, server_media, shapes_clip):
    cc = clip_client_module()
    client = cc.ClipClient(url=f"{live_server.url}/knn-service", indice_name=server_col.name, num_images=4)
    results = client.query(text="a red shape")
    assert len(results) == 4
    assert [colour(r) for r in results[:2]] == ["red", "red"], results
    assert all(set(r) >= {"id", "similarity", "url", "caption"} and isinstance(r["id"], int) for r in results)
    assert results[0]["similarity"] >= results[1]["similarity"]
    image = requests.get(results[0]["url"], timeout=10)  # the url serves the matched file
    assert image.status_code == 200 and image.content == Path(results[0]["path"]).read_bytes()

    by_image = client.query(image=str(server_media / "images" / "blue-square-0.jpg"))
    assert by_image[0]["caption"] == "blue-square-0.jpg" and by_image[0]["similarity"] == pytest.approx(1, abs=1e-4)
    assert colour(by_image[1]) == "blue"

    vector = shapes_clip.embed_text(["a green shape"])[0].tolist()
    by_vector = client.query(embedding_input=vector)
    assert [colour(r) for r in by_vector[:2]] == ["green", "green"]


def test_front_end_endpoints(live_server, server_col):
    assert requests.get(f"{live_server.url}/indices-list", timeout=10).json() == [server_col.name]
    body = {"text": "a yellow shape", "modality": "image", "num_images": 2, "num_result_ids": 6,
            "indice_name": server_col.name}
    results = requests.post(f"{live_server.url}/knn-service", json=body, timeout=30).json()
    assert len(results) == 6 and "caption" in results[1] and "caption" not in results[2]  # metadata for 2
    meta = requests.post(f"{live_server.url}/metadata", json={"ids": [r["id"] for r in results[2:]],
                                                              "indice_name": server_col.name}, timeout=10).json()
    assert [m["id"] for m in meta] == [r["id"] for r in results[2:]]
    assert all(m["metadata"]["caption"].endswith((".jpg", ".png", ".mp4")) for m in meta)
    videos = requests.post(f"{live_server.url}/knn-service", json={**body, "modality": "video"}, timeout=30).json()
    assert len(videos) == 2 and all(v["caption"].endswith(".mp4") for v in videos[:2])
    wrong = requests.post(f"{live_server.url}/knn-service", json={**body, "indice_name": "laion5B"}, timeout=10)
    assert wrong.status_code == 400 and "unknown indice_name" in wrong.json()["detail"]
