"""`omnivec index --ray`: the index job on a local Ray cluster (two CPUs, two model actors) with the trained shapes
model. Every item lands once, with the single-machine job's rows and vectors; a re-run adds nothing; an
interrupted run resumes."""
from __future__ import annotations

import json
import numpy as np
import pytest

import omnivec
from omnivec.cli import main
from omnivec.ingest import index
from omnivec.ingest.distributed import index_distributed

RAY = dict(workers=2, cpus_per_worker=0.5, decode_cpus=0.5)   # two actors and the decode tasks share two CPUs


@pytest.fixture(scope="module")
def ray_cluster():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def both(ray_cluster, media_folder, shapes_clip_dir, tmp_path_factory):
    """The same folder indexed on one machine and on the cluster (small commits, so there are many)."""
    root = tmp_path_factory.mktemp("ray")
    single = omnivec.open_collection(root / "single", space=str(shapes_clip_dir), create=True)
    one = index(single, [media_folder])
    dist = omnivec.open_collection(root / "ray", space=str(shapes_clip_dir), create=True)
    many = index_distributed(dist, [media_folder], commit_every=4, **RAY)
    return single, one, dist, many


def rows(col) -> dict[int, dict]:
    return {r["key"]: r for r in col.store.scan().to_pylist()}


def assert_same_records(single, dist) -> None:
    a, b = rows(single), rows(dist)
    assert set(a) == set(b)
    hashes = [r["content_hash"] for r in b.values() if r["kind"] == "item"]
    assert len(hashes) == len(set(hashes)), "a content was stored twice"
    for key, ra in a.items():
        rb = b[key]
        np.testing.assert_allclose(rb["vector"], ra["vector"], atol=1e-5, err_msg=str(ra["paths"]))
        # Byte-identical copies in one run: the record takes the file times of the copy that finished first,
        # which on a cluster is not always the first in walk order.
        ignored = {"vector", "added"} | ({"mtime", "year"} if len(ra["paths"]) > 1 else set())
        differ = {f for f in ra if f not in ignored and ra[f] != rb[f]}
        assert not differ, (ra["paths"], {f: (ra[f], rb[f]) for f in differ})


def test_every_item_lands_once_with_the_single_machine_records(both):
    single, one, dist, many = both
    for field in ("seen", "indexed", "duplicates", "unchanged", "skipped", "failed"):
        assert getattr(many, field) == getattr(one, field), field
    assert many.indexed > 20 and many.duplicates == 1 and sum(many.failed.values()) == 4
    assert_same_records(single, dist)
    assert [(e["path"], e["stage"]) for e in dist.errors()] == [(e["path"], e["stage"]) for e in single.errors()]
    files = {r["path"]: r["status"] for r in dist.store.all_files().to_pylist()}
    assert files == {r["path"]: r["status"] for r in single.store.all_files().to_pylist()}


def test_an_interrupted_run_resumes_and_adds_nothing_else(both, media_folder):
    single, one, dist, many = both
    # A run that died part-way: five contents never committed (neither records nor files rows), three committed
    # without their files rows. The re-run embeds the five, finds the three by their hash, leaves the rest as
    # they are (the failed files are tried again and fail again), and nothing doubles.
    images = sorted((r for r in dist.items("modality = 'image'", ["content_hash", "paths"]).to_pylist()
                     if len(r["paths"]) == 1), key=lambda r: r["content_hash"])
    lost, unrecorded = images[:5], images[5:8]
    dist.store.delete_records("content_hash IN (%s)" % ", ".join(f"'{r['content_hash']}'" for r in lost))
    dist.store.delete_files([r["paths"][0] for r in lost + unrecorded])
    resumed = index_distributed(dist, [media_folder], **RAY)
    assert (resumed.indexed, resumed.duplicates, resumed.failed) == (5, 3, many.failed)
    assert resumed.unchanged == many.indexed + many.duplicates + sum(many.skipped.values()) - 8
    assert_same_records(single, dist)


def test_cli_index_ray_option(ray_cluster, media_folder, shapes_clip_dir, tmp_path, capsys):
    """`--ray auto` joins the running cluster; the JSON summary is the usual one; a second run adds nothing."""
    args = ["index", str(media_folder / "images"), "--collection", str(tmp_path / "col"),
            "--space", str(shapes_clip_dir), "--ray", "auto", "--json"]
    images = len(list((media_folder / "images").iterdir()))
    for run in range(2):
        with pytest.raises(SystemExit) as ended:
            main(args)
        assert ended.value.code == 0
        s = json.loads(capsys.readouterr().out)
        assert s["collection"]["items"] == images - 1 and s["collection"]["path"] == str(tmp_path / "col")
        if run == 0:
            assert s["indexed"] == images - 1 and s["duplicates"] == 1  # one image is a byte-identical copy
        else:
            assert s["indexed"] == 0 and s["unchanged"] == images


def test_workers_with_another_model_version_stop_the_run_with_its_reason(ray_cluster, media_folder, tiny_clip_dir,
                                                                           shapes_clip_dir, tmp_path):
    col = omnivec.open_collection(tmp_path / "col", space=str(shapes_clip_dir), create=True)
    with pytest.raises(omnivec.ConfigError, match="the Ray workers load space .* but the collection is pinned"):
        index_distributed(col, [media_folder / "images"], space_source=str(tiny_clip_dir), workers=1)
    assert len(col) == 0 and col.store.all_files().num_rows == 0


def test_an_unreachable_cluster_is_a_config_error_in_seconds():
    from omnivec.ingest.distributed import _check_reachable

    with pytest.raises(omnivec.ConfigError, match="cannot reach the Ray cluster at 127.0.0.1:1"):
        _check_reachable("127.0.0.1:1")
    with pytest.raises(omnivec.ConfigError, match="expected 'auto', HOST:PORT"):
        _check_reachable("head-node")
