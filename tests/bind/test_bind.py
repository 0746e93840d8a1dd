"""Binding two spaces through text alone: the sounds world, the tiny CLAP recipe, the map and its held-out report,
the saved bound space, and the proof: sounds find pictures of their concept though no sound was ever paired with a
picture."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import omnivec
from omnivec.errors import ConfigError
from omnivec.spaces.binding import (AnchorMap, fit_ridge, learn_map, map_from_arrays, neighbour_recall, perturb,
                                    unit)
from omnivec.spaces.bound import BOUND_FILE, CORPUS_FILE, MAP_FILE, bind
from omnivec.train.sounds import CONCEPTS, SAMPLE_RATE, sample_looks, sample_sounds

PROOF_SEED = 2024            # held-out renderings not used by the recipe's own evaluation (seed 0)
PER_CONCEPT = 3
MIN_RECALL = 0.7


# ---- the sounds world ---------------------------------------------------------------------------------------------
def _peak_hz(wave: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave))))
    return float(np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE)[np.argmax(spectrum)])


def test_sounds_are_deterministic_jittered_and_split():
    a, b = sample_sounds(2, seed=1), sample_sounds(2, seed=1)
    assert a == b and np.array_equal(a[0].render(), b[0].render())
    assert a[0].render().dtype == np.float32 and np.abs(a[0].render()).max() <= 1.0
    assert a[0] != a[1] and a[0].concept == a[1].concept  # two renderings of one concept differ
    held = sample_sounds(2, seed=1, split="heldout")
    assert not {(s.pitch, s.noise_seed) for s in a} & {(s.pitch, s.noise_seed) for s in held}


def test_each_concept_sounds_at_its_own_pitch():
    for s in sample_sounds(1, seed=3):
        c = s.concept
        low, high = sorted((c.base_hz * s.pitch, c.base_hz * s.pitch * c.chirp))
        assert low * 0.9 <= _peak_hz(s.render()) <= high * 1.1, (c.name, _peak_hz(s.render()))


def test_looks_and_names_match_the_shapes_world():
    looks = sample_looks(2, seed=4, split="heldout")
    assert [(s.colour, s.shape) for s in looks[::2]] == [(c.colour, c.shape) for c in CONCEPTS]
    assert all(s.background != s.colour for s in looks)
    assert len({c.colour for c in CONCEPTS}) == len(CONCEPTS) == 8


# ---- the map, on vectors ------------------------------------------------------------------------------------------
def test_neighbour_recall_is_one_for_a_perfect_map_and_low_for_a_scrambled_one():
    rng = np.random.default_rng(0)
    target = unit(rng.normal(size=(60, 16)))
    assert neighbour_recall(target, target) == 1.0
    assert neighbour_recall(target[rng.permutation(60)], target) < 0.4


def test_ridge_recovers_a_linear_map_and_maps_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    x = unit(rng.normal(size=(300, 12)))
    w = rng.normal(size=(12, 20))
    y = unit(x @ w)
    m = fit_ridge(x, y, alpha=1e-6)
    assert np.mean(np.sum(m(x) * y, axis=1)) > 0.99
    again = map_from_arrays(m.kind, m.arrays(), m.params)
    np.testing.assert_allclose(again(x), m(x), atol=1e-6)
    with pytest.raises(ConfigError, match="incomplete"):
        map_from_arrays("ridge", {"layer0.weight": m.arrays()["layer0.weight"]})
    with pytest.raises(ConfigError, match="takes 12-d"):
        m(np.ones((2, 5), np.float32))


def test_learn_map_chooses_on_validation_and_reports_on_heldout():
    rng = np.random.default_rng(2)
    x = unit(rng.normal(size=(200, 8)))
    y = unit(np.tanh(x @ rng.normal(size=(8, 24))))
    b = learn_map(x, y, mlp=False)
    r = b.report
    assert r["split"] == {"fit": 140, "validation": 30, "heldout": 30}
    assert r["kind"] == max(r["validation"], key=lambda t: t["score"])["kind"]
    assert r["heldout"]["recall_at_10"] > r["heldout_mean_vector_baseline"]["recall_at_10"] + 0.3
    with pytest.raises(ConfigError, match="at least"):
        learn_map(x[:10], y[:10])


def test_anchor_map_copies_the_nearest_sentence_at_low_temperature():
    rng = np.random.default_rng(3)
    keys, values = unit(rng.normal(size=(5, 6))), unit(rng.normal(size=(5, 9)))
    m = AnchorMap("anchors", {"temperature": 1e-3}, keys=keys, values=values)
    np.testing.assert_allclose(m(perturb(keys, 0.99, rng)), values, atol=1e-4)


# ---- the trained models -------------------------------------------------------------------------------------------
def test_clap_recipe_learns_sounds_and_loads_as_a_space(sounds_clap_dir):
    recipe = json.loads((Path(sounds_clap_dir) / "omnivec_recipe.json").read_text())
    assert recipe["heldout_sound_to_caption_accuracy"] >= 0.9, recipe
    for f in ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer_config.json"):
        assert (Path(sounds_clap_dir) / f).is_file(), f
    clap = omnivec.load_space(sounds_clap_dir)
    assert set(clap.modalities) == {"text", "audio"}
    sounds = sample_sounds(2, seed=PROOF_SEED, split="heldout")
    audio = clap.embed_audio([(s.render(), SAMPLE_RATE) for s in sounds])
    text = clap.embed_text([s.caption("sound") for s in sounds[::2]])
    truth = np.repeat(np.arange(len(CONCEPTS)), 2)
    assert np.mean((audio @ text.T).argmax(axis=1) == truth) >= 0.9


# ---- bind: the command, the folder, the space ---------------------------------------------------------------------
def test_bind_reports_neighbours_kept_on_heldout_text(bound, captions_file):
    folder, summary = bound
    lines = [s for s in captions_file.read_text().splitlines() if s]
    assert summary["sentences"] == len(lines) and sum(summary["split"].values()) == len(lines)
    assert summary["mapped_modalities"] == ["audio"]
    held, base = summary["heldout"], summary["heldout_mean_vector_baseline"]
    # Chance is the mean-vector baseline; the map must keep neighbourhoods far better, on and off the text.
    assert held["recall_at_10"] > base["recall_at_10"] + 0.15, summary
    assert held["off_text_recall_at_10"] > base["recall_at_10"] + 0.15, summary
    assert held["mean_cosine"] > base["mean_cosine"] + 0.15, summary
    for f in (BOUND_FILE, MAP_FILE, CORPUS_FILE):
        assert (folder / f).is_file()


def test_bound_folder_is_declarative(bound, shapes_clip_dir, sounds_clap_dir):
    folder, _ = bound
    record = json.loads((folder / BOUND_FILE).read_text())
    assert record["spaces"]["base"]["source"] == str(Path(shapes_clip_dir).resolve())
    assert record["spaces"]["other"]["source"] == str(Path(sounds_clap_dir).resolve())
    assert record["spaces"]["base"]["version"] == omnivec.load_space(shapes_clip_dir).version
    assert record["map"]["file"] == MAP_FILE and len(record["map"]["sha256"]) == 64
    assert record["fit"]["validation"], "every candidate's validation score is kept"


def test_bound_space_embeds_like_its_sources(bound_space, shapes_clip, sounds_clap_dir, tmp_path):
    clip, clap = shapes_clip, omnivec.load_space(sounds_clap_dir)
    sp = bound_space
    assert set(sp.modalities) == {"text", "image", "audio", "video"} and sp.dim == clip.dim
    # The version names both spaces' versions and the map's hash.
    assert clip.version in sp.version and clap.version in sp.version and sp.record["map"]["sha256"][:12] in sp.version
    texts = ["a red circle", "the sound of a blue triangle"]
    np.testing.assert_allclose(sp.embed_text(texts), clip.embed_text(texts), atol=1e-6)
    image = sample_looks(1, seed=PROOF_SEED)[0].render(64)
    np.testing.assert_allclose(sp.embed_image(image), clip.embed_image(image), atol=1e-6)
    wav = tmp_path / "tone.wav"
    sf.write(wav, sample_sounds(1, seed=PROOF_SEED)[0].render(), SAMPLE_RATE)
    mapped = sp.backend.text_map(clap.embed_audio(wav))
    np.testing.assert_allclose(sp.embed_audio(wav), mapped, atol=1e-6)
    assert abs(float(np.linalg.norm(sp.embed_audio(wav))) - 1.0) < 1e-5
    assert sp.describe()["bound"]["modalities"]["audio"].endswith("-> map")


def test_sound_finds_pictures_of_its_concept_through_text_alone(bound, tmp_path):
    """The proof: held-out sounds (new jitter and noise) search a collection of held-out pictures (new places, sizes
    and backgrounds) through the public API; the top hit must show the sound's concept."""
    folder, _ = bound
    sp = omnivec.load_space(folder)
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for i, scene in enumerate(sample_looks(PER_CONCEPT, seed=PROOF_SEED, split="heldout")):
        scene.render(64).save(pictures / f"{scene.colour}-{scene.shape}-{i}.png")
    col = omnivec.open_collection(tmp_path / "pictures-col", space=sp, create=True)
    from omnivec.ingest.pipeline import index

    assert index(col, [pictures]).indexed == PER_CONCEPT * len(CONCEPTS)
    sounds = sample_sounds(PER_CONCEPT, seed=PROOF_SEED, split="heldout")
    correct = []
    for j, s in enumerate(sounds):
        wav = tmp_path / f"sound-{j}.wav"
        sf.write(wav, s.render(), SAMPLE_RATE)
        top = col.search(audio=str(wav), k=1)[0]
        assert top.modality == "image"
        correct.append(Path(top.paths[0]).name.startswith(f"{s.concept.colour}-{s.concept.shape}-"))
    recall = float(np.mean(correct))
    print(f"sound -> picture recall@1 over {len(sounds)} held-out sounds, {len(CONCEPTS)} concepts: {recall:.3f}")
    assert recall >= MIN_RECALL


def test_binding_the_other_way_maps_pictures_into_the_sound_space(sounds_clap_dir, shapes_clip_dir, captions_file,
                                                                   tmp_path):
    """CLAP as the base: pictures (and video frames) go through the map, sounds stay CLAP's own."""
    bind(sounds_clap_dir, shapes_clip_dir, captions_file, tmp_path / "reverse", mlp=False)
    sp = omnivec.load_space(tmp_path / "reverse")
    assert sp.modality_sources()["image"].endswith("-> map") and not sp.modality_sources()["audio"].endswith("map")
    pictures = sp.embed_image([s.render(64) for s in sample_looks(PER_CONCEPT, seed=PROOF_SEED, split="heldout")])
    sounds = sp.embed_audio([(s.render(), SAMPLE_RATE) for s in sample_sounds(PER_CONCEPT, seed=PROOF_SEED,
                                                                               split="heldout")])
    truth = np.repeat(np.arange(len(CONCEPTS)), PER_CONCEPT)
    assert np.mean(truth[(pictures @ sounds.T).argmax(axis=1)] == truth) >= MIN_RECALL


# ---- what goes wrong ----------------------------------------------------------------------------------------------
def test_a_damaged_map_or_a_changed_source_is_refused(bound, tmp_path):
    folder, _ = bound
    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    data = bytearray((damaged / MAP_FILE).read_bytes())
    data[-1] ^= 0xFF
    (damaged / MAP_FILE).write_bytes(bytes(data))
    with pytest.raises(ConfigError, match="recorded hash"):
        omnivec.load_space(damaged)
    changed = tmp_path / "changed"
    shutil.copytree(folder, changed)
    record = json.loads((changed / BOUND_FILE).read_text())
    record["spaces"]["other"]["version"] = "0000.p1.c1.o000000"
    (changed / BOUND_FILE).write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="bind again"):
        omnivec.load_space(changed)


def test_bind_errors_are_usage_errors(cli, shapes_clip_dir, sounds_clap_dir, captions_file, tmp_path):
    small = tmp_path / "small.txt"
    small.write_text("a red circle\na blue triangle\n")
    r = cli("bind", shapes_clip_dir, sounds_clap_dir, "--corpus", small, "--out", tmp_path / "b1")
    assert r.returncode == 2 and "at least" in r.stderr and not (tmp_path / "b1").exists()
    with pytest.raises(ConfigError, match="no such file"):
        bind(shapes_clip_dir, sounds_clap_dir, tmp_path / "missing.txt", tmp_path / "b2")
    with pytest.raises(ConfigError, match="would add no modality"):
        bind(sounds_clap_dir, sounds_clap_dir, captions_file, tmp_path / "b3")
    (tmp_path / "b4").mkdir()
    (tmp_path / "b4" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a bound space folder"):
        bind(shapes_clip_dir, sounds_clap_dir, captions_file, tmp_path / "b4")
