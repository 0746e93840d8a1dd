"""`omnivec eval retrieval | zeroshot` with the trained shapes model on generated labelled data: the printed
numbers are what metrics.py computes from the embeddings, the trained model beats an untrained one side by side,
every input format loads, and bad datasets fail with a clear message."""
from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

from omnivec.cli import main
from omnivec.quality.datasets import load_retrieval
from omnivec.quality.metrics import classification_metrics, retrieval_metrics
from omnivec.train.shapes import evaluation_scenes, sample_scenes

COLOURS = ["red", "green", "blue", "yellow", "purple", "orange"]


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    cap = capsys.readouterr()
    return e.value.code, cap.out, cap.err


@pytest.fixture(scope="module")
def scenes():
    return evaluation_scenes(seed=77)[::2]   # 20 held-out scenes: every colour, several shapes


@pytest.fixture(scope="module")
def caption_folder(tmp_path_factory, scenes) -> Path:
    """Images with a same-name .txt holding the full caption ("a large red circle on a white background")."""
    root = tmp_path_factory.mktemp("captions")
    for i, s in enumerate(scenes):
        s.render(64).save(root / f"scene-{i:02d}.png")
        (root / f"scene-{i:02d}.txt").write_text(s.caption("full") + "\n")
    return root


@pytest.fixture(scope="module")
def class_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("colours")
    counts = dict.fromkeys(COLOURS, 0)
    for i, s in enumerate(sample_scenes(300, seed=4)):
        if s.colour in counts and counts[s.colour] < 4:
            (root / s.colour).mkdir(exist_ok=True)
            s.render(64).save(root / s.colour / f"{i}.png")
            counts[s.colour] += 1
    return root


def test_retrieval_numbers_are_metrics_of_the_embeddings(capsys, caption_folder, scenes, shapes_clip_dir, shapes_clip):
    code, out, err = run(capsys, "eval", "retrieval", caption_folder, "--space", shapes_clip_dir, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["dataset"] == {"source": str(caption_folder), "kind": "caption-folder", "queries": 20,
                                 "items": 20, "judged_pairs": 20}
    (result,) = report["results"]
    assert list(result["directions"]) == ["text->image", "image->text"]
    assert result["directions"]["text->image"]["recall@1"] >= 0.9
    assert result["ms_per_item"] > 0 and result["ms_per_text"] > 0 and result["failed"] == []
    # the same numbers from the embeddings, computed here
    images = shapes_clip.embed_image(sorted(caption_folder.glob("*.png")))
    texts = shapes_clip.embed_text([s.caption("full") for s in scenes])
    scores, relevance = texts @ images.T, np.eye(len(scenes), dtype=bool)
    assert result["directions"]["text->image"] == retrieval_metrics(scores, relevance)
    assert result["directions"]["image->text"] == retrieval_metrics(scores.T, relevance.T)


def test_two_spaces_side_by_side(capsys, caption_folder, shapes_clip_dir, tiny_clip_dir):
    code, out, err = run(capsys, "eval", "retrieval", caption_folder, "--space", shapes_clip_dir, "--space",
                         tiny_clip_dir, "--json")
    assert code == 0, err
    report = json.loads(out)
    trained, untrained = report["results"]
    assert (trained["space"], untrained["space"]) == (shapes_clip_dir.name, tiny_clip_dir.name)
    for direction in ("text->image", "image->text"):
        assert report["best"][direction] == shapes_clip_dir.name
        assert trained["directions"][direction]["MRR"] > untrained["directions"][direction]["MRR"]
    assert trained["directions"]["text->image"]["recall@1"] > 2 * untrained["directions"]["text->image"]["recall@1"]
    assert all(r["ms_per_item"] > 0 for r in report["results"])
    code, out, err = run(capsys, "eval", "retrieval", caption_folder, "--space", shapes_clip_dir, "--space",
                         tiny_clip_dir, "--k", "1,3")
    assert code == 0, err
    assert f"best for text->image by recall@1: {shapes_clip_dir.name}" in " ".join(out.split())
    assert "R@3" in out and "R@10" not in out


def test_zeroshot_colour_classes(capsys, class_folder, shapes_clip_dir, shapes_clip):
    code, out, err = run(capsys, "eval", "zeroshot", class_folder, "--space", shapes_clip_dir, "--json")
    assert code == 0, err
    (r,) = json.loads(out)["results"]
    classes = sorted(COLOURS)
    assert r["classes"] == classes and list(r["per_class_accuracy"]) == classes
    assert r["top1"] >= 0.8 and r["top5"] is not None and r["top5"] >= r["top1"]
    matrix = np.asarray(r["confusion_matrix"])
    assert matrix.shape == (6, 6) and (matrix.sum(axis=1) == 4).all()
    # the same numbers from the embeddings
    files = [p for c in classes for p in sorted((class_folder / c).iterdir())]
    targets = np.repeat(np.arange(6), 4)
    expected = classification_metrics(shapes_clip.embed_image(files) @ shapes_clip.embed_labels(classes).T,
                                      targets, classes)
    assert {k: r[k] for k in expected} == expected
    code, out, err = run(capsys, "eval", "zeroshot", class_folder, "--space", shapes_clip_dir)
    assert code == 0, err
    assert "confusion matrix" in out and "per-class accuracy" in out


def test_webdataset_and_judgement_files_load(capsys, tmp_path, caption_folder, scenes, shapes_clip_dir):
    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        for i, s in enumerate(scenes[:10]):
            png = io.BytesIO()
            s.render(64).save(png, format="PNG")
            caption = (json.dumps({"caption": s.caption("full")}).encode(), "json") if i % 2 else \
                (s.caption("full").encode(), "txt")
            for data, ext in ((png.getvalue(), "png"), caption):
                info = tarfile.TarInfo(f"samples/{i:04d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    code, out, err = run(capsys, "eval", "retrieval", shard, "--space", shapes_clip_dir, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["dataset"]["kind"] == "webdataset" and report["dataset"]["items"] == 10
    assert report["results"][0]["directions"]["text->image"]["recall@1"] >= 0.9
    # judgements: colour queries, each relevant to every image of that colour (paths relative to the file)
    judgements = tmp_path / "colours.jsonl"
    with open(judgements, "w") as f:
        for colour in ("red", "blue", "green"):
            relevant = [f"{caption_folder.name}/scene-{i:02d}.png" for i, s in enumerate(scenes) if s.colour == colour]
            f.write(json.dumps({"query": f"a picture of a {colour} shape", "relevant": relevant}) + "\n")
    shutil.copytree(caption_folder, tmp_path / caption_folder.name)
    code, out, err = run(capsys, "eval", "retrieval", judgements, "--space", shapes_clip_dir,
                         "--items", tmp_path / caption_folder.name, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["dataset"]["queries"] == 3 and report["dataset"]["items"] == 20   # 8 judged + 12 distractors
    forward = report["results"][0]["directions"]["text->image"]
    assert forward["queries"] == 3 and forward["mAP@10"] >= 0.8
    # CSV: one judged pair per row, with grades
    csv_file = tmp_path / "graded.csv"
    csv_file.write_text(f"query,relevant,relevance\na red shape,{caption_folder}/scene-00.png,2\n"
                        f"a red shape,{caption_folder}/scene-01.png,1\nblue things,{caption_folder}/scene-02.png,1\n")
    data = load_retrieval(csv_file)
    assert data.queries == ["a red shape", "blue things"] and data.relevance.tolist() == [[2, 1, 0], [0, 0, 1]]


def test_bad_datasets_fail_clearly(capsys, tmp_path, caption_folder):
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"query": "a red shape", "relevant": ["nowhere/red.png"]}) + "\n")
    code, _, err = run(capsys, "eval", "retrieval", missing, "--space", "unused")
    assert code == 2 and "line 1: relevant item nowhere/red.png not found" in err
    uncaptioned = tmp_path / "uncaptioned"
    shutil.copytree(caption_folder, uncaptioned)
    (uncaptioned / "scene-03.txt").unlink()
    code, _, err = run(capsys, "eval", "retrieval", uncaptioned, "--space", "unused")
    assert code == 2 and "no caption file (same name, .txt) for" in err and "scene-03.png" in err
    classes = tmp_path / "classes"
    (classes / "red").mkdir(parents=True)
    (classes / "blue").mkdir()
    shutil.copy(caption_folder / "scene-00.png", classes / "red")
    code, _, err = run(capsys, "eval", "zeroshot", classes, "--space", "unused")
    assert code == 2 and "class folder 'blue' has no image or audio files" in err
    code, _, err = run(capsys, "eval", "retrieval", tmp_path / "no-such-dir", "--space", "unused")
    assert code == 2 and "does not exist" in err


def test_an_item_that_fails_to_embed_is_reported(capsys, tmp_path, caption_folder, shapes_clip_dir):
    folder = tmp_path / "with-broken"
    shutil.copytree(caption_folder, folder)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    (folder / "broken.txt").write_text("a small red circle on a blue background\n")
    code, out, err = run(capsys, "eval", "retrieval", folder, "--space", shapes_clip_dir, "--json")
    assert code == 1
    (r,) = json.loads(out)["results"]
    assert [f["item"] for f in r["failed"]] == [str(folder / "broken.png")]
    assert "broken.png" in err
    # the broken image's caption has nothing left to find; the other 20 are evaluated as before
    assert r["directions"]["text->image"]["queries"] == 20 and r["directions"]["image->text"]["queries"] == 20


def write_tone(path: Path, hz: float, seconds: float = 1.0, rate: int = 16000) -> None:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate)


def test_audio_both_directions_and_zeroshot(capsys, tmp_path, tiny_clap_dir, shapes_clip_dir):
    # Plumbing only: the tiny CLAP is untrained, so these numbers carry no meaning; the image tests do.
    captions = tmp_path / "sounds"
    captions.mkdir()
    for name, hz in (("low", 220), ("mid", 440), ("high", 880)):
        write_tone(captions / f"{name}.wav", hz)
        (captions / f"{name}.txt").write_text(f"a {name} pitched tone\n")
    code, out, err = run(capsys, "eval", "retrieval", captions, "--space", tiny_clap_dir, "--json")
    assert code == 0, err
    (r,) = json.loads(out)["results"]
    assert list(r["directions"]) == ["text->audio", "audio->text"]
    assert all(d["queries"] == 3 for d in r["directions"].values())
    classes = tmp_path / "tones"
    for name, hz in (("low", 220), ("high", 880)):
        (classes / name).mkdir(parents=True)
        for k in range(2):
            write_tone(classes / name / f"{k}.wav", hz * (1 + 0.05 * k))
    code, out, err = run(capsys, "eval", "zeroshot", classes, "--space", tiny_clap_dir, "--json")
    assert code == 0, err
    (z,) = json.loads(out)["results"]
    assert z["top5"] is None   # fewer than 5 classes: CLIP_benchmark's NaN, written as JSON null
    assert z["templates"][1] == "the sound of {}." and np.asarray(z["confusion_matrix"]).shape == (2, 2)
    # an image-text space cannot evaluate sounds: exit code 4 before anything is embedded
    code, _, err = run(capsys, "eval", "zeroshot", classes, "--space", shapes_clip_dir)
    assert code == 4 and "does not cover audio" in err
