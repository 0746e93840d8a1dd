"""omnivec's filters on Milvus: the translator's output and errors, Milvus locations, and (against the session's
Milvus server) the same rows selected by every filter on both stores, missing values included."""
from __future__ import annotations

import numpy as np
import pytest

import omnivec
from omnivec.store.filters import to_milvus
from omnivec.store.milvus import IndexSpec, MilvusLocation, MilvusStore

FIXED = {"key", "id", "kind"}


def milvus(where: str) -> str:
    return to_milvus(where, fixed_fields=FIXED, primary_key="key")


# ---- the translator ----------------------------------------------------------------------------------------------
def test_comparisons_literals_and_connectives():
    assert milvus("kind = 'item'") == '(kind == "item")'
    assert milvus("year >= 2020 AND album = 'it''s \"x\"'") == \
        '(($meta["year"] >= 2020) and ($meta["album"] == "it\'s \\"x\\""))'
    assert milvus("2020 <= year OR rating > -1.5") == '(($meta["year"] >= 2020) or ($meta["rating"] > -1.5))'
    assert milvus('"photo date" < \'2021\'') == '($meta["photo date"] < "2021")'
    assert milvus("id IN ('a', 'b')") == '(id in ["a", "b"])'
    assert milvus("flag = TRUE") == '($meta["flag"] == true)'


def test_missing_values_follow_sql_three_valued_logic():
    # A dynamic field may be missing (SQL NULL): every test that Milvus would pass on a missing field is guarded.
    assert milvus("album != 'x'") == '((exists $meta["album"]) and $meta["album"] != "x")'
    assert milvus("NOT album = 'x'") == milvus("album != 'x'")
    assert milvus("NOT (album = 'x' OR rating < 3)") == \
        '(((exists $meta["album"]) and $meta["album"] != "x") and ($meta["rating"] >= 3))'
    assert milvus("album IS NULL") == 'not (exists $meta["album"])'
    assert milvus("NOT album IS NOT NULL") == milvus("album IS NULL")
    assert milvus("kind != 'item'") == "kind != \"item\""  # schema fields are never missing: no guard
    assert milvus("kind IS NULL") == "key in []"


def test_constants_simplify_and_empty_sets_select_nothing():
    assert milvus("false") == "key in []"
    assert milvus("id IN ()") == "key in []"
    assert milvus("NOT id IN ()") == "not (key in [])"
    assert milvus("id IN () AND kind = 'segment'") == "key in []"
    assert milvus("TRUE AND kind = 'item'") == '(kind == "item")'
    assert milvus("NOT album IN ()") == '(exists $meta["album"])'


def test_like_between_and_array_has():
    assert milvus("album LIKE 'sum%'") == '($meta["album"] like "sum%")'
    assert milvus("rating BETWEEN 2 AND 4") == '(($meta["rating"] >= 2) and ($meta["rating"] <= 4))'
    assert milvus("array_has(tags, 'b')") == 'json_contains($meta["tags"], "b")'
    assert milvus("NOT array_has(tags, 'b')") == '((exists $meta["tags"]) and not json_contains($meta["tags"], "b"))'


@pytest.mark.parametrize("bad, message", [
    ("", "empty filter"),
    ("year >=", "expected a value"),
    ("year = = 3", "expected a value"),
    ("year = 3 AND", "unexpected end"),
    ("(year = 3", "expected ')'"),
    ("year = 3)", "unexpected ')'"),
    ("album = other", "comparing two fields"),
    ("album LIKE '%x'", "only prefixes"),
    ("album ~ 'x'", "unexpected character '~'"),
    ("lower(album) = 'x'", "unknown function 'lower'"),
    ("album", "expected a comparison"),
])
def test_bad_filters_say_what_and_where(bad, message):
    with pytest.raises(omnivec.ConfigError, match="filter .*" + message.replace("(", r"\(").replace(")", r"\)")):
        milvus(bad)


# ---- locations ---------------------------------------------------------------------------------------------------
def test_locations_parse_with_index_options():
    loc = MilvusLocation.parse("milvus://me:s%40cret@db.example:19999/prod/photos?index=ivf_flat&nlist=256&nprobe=8")
    assert (loc.host, loc.port, loc.db, loc.name, loc.user, loc.password) == \
        ("db.example", 19999, "prod", "photos", "me", "s@cret")
    assert loc.index == IndexSpec(type="IVF_FLAT", nlist=256, nprobe=8)
    assert loc.uri == "milvus://db.example:19999/prod/photos"  # no credentials in messages
    assert MilvusLocation.parse("milvus://localhost/photos").port == 19530
    assert IndexSpec().search_params(200) == {"metric_type": "IP", "params": {"ef": 200}}
    assert IndexSpec(type="IVF_PQ").build_params(512) == {"nlist": 1024, "m": 64, "nbits": 8}


@pytest.mark.parametrize("uri, message", [
    ("milvus://host:19530/", "expected milvus://host:port/name"),
    ("milvus://host:19530/1photos", "cannot name a Milvus collection"),
    ("milvus://host:19530/photos__files", "cannot name a Milvus collection"),
    ("milvus://host:19530/photos?index=LSH", "not one of"),
    ("milvus://host:19530/photos?ef=many", "not a whole number"),
    ("milvus://host:19530/photos?colour=red", "unknown option 'colour'"),
    ("milvus://host:http/photos", "port is not a number"),
])
def test_bad_locations_are_config_errors(uri, message):
    with pytest.raises(omnivec.ConfigError, match=message):
        MilvusLocation.parse(uri)
    with pytest.raises(omnivec.ConfigError, match=message):
        omnivec.open_collection(uri)


# ---- the same rows on both stores -------------------------------------------------------------------------------
FILTERS = [
    "album = 'x'", "album != 'x'", "NOT (album = 'x')", "album IN ('x', 'z')", "album NOT IN ('x')",
    "album IS NULL", "album IS NOT NULL", "rating >= 3", "rating < 3", "NOT rating < 3", "2 <= rating",
    "rating BETWEEN 2 AND 4", "rating NOT BETWEEN 2 AND 4", "album = 'x' OR rating > 3",
    "NOT (album = 'x' OR rating > 3)", "NOT (album = 'x' AND rating > 3)", "album LIKE 'x%'",
    "album NOT LIKE 'x%'", "score > 0.5", "flag = true", "flag != true", "name = 'it''s'",
    "year >= 2020 AND (album = 'y' OR album IS NULL)", "array_has(tags, 'b')", "NOT array_has(tags, 'b')",
    "kind = 'item' AND NOT (album IN ('nope', 'x'))", "rating = -1",
]


def _metadata(i: int) -> dict:
    """Every field missing on some rows, so that the filters meet nulls."""
    meta = {"year": 2015 + i % 10}
    if i % 3:
        meta["album"] = ["x", "y", "xx", "z"][i % 4]
    if i % 4:
        meta["rating"] = i % 6 - 1
    if i % 5:
        meta["score"] = (i % 7) / 7
    if i % 2:
        meta["flag"] = bool(i % 3)
    if i % 7 == 0:
        meta["name"] = "it's"
    return meta


@pytest.fixture(scope="module")
def twin_collections(milvus_server, tiny_clip, tmp_path_factory):
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((60, tiny_clip.dim)).astype(np.float32)
    ids = [f"item-{i}" for i in range(60)]
    cols = [omnivec.open_collection(tmp_path_factory.mktemp("twin") / "lance", space=tiny_clip, create=True),
            omnivec.open_collection(f"milvus://{milvus_server}/twin_filters?index=HNSW&M=8&efConstruction=64&ef=32",
                                    space=tiny_clip, create=True)]
    for col in cols:
        col.add_vectors(vectors, ids=ids, metadata=[_metadata(i) for i in range(60)])
        stored = sorted(col.items(None, ["id"]).column("id").to_pylist())
        col.update_metadata(stored[:20], {"tags": [["a", "b"] if j % 2 else ["a"] for j in range(20)]})
    yield cols
    cols[1].store.drop()


@pytest.mark.parametrize("where", FILTERS)
def test_every_filter_selects_the_same_items_on_both_stores(twin_collections, where):
    lance, milvus_col = twin_collections
    expected = set(lance.items(where, ["id"]).column("id").to_pylist())
    assert set(milvus_col.items(where, ["id"]).column("id").to_pylist()) == expected
    assert 0 < len(expected) < 60 or where in ("rating = -1",)  # each filter splits the rows


def test_search_on_milvus_ranks_like_exact_search(twin_collections):
    lance, milvus_col = twin_collections
    q = lance.vector(lance.items(None, ["id"]).column("id").to_pylist()[5])
    for where in (None, "album != 'x'", "rating >= 3 AND flag = true"):
        exact = [(h.id, h.score) for h in lance.search(vector=q, k=5, where=where)]
        served = [(h.id, h.score) for h in milvus_col.search(vector=q, k=5, where=where)]
        assert [i for i, _ in served] == [i for i, _ in exact]
        assert [s for _, s in served] == pytest.approx([s for _, s in exact], abs=1e-5)
    assert milvus_col.store.index.type == "HNSW" and milvus_col.store.index.ef == 32


def test_reopening_reads_the_index_it_was_built_with(milvus_server, twin_collections):
    col = omnivec.open_collection(f"milvus://{milvus_server}/twin_filters")
    assert col.store.index.type == "HNSW" and len(col) == 60
    assert col.pinned == twin_collections[0].pinned


def test_a_missing_milvus_collection_says_how_to_create_it(milvus_server):
    with pytest.raises(omnivec.ConfigError, match="no collection at milvus://.*omnivec index FOLDER --collection"):
        omnivec.open_collection(f"milvus://{milvus_server}/never_made")
    store = MilvusStore(MilvusLocation.parse(f"milvus://{milvus_server}/never_made"))
    assert store.read_info() is None
