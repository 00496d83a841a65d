"""VMR retrieval (SPEC 4.3-4.5): the LanceDB clip index, top-k retrieval, frame reassembly, and the
retriever's quality on the synthetic corpus (trained tiny embedder vs the same architecture untrained)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from marc_ops.data.synthetic import SyntheticConfig, generate_corpus
from marc_ops.video import VideoConfig, VideoDecodeError, open_video
from marc_ops.vmr.embedding import ClipEmbedder, EmbedderConfig, VideoClips, clip_frame_indices
from marc_ops.vmr.index import ClipIndex, ClipIndexConfig, VideoToIndex, fill_index, table_name
from marc_ops.vmr.retrieval import RetrievedClip, allocate_groups, assemble_frames, retrieve_clips
from marc_ops.vmr.retriever_training import RetrieverTrainingConfig, ground_truth_recall, train_retriever

DIM = 8


def _clips(n: int, seed: int = 0, dim: int = DIM) -> VideoClips:
    """n back-to-back clips of 10 frames at 8 fps with random unit embeddings."""
    rng = np.random.default_rng(seed)
    embeddings = rng.normal(size=(n, dim)).astype(np.float32)
    spans = np.stack([np.arange(n) * 10, np.arange(n) * 10 + 9], axis=1)
    return VideoClips(
        spans=spans,
        times=np.stack([spans[:, 0], spans[:, 1] + 1], axis=1) / 8.0,
        embeddings=embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True),
    )


# --- retrieval --------------------------------------------------------------------------------------


def test_top_k_by_cosine_returned_in_temporal_order() -> None:
    # Query along the first axis; clip scores are their cosines with it: 0.6, -1, 1, 0, 0.8.
    clips = VideoClips(
        spans=np.array([[0, 9], [10, 19], [20, 29], [30, 39], [40, 49]]),
        times=np.array([[0, 1], [1, 2], [2, 3], [3, 4], [4, 5]], dtype=np.float64),
        embeddings=np.array([[0.6, 0.8], [-1, 0], [1, 0], [0, 1], [0.8, 0.6]], dtype=np.float32),
    )
    selected = retrieve_clips(np.array([2.0, 0.0]), clips, k=3)  # the query need not be unit norm
    assert [clip.clip_index for clip in selected] == [0, 2, 4]
    assert [round(clip.score, 6) for clip in selected] == [0.6, 1.0, 0.8]
    assert selected[1] == RetrievedClip(2, 20, 29, 2.0, 3.0, pytest.approx(1.0))
    assert [clip.clip_index for clip in retrieve_clips(np.array([0.0, 1.0]), clips, k=1)] == [3]


def test_k_beyond_the_clip_count_keeps_every_clip_and_ties_keep_the_earlier_clip() -> None:
    clips = VideoClips(
        spans=np.array([[0, 9], [10, 19], [20, 29]]),
        times=np.zeros((3, 2)),
        embeddings=np.array([[1, 0], [0, 1], [0, 1]], dtype=np.float32),
    )
    assert [c.clip_index for c in retrieve_clips(np.array([1.0, 0.0]), clips, k=10)] == [0, 1, 2]
    assert [c.clip_index for c in retrieve_clips(np.array([0.0, 1.0]), clips, k=1)] == [1]
    with pytest.raises(ValueError, match="k must be >= 1"):
        retrieve_clips(np.array([1.0, 0.0]), clips, k=0)


# --- reassembly -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "budget", "expected"),
    [
        ([5, 5, 4], 32, [3, 3, 2]),  # fits: every clip whole, odd counts padded
        ([10, 3], 4, [3, 1]),  # proportional, D'Hondt
        ([60, 2, 2], 32, [30, 1, 1]),  # a long clip takes the rest, short ones keep one group
        ([1, 1, 1, 1], 4, [1, 1, 1, 1]),
        ([40, 40], 32, [16, 16]),
    ],
)
def test_allocate_groups(counts: list[int], budget: int, expected: list[int]) -> None:
    assert allocate_groups(counts, budget) == expected
    assert sum(expected) <= budget


def test_more_clips_than_groups_is_an_error() -> None:
    with pytest.raises(ValueError, match="raise max_frames to at least 6"):
        allocate_groups([3, 3, 3], 2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = SyntheticConfig(n_train_videos=3, n_eval_videos=1, n_train_images=0, n_eval_images=0)
    return generate_corpus(config, tmp_path_factory.mktemp("vmr") / "corpus").root


@pytest.fixture(scope="module")
def video(corpus: Path) -> tuple[Path, list[tuple[int, int]]]:
    shots = json.loads((corpus / "shots.json").read_text())
    key = next(k for k in shots if not k.startswith("./eval/"))
    return corpus / key, [tuple(span) for span in shots[key]["spans"]]


def _selected(spans: list[tuple[int, int]], indices: list[int], fps: float = 8.0) -> list[RetrievedClip]:
    return [
        RetrievedClip(i, spans[i][0], spans[i][1], spans[i][0] / fps, (spans[i][1] + 1) / fps, 0.5)
        for i in indices
    ]


def test_assembly_pads_every_clip_to_an_even_count_and_tags_frames(video: tuple[Path, list]) -> None:
    path, spans = video
    fps = open_video(path).fps
    chosen = [0, 2]
    assembled = assemble_frames(path, _selected(spans, chosen)[::-1])  # any order in, temporal order out
    expected: list[int] = []
    for i in chosen:
        indices = clip_frame_indices(*spans[i], fps, 1.0).tolist()
        expected += indices + indices[-1:] * (len(indices) % 2)
    assert assembled.frame_indices.tolist() == expected
    T = len(expected)
    assert assembled.frames.shape[0] == T and T % 2 == 0
    assert assembled.frames.shape[1] % 28 == 0 and assembled.frames.shape[2] % 28 == 0
    np.testing.assert_allclose(assembled.timestamps, np.asarray(expected) / fps)
    for clip in chosen:  # every clip: a contiguous, even run of its own id
        positions = np.flatnonzero(assembled.clip_ids == clip)
        assert len(positions) % 2 == 0 and np.all(np.diff(positions) == 1)
    assert all(len(set(pair)) == 1 for pair in assembled.clip_ids.reshape(-1, 2).tolist())
    assert assembled.group_clip_ids.tolist() == assembled.clip_ids[::2].tolist()
    odd = [i for i in chosen if len(clip_frame_indices(*spans[i], fps, 1.0)) % 2]
    for i in odd:  # the padding frame repeats the clip's last frame
        last = np.flatnonzero(assembled.clip_ids == i)[-2:]
        np.testing.assert_array_equal(assembled.frames[last[0]], assembled.frames[last[1]])


def test_assembly_caps_the_frame_count_uniformly(video: tuple[Path, list]) -> None:
    path, spans = video
    every_frame = VideoConfig(fps=8.0, max_frames=8)  # the clips hold far more than 8 frames at 8 fps
    assembled = assemble_frames(path, _selected(spans, [0, 1]), every_frame)
    assert len(assembled.frame_indices) == 8
    lengths = [spans[i][1] - spans[i][0] + 1 for i in (0, 1)]
    groups = allocate_groups(lengths, 4)
    assert [int((assembled.clip_ids == i).sum()) for i in (0, 1)] == [2 * n for n in groups]
    first_clip = assembled.frame_indices[assembled.clip_ids == 0]
    assert first_clip[0] == spans[0][0] and first_clip[-1] == spans[0][1]  # thinned from end to end


def test_assembly_of_a_long_video_keeps_64_frames(video: tuple[Path, list]) -> None:
    path, spans = video
    everything = [RetrievedClip(0, 0, spans[-1][1], 0.0, 1.0, 1.0)]
    at_10_fps = assemble_frames(path, everything, VideoConfig(fps=10.0))
    assert len(at_10_fps.frame_indices) == 64 and set(at_10_fps.clip_ids.tolist()) == {0}


def test_assembly_of_an_unreadable_video_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(VideoDecodeError, match="missing.mp4"):
        assemble_frames(tmp_path / "missing.mp4", [RetrievedClip(0, 0, 9, 0.0, 1.0, 1.0)])


# --- the LanceDB index ------------------------------------------------------------------------------


def _index(root: Path, **config: int) -> ClipIndex:
    return ClipIndex(root / "lancedb", "fake-model@0123", DIM, ClipIndexConfig(**config))


def test_table_name_is_per_model_and_safe() -> None:
    name = table_name("ViT-B-32@laion2b_s34b_b79k")
    assert name.startswith("clips__ViT-B-32_laion2b_s34b_b79k__")
    assert table_name("a/b") != table_name("a_b")


def test_clips_round_trip(tmp_path: Path) -> None:
    index = _index(tmp_path)
    clips = _clips(4)
    index.add({"./v/a.mp4": clips})
    stored = index.clips_of_video("./v/a.mp4")
    np.testing.assert_array_equal(stored.spans, clips.spans)
    np.testing.assert_allclose(stored.times, clips.times)
    np.testing.assert_array_equal(stored.embeddings, clips.embeddings)
    row = index.table.search().limit(1).to_arrow().to_pylist()[0]
    assert row["model_id"] == "fake-model@0123" and set(row) >= {"video_id", "clip_index", "start_time"}
    with pytest.raises(KeyError, match="clip_embeddings"):
        index.clips_of_video("./v/absent.mp4")


def test_adding_a_video_twice_replaces_its_clips(tmp_path: Path) -> None:
    index = _index(tmp_path)
    index.add({"a": _clips(5), "b": _clips(3, seed=1), "it's": _clips(2, seed=2)})
    index.add({"a": _clips(5), "b": _clips(3, seed=1), "it's": _clips(2, seed=2)})
    assert index.count_rows() == 10
    index.add({"a": _clips(2, seed=3)})  # re-segmented into fewer clips: the stale rows go
    assert index.count_rows() == 7
    np.testing.assert_array_equal(index.clips_of_video("a").embeddings, _clips(2, seed=3).embeddings)
    np.testing.assert_array_equal(index.clips_of_video("b").embeddings, _clips(3, seed=1).embeddings)
    assert index.indexed_videos() == {"a", "b", "it's"}


def test_a_killed_fill_resumes_without_duplicates_or_losses(tmp_path: Path) -> None:
    videos = [VideoToIndex(f"v{i}", tmp_path / f"v{i}.mp4", [(0, 9)] * (i % 3 + 1)) for i in range(10)]
    calls: list[Path] = []

    def embed(path: Path, spans: list[tuple[int, int]]) -> VideoClips:
        calls.append(path)
        return _clips(len(spans), seed=int(path.stem[1:]))

    def embed_then_die(path: Path, spans: list[tuple[int, int]]) -> VideoClips:
        if len(calls) == 5:
            raise KeyboardInterrupt  # the process is killed while embedding the sixth video
        return embed(path, spans)

    with pytest.raises(KeyboardInterrupt):
        fill_index(_index(tmp_path, commit_every=2), videos, embed_then_die)
    reopened = _index(tmp_path, commit_every=2)
    assert reopened.indexed_videos() == {"v0", "v1", "v2", "v3"}  # whole commits only
    calls.clear()
    report = fill_index(reopened, videos, embed)
    assert report.skipped == ["v0", "v1", "v2", "v3"] and len(report.embedded) == 6
    assert [path.stem for path in calls] == [f"v{i}" for i in range(4, 10)]
    final = _index(tmp_path)
    assert final.count_rows() == sum(i % 3 + 1 for i in range(10))
    assert final.indexed_videos() == {f"v{i}" for i in range(10)}
    np.testing.assert_array_equal(final.clips_of_video("v7").embeddings, _clips(2, seed=7).embeddings)


def test_unreadable_videos_are_quarantined(tmp_path: Path) -> None:
    def embed(path: Path, spans: list[tuple[int, int]]) -> VideoClips:
        if path.name == "bad.mp4":
            raise VideoDecodeError(path, "file is empty (0 bytes)")
        return _clips(len(spans))

    videos = [VideoToIndex(name, tmp_path / name, [(0, 9)]) for name in ("ok.mp4", "bad.mp4")]
    report = fill_index(_index(tmp_path), videos, embed)
    assert report.embedded == ["ok.mp4"] and report.failed == {"bad.mp4": "file is empty (0 bytes)"}


def test_vector_index_only_above_the_threshold(tmp_path: Path) -> None:
    index = _index(tmp_path, vector_index_min_rows=256)
    index.add({f"v{i}": _clips(10, seed=i) for i in range(20)})
    assert index.build_indexes() == []  # 200 rows: a flat scan
    target = index.clips_of_video("v3").embeddings[4]
    assert index.search(target, 1)[0].video_id == "v3"
    index.add({f"v{i}": _clips(10, seed=i) for i in range(20, 30)})
    assert sorted(index.build_indexes()) == ["embedding_idx", "video_id_idx"]
    assert index.count_rows() == 300
    assert index.clips_of_video("v25").embeddings.shape == (10, DIM)
    # Approximate now: the exact match must still be found (IVF-PQ candidates are re-ranked exactly).
    hits = [(hit.video_id, hit.clip_index) for hit in index.search(target, 5)]
    assert ("v3", 4) in hits


def test_a_table_with_another_dimension_is_refused(tmp_path: Path) -> None:
    _index(tmp_path).add({"a": _clips(2)})
    with pytest.raises(ValueError, match="16-dimensional"):
        ClipIndex(tmp_path / "lancedb", "fake-model@0123", 16, ClipIndexConfig())


# --- end to end and quality -------------------------------------------------------------------------


def test_embed_index_retrieve_assemble(corpus: Path, tmp_path: Path) -> None:
    checkpoint = train_retriever(corpus, tmp_path / "ckpt", RetrieverTrainingConfig(steps=0))
    embedder = ClipEmbedder(
        EmbedderConfig(model_name="marc-tiny-clip", pretrained=str(checkpoint), num_threads=1)
    )
    shots = json.loads((corpus / "shots.json").read_text())
    videos = [
        VideoToIndex(key, corpus / key, [tuple(s) for s in truth["spans"]]) for key, truth in shots.items()
    ]
    index = ClipIndex(tmp_path / "lancedb", embedder.model_id, embedder.embed_dim, ClipIndexConfig())
    report = fill_index(index, videos, embedder.embed_clips)
    assert len(report.embedded) == len(videos) and index.count_rows() == sum(len(v.spans) for v in videos)
    row = json.loads((corpus / "Video-R1-260k.json").read_text())[0]
    query = embedder.embed_query(row["problem"], row["options"], sample_id=str(row["problem_id"]))
    selected = retrieve_clips(query, index.clips_of_video(row["path"]), k=3)
    assert len(selected) == 3 and [c.start_frame for c in selected] == sorted(c.start_frame for c in selected)
    assembled = assemble_frames(corpus / row["path"], selected)
    assert set(assembled.clip_ids.tolist()) == {clip.clip_index for clip in selected}
    assert len(assembled.frames) % 2 == 0 and len(assembled.frames) <= 64


def _trained_vs_untrained(
    corpus_config: SyntheticConfig, training: RetrieverTrainingConfig, root: Path
) -> dict[str, object]:
    corpus = generate_corpus(corpus_config, root / "corpus").root
    recall = {}
    for name, config in [("untrained", training.model_copy(update={"steps": 0})), ("trained", training)]:
        checkpoint = train_retriever(corpus, root / name, config)
        embedder = ClipEmbedder(
            EmbedderConfig(model_name=config.model_name, pretrained=str(checkpoint), num_threads=1)
        )
        recall[name] = ground_truth_recall(embedder, corpus, split="eval", k=3)  # held-out videos
    print(f"recall on held-out videos: {recall}")
    return recall


def test_training_beats_the_untrained_retriever(tmp_path: Path) -> None:
    """Fast variant: a small corpus and a short training run must already beat the same
    architecture untrained by a clear margin on held-out videos (recall@1: chance is about 0.3)."""
    recall = _trained_vs_untrained(
        SyntheticConfig(n_train_videos=12, n_eval_videos=8, n_train_images=0, n_eval_images=0),
        RetrieverTrainingConfig(steps=60, batch_size=32, warmup_steps=6),
        tmp_path,
    )
    trained, untrained = recall["trained"], recall["untrained"]
    assert trained.recall_at_1 >= untrained.recall_at_1 + 0.25
    assert trained.recall_at_k >= untrained.recall_at_k


@pytest.mark.slow
def test_trained_retriever_finds_the_evidence_shot(tmp_path: Path) -> None:
    """The issue's quality bar: on the default-size corpus, with the default training config, the
    evidence shot of a held-out question is in the top 3 of its video's shots at least 90 % of the time."""
    recall = _trained_vs_untrained(
        SyntheticConfig(n_train_images=0, n_eval_images=0), RetrieverTrainingConfig(), tmp_path
    )
    trained, untrained = recall["trained"], recall["untrained"]
    assert trained.recall_at_k >= 0.9
    assert trained.recall_at_k > untrained.recall_at_k and trained.recall_at_1 > untrained.recall_at_1 + 0.3
