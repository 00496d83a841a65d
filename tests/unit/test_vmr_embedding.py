"""The VMR's clip embedder (SPEC 4.2, 4.4) and the tiny retriever it loads, built offline in fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from marc_ops.data.synthetic import SyntheticConfig, generate_corpus
from marc_ops.video import open_video
from marc_ops.vmr.embedding import (
    ClipEmbedder,
    ClipWeightsNotFoundError,
    EmbedderConfig,
    EmptyQueryError,
    clip_frame_indices,
    query_text,
)
from marc_ops.vmr.retriever_training import (
    TRAINING_FILE,
    WEIGHTS_FILE,
    RetrieverTrainingConfig,
    collect_training_pairs,
    train_retriever,
)

TINY_CORPUS = SyntheticConfig(n_train_videos=3, n_eval_videos=1, n_train_images=0, n_eval_images=0)
FEW_STEPS = RetrieverTrainingConfig(steps=3, batch_size=8, warmup_steps=1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_corpus(TINY_CORPUS, tmp_path_factory.mktemp("vmr") / "corpus").root


@pytest.fixture(scope="module")
def untrained(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny retriever's seeded initialisation, as a checkpoint folder."""
    return train_retriever(
        corpus, tmp_path_factory.mktemp("ckpt") / "untrained", FEW_STEPS.model_copy(update={"steps": 0})
    )


@pytest.fixture(scope="module")
def embedder(untrained: Path) -> ClipEmbedder:
    return ClipEmbedder(
        EmbedderConfig(model_name="marc-tiny-clip", pretrained=str(untrained), batch_size=5, num_threads=1)
    )


@pytest.fixture(scope="module")
def video(corpus: Path) -> tuple[Path, list[tuple[int, int]]]:
    """The first training video and its ground-truth shot spans."""
    shots = json.loads((corpus / "shots.json").read_text())
    key = next(k for k in shots if not k.startswith("./eval/"))
    return corpus / key, [tuple(span) for span in shots[key]["spans"]]


@pytest.mark.parametrize(
    ("first", "last", "source_fps", "fps", "expected"),
    [
        (16, 43, 8.0, 1.0, [19, 26, 33, 40]),  # 3.5 s → 4 slots of 7 frames, their centres
        (0, 15, 8.0, 1.0, [4, 12]),  # exactly 2 s → 2 frames
        (0, 3, 8.0, 1.0, [2]),  # 0.5 s → the middle frame
        (5, 5, 8.0, 1.0, [5]),  # a one-frame clip
        (0, 3, 8.0, 16.0, [0, 1, 2, 3]),  # above the source rate: every frame once
        (10, 29, 10.0, 0.5, [20]),  # 2 s at 0.5 fps → one slot
    ],
)
def test_clip_frame_indices(
    first: int, last: int, source_fps: float, fps: float, expected: list[int]
) -> None:
    assert clip_frame_indices(first, last, source_fps, fps).tolist() == expected


def test_clip_frame_indices_rejects_an_empty_span() -> None:
    with pytest.raises(ValueError, match="first <= last"):
        clip_frame_indices(5, 4, 8.0, 1.0)


def test_query_is_question_then_options() -> None:
    text = query_text("What colour is the square?", ["A. red", "B. blue"], sample_id="7")
    assert text == "What colour is the square? A. red B. blue"
    assert query_text("  How many circles?\n", [], sample_id="8") == "How many circles?"


def test_empty_question_names_the_sample() -> None:
    with pytest.raises(EmptyQueryError, match="sample 42"):
        query_text("   ", ["A. red"], sample_id="42")


def test_embeddings_are_unit_norm(embedder: ClipEmbedder, video: tuple[Path, list]) -> None:
    path, spans = video
    frames = np.concatenate(list(open_video(path).read(np.arange(7), chunk_size=7)))
    for rows, n in [
        (embedder.embed_frames(frames), 7),
        (embedder.embed_texts(["a red circle on a blue background", "x", "y"]), 3),
        (embedder.embed_clips(path, spans).embeddings, len(spans)),
    ]:
        assert rows.shape == (n, embedder.embed_dim) and rows.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)


def test_clip_embedding_is_the_normalised_mean_of_its_1fps_frames(
    embedder: ClipEmbedder, video: tuple[Path, list]
) -> None:
    path, spans = video
    reader = open_video(path)
    short = (spans[1][0], spans[1][0] + 3)  # half a second at 8 fps: one (middle) frame
    clips = embedder.embed_clips(path, [*spans, short])
    for (first, last), embedding in zip([*spans, short], clips.embeddings, strict=True):
        indices = clip_frame_indices(first, last, reader.fps, 1.0)
        frames = np.concatenate(list(reader.read(indices, chunk_size=64)))
        mean = embedder.embed_frames(frames).mean(axis=0)
        np.testing.assert_allclose(embedding, mean / np.linalg.norm(mean), atol=1e-5)
    assert clip_frame_indices(*short, reader.fps, 1.0).tolist() == [short[0] + 2]
    np.testing.assert_array_equal(clips.spans, np.asarray([*spans, short]))
    np.testing.assert_allclose(clips.times[0], [spans[0][0] / reader.fps, (spans[0][1] + 1) / reader.fps])


def test_clip_embeddings_do_not_depend_on_the_batch_size(
    untrained: Path, embedder: ClipEmbedder, video: tuple[Path, list]
) -> None:
    path, spans = video
    one_at_a_time = ClipEmbedder(
        EmbedderConfig(model_name="marc-tiny-clip", pretrained=str(untrained), batch_size=1, num_threads=1)
    )
    np.testing.assert_allclose(
        one_at_a_time.embed_clips(path, spans).embeddings,
        embedder.embed_clips(path, spans).embeddings,
        atol=1e-5,
    )


def test_query_embedding_embeds_question_plus_options(embedder: ClipEmbedder) -> None:
    query = embedder.embed_query("Which shape moves?", ["A. circle", "B. square"], sample_id="3")
    np.testing.assert_allclose(
        query, embedder.embed_texts(["Which shape moves? A. circle B. square"])[0], atol=1e-6
    )
    assert not np.allclose(query, embedder.embed_texts(["Which shape moves?"])[0], atol=1e-3)
    with pytest.raises(EmptyQueryError, match="sample 3"):
        embedder.embed_query("", ["A. circle"], sample_id="3")


def test_thread_count_is_restored_after_embedding(embedder: ClipEmbedder) -> None:
    before = torch.get_num_threads()
    embedder.embed_texts(["a red circle"])
    assert torch.get_num_threads() == before


def test_spans_outside_the_video_are_refused(embedder: ClipEmbedder, video: tuple[Path, list]) -> None:
    path, spans = video
    with pytest.raises(ValueError, match="another file"):
        embedder.embed_clips(path, [(0, spans[-1][1] + 1)])


def test_model_id_names_the_exact_weights(
    corpus: Path, untrained: Path, embedder: ClipEmbedder, tmp_path: Path
) -> None:
    assert embedder.model_id.startswith("marc-tiny-clip@")
    again = ClipEmbedder(EmbedderConfig(model_name="marc-tiny-clip", pretrained=str(untrained)))
    assert again.model_id == embedder.model_id
    other_seed = train_retriever(
        corpus, tmp_path / "seed1", FEW_STEPS.model_copy(update={"steps": 0, "seed": 1})
    )
    other = ClipEmbedder(EmbedderConfig(model_name="marc-tiny-clip", pretrained=str(other_seed)))
    assert other.model_id != embedder.model_id


def test_checkpoint_of_another_model_is_refused(untrained: Path) -> None:
    with pytest.raises(ValueError, match="holds a 'marc-tiny-clip' model"):
        ClipEmbedder(EmbedderConfig(model_name="ViT-B-32", pretrained=str(untrained)))


def test_missing_local_weights_say_what_to_materialize(tmp_path: Path) -> None:
    with pytest.raises(ClipWeightsNotFoundError, match="retriever_checkpoint"):
        ClipEmbedder(EmbedderConfig(model_name="marc-tiny-clip", pretrained=str(tmp_path / "absent")))


def test_hub_tag_without_cached_weights_names_the_cache_and_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ClipWeightsNotFoundError) as error:
        ClipEmbedder(EmbedderConfig(model_name="ViT-B-32", pretrained="laion2b_s34b_b79k"))
    message = str(error.value)
    assert "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in message
    assert "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K" in message
    assert "set pretrained to a local path" in message


def test_unknown_hub_tag_lists_the_known_ones() -> None:
    with pytest.raises(ClipWeightsNotFoundError, match="laion2b_s34b_b79k"):
        ClipEmbedder(EmbedderConfig(model_name="ViT-B-32", pretrained="no-such-tag"))


def test_training_pairs_cover_descriptions_and_questions(corpus: Path) -> None:
    shots = json.loads((corpus / "shots.json").read_text())
    train_videos = [key for key in shots if not key.startswith("./eval/")]
    pairs = collect_training_pairs(corpus, with_questions=True)
    n_shots = sum(len(shots[key]["spans"]) for key in train_videos)
    questions = TINY_CORPUS.n_train_videos * TINY_CORPUS.questions_per_video
    assert len(pairs.shots) == n_shots
    assert len(pairs.pair_shot) == n_shots + questions
    assert all("/eval/" not in str(path) for path, _ in pairs.shots)
    assert shots[train_videos[0]]["descriptions"][0] in pairs.texts
    assert len(collect_training_pairs(corpus, with_questions=False).pair_shot) == n_shots


def test_training_changes_the_weights_and_is_deterministic(
    corpus: Path, untrained: Path, tmp_path: Path
) -> None:
    first = train_retriever(corpus, tmp_path / "a", FEW_STEPS)
    second = train_retriever(corpus, tmp_path / "b", FEW_STEPS)
    before, after = load_file(untrained / WEIGHTS_FILE), load_file(first / WEIGHTS_FILE)
    assert before.keys() == after.keys()
    assert any(not (before[name] == after[name]).all() for name in before)
    for name in (WEIGHTS_FILE, TRAINING_FILE, "open_clip_config.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    record = json.loads((first / TRAINING_FILE).read_text())
    assert record["config"]["steps"] == 3 and len(record["loss_curve"]) == 3


def test_training_config_checks_the_geometry() -> None:
    with pytest.raises(ValueError, match="multiple of patch_size"):
        RetrieverTrainingConfig(image_size=64, patch_size=24)
    with pytest.raises(ValueError, match="multiple of head_width"):
        RetrieverTrainingConfig(text_width=48, head_width=32)
