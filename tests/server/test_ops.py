"""tag, moderate, recommend and retrieve over HTTP, on stored items and request inputs (trained shapes model)."""
from __future__ import annotations

import base64
from pathlib import Path

import pytest

import omnivec
from omnivec.ingest import index

RED_POLICY = {"policies": [{"name": "red-things", "action": "review", "threshold": 0.0,
                            "positives": ["a red shape"], "negatives": ["a blue shape", "a green shape"]}]}


def ids_by_name(col) -> dict[str, str]:
    return {Path(r["paths"][0]).name: r["id"] for r in col.items(None, ["id", "paths"]).to_pylist()}


def name_of(hit: dict) -> str:
    return Path(hit["paths"][0]).name


def image_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def test_tag_items_and_inputs(client, server_col, server_media):
    ids = ids_by_name(server_col)
    labels = {"red": "a red shape", "blue": "a blue shape", "green": "a green shape"}
    r = client.post("/tag", json={"labels": labels, "templates": ["{}"], "top_k": 2,
                                  "items": [ids["red-circle-0.jpg"], ids["green-triangle-1.png"]],
                                  "input": [{"image": image_uri(server_media / "images" / "blue-square-1.png")}]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["labels"] == ["red", "blue", "green"] and body["version"]
    tops = [res["tags"][0]["label"] for res in body["results"]]
    assert tops == ["red", "green", "blue"]
    assert body["results"][0]["item"] == ids["red-circle-0.jpg"] and body["results"][2]["input"] == 0
    assert all(len(res["tags"]) == 2 for res in body["results"])


def test_labels_are_never_read_from_a_server_path(client, server_col, tmp_path):
    secret = tmp_path / "labels.txt"
    secret.write_text("red\nblue\n")
    r = client.post("/tag", json={"labels": str(secret), "items": [next(iter(ids_by_name(server_col).values()))]})
    assert r.status_code == 422


def test_moderate_with_inline_and_server_policies(client, make_client, server_col, tmp_path):
    ids = ids_by_name(server_col)
    targets = {"items": [ids["red-circle-1.png"], ids["blue-square-0.jpg"]]}
    r = client.post("/moderate", json={"policies": RED_POLICY, **targets})
    assert r.status_code == 200, r.text
    red, blue = r.json()["results"]
    assert red["flagged"] == ["red-things"] and red["action"] == "review" and red["decisions"][0]["score"] > 0
    assert blue["flagged"] == [] and blue["action"] is None and blue["decisions"][0]["score"] < 0
    assert client.post("/moderate", json=targets).status_code == 400  # no policies anywhere
    import yaml

    policy_file = tmp_path / "policies.yaml"
    policy_file.write_text(yaml.safe_dump(RED_POLICY))
    with_file = make_client(policies=policy_file)
    assert with_file.post("/moderate", json=targets).json()["results"][0]["flagged"] == ["red-things"]
    bad = client.post("/moderate", json={"policies": {"policies": [{"name": "x", "positives": ["a"]}]}, **targets})
    assert bad.status_code == 400 and "negatives" in bad.json()["detail"]


def test_recommend_likes_unlikes_and_exclusions(client, server_col, server_media):
    ids = ids_by_name(server_col)
    liked = ids["yellow-star-0.jpg"]
    r = client.post("/recommend", json={"like": [liked], "k": 3, "modalities": ["image"]})
    assert r.status_code == 200, r.text
    hits = r.json()["hits"]
    assert liked not in [h["id"] for h in hits] and name_of(hits[0]).startswith("yellow-")
    assert hits[0]["rank"] == 1 and hits[0]["thumbnail"]
    # An uploaded example, a text, and an exclusion.
    other_yellow = hits[0]["id"]
    r = client.post("/recommend", json={"like": [{"image": image_uri(server_media / "images" / "yellow-star-0.jpg")}],
                                        "text": "a yellow shape", "exclude": [other_yellow], "k": 2,
                                        "modalities": ["image"]})
    hits = r.json()["hits"]
    assert other_yellow not in [h["id"] for h in hits] and name_of(hits[0]) == "yellow-star-0.jpg"
    assert client.post("/recommend", json={"like": ["0123456789abcdef"]}).status_code == 404
    assert client.post("/recommend", json={"like": ["/etc/passwd"]}).status_code == 404


def test_retrieve_passages_with_citations(make_client, shapes_clip, server_media, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "red.md").write_text("# Red\n\na large red circle on a white background\n")
    (docs / "blue.txt").write_text("a small blue square on a black background\n")
    for name in ("red-circle-0.jpg", "blue-square-1.png"):
        (docs / name).write_bytes((server_media / "images" / name).read_bytes())
    col = omnivec.open_collection(tmp_path / "col", space=shapes_clip, create=True)
    index(col, [docs])
    c = make_client(collection=col)
    r = c.post("/retrieve", json={"query": "a large red circle", "k": 2, "modalities": ["text"]})
    assert r.status_code == 200, r.text
    body = r.json()
    top = body["hits"][0]
    assert Path(top["path"]).name == "red.md" and "red circle" in top["text"] and top["citation"]["n"] == 1
    assert body["context"].startswith("[1] ") and body["query"] == "a large red circle"
    images = c.post("/retrieve", json={"query": "a red shape", "k": 1, "modalities": ["image"],
                                       "data_uri": True, "thumbnail_px": 32}).json()["hits"]
    assert Path(images[0]["path"]).name == "red-circle-0.jpg"
    assert images[0]["data_uri"].startswith("data:image/jpeg;base64,")
    by_image = c.post("/retrieve", json={"query": {"image": image_uri(docs / "blue-square-1.png")}, "k": 1,
                                         "modalities": ["image"]}).json()
    assert Path(by_image["hits"][0]["path"]).name == "blue-square-1.png" and by_image["query"] == "<image>"


@pytest.mark.parametrize("path", ["/tag", "/moderate"])
def test_nothing_to_judge_is_a_400(client, path):
    body = {"labels": ["red"]} if path == "/tag" else {"policies": RED_POLICY}
    r = client.post(path, json=body)
    assert r.status_code == 400 and "nothing to judge" in r.json()["detail"]


def test_a_broken_policy_file_stops_the_start(server_col, tmp_path):
    from omnivec.server import ServerConfig, create_app

    bad = tmp_path / "policies.yaml"
    bad.write_text("policies: [{name: x, positives: [a red shape]}]\n")
    with pytest.raises(omnivec.ConfigError, match="negatives"):
        create_app(server_col, ServerConfig(policies=bad, query_log=tmp_path / "q.jsonl"))
