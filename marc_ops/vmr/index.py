"""The clip index: one LanceDB table per embedding model, one row per clip (SPEC 4.3).

Writes are idempotent and resumable. :meth:`ClipIndex.add` replaces the clips of the videos it is
given in a single ``merge_insert`` on ``(video_id, clip_index)`` that also deletes those videos'
rows the new data no longer has (a video re-segmented into fewer clips), and one merge is one
Lance commit: a run killed at any point leaves every video either wholly indexed or absent, never
half-written or duplicated. :func:`fill_index` skips the videos already indexed, so re-running it
after a kill finishes the job.

Reading for retrieval (decision): a sample's clips are read back by a ``video_id`` filter and
ranked exactly from the stored vectors (:func:`~marc_ops.vmr.retrieval.retrieve_clips`); a video
holds tens to hundreds of clips, so an exact scan costs microseconds, while an IVF-PQ index
approximates distances (product quantisation) and could reorder a video's top 3. The vector index
serves corpus-wide nearest-neighbour search (:meth:`ClipIndex.search`), and is only built once the
table holds ``vector_index_min_rows`` rows: below that a flat scan of the table is a few
milliseconds and the PQ codebooks (256 centroids per sub-vector) have too few rows to train on.
A scalar BTREE index on ``video_id`` is built at the same threshold, for the per-video filter.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import lancedb
import numpy as np
import pyarrow as pa
from lancedb.index import BTree, IvfPq
from tqdm import tqdm

from marc_ops.config.vmr import ClipIndexConfig
from marc_ops.video import VideoDecodeError
from marc_ops.vmr.embedding import VideoClips

logger = logging.getLogger(__name__)

KEY_COLUMNS = ["video_id", "clip_index"]


def table_name(model_id: str) -> str:
    """The LanceDB table of one embedding model: readable, and unique per ``model_id``.

    ``table_name("marc-tiny-clip@3f2a9c1b0d4e")`` → ``"clips__marc-tiny-clip_3f2a9c1b0d4e__<8 hex>"``;
    the hash of the exact id keeps two ids that sanitise alike apart.
    """
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", model_id)
    return f"clips__{readable}__{hashlib.sha256(model_id.encode()).hexdigest()[:8]}"


def clip_schema(embed_dim: int) -> pa.Schema:
    """One row per clip; ``embedding`` is a fixed-size list of ``embed_dim`` float32 (unit norm)."""
    return pa.schema(
        [
            pa.field("video_id", pa.string(), nullable=False),
            pa.field("clip_index", pa.int32(), nullable=False),
            pa.field("start_frame", pa.int64(), nullable=False),
            pa.field("end_frame", pa.int64(), nullable=False),
            pa.field("start_time", pa.float64(), nullable=False),
            pa.field("end_time", pa.float64(), nullable=False),
            pa.field("embedding", pa.list_(pa.float32(), embed_dim), nullable=False),
            pa.field("model_id", pa.string(), nullable=False),
        ]
    )


@dataclass(frozen=True)
class ClipHit:
    """A corpus-wide search result: which clip, and its cosine similarity to the query."""

    video_id: str
    clip_index: int
    score: float


class ClipIndex:
    """The LanceDB table of one embedding model under ``uri`` (created on first use)."""

    def __init__(self, uri: Path | str, model_id: str, embed_dim: int, config: ClipIndexConfig) -> None:
        self.model_id = model_id
        self.embed_dim = embed_dim
        self.config = config
        self.name = table_name(model_id)
        self.schema = clip_schema(embed_dim)
        self._db = lancedb.connect(str(uri))
        try:
            self.table = self._db.create_table(self.name, schema=self.schema, exist_ok=True)
        except ValueError as error:  # lancedb's "Provided schema does not match existing table schema"
            raise ValueError(
                f"LanceDB table {self.name} in {uri} does not hold the clip schema with {embed_dim}-dimensional "
                f"embeddings ({error}); it was written by other code: delete it to rebuild"
            ) from error

    def add(self, clips_by_video: Mapping[str, VideoClips]) -> int:
        """Replace the clips of these videos, in one commit; returns the rows written.

        Rows of these videos matching ``(video_id, clip_index)`` are updated, new ones inserted, and
        their rows absent from the new data deleted; other videos are untouched.
        """
        if not clips_by_video:
            return 0
        rows = pa.concat_tables([self._rows(video_id, clips) for video_id, clips in clips_by_video.items()])
        (
            self.table.merge_insert(KEY_COLUMNS)
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .when_not_matched_by_source_delete(f"video_id IN ({', '.join(map(_sql_string, clips_by_video))})")
            .execute(rows)
        )
        return rows.num_rows

    def indexed_videos(self) -> set[str]:
        """The videos with clips in the table (each one complete: a video is written in one commit)."""
        return set(self.table.search().select(["video_id"]).to_arrow().column("video_id").to_pylist())

    def indexed_spans(self) -> dict[str, list[tuple[int, int]]]:
        """Each indexed video's clip spans, in ``clip_index`` order (to find videos re-cut since indexing)."""
        table = self.table.search().select(["video_id", "clip_index", "start_frame", "end_frame"]).to_arrow()
        spans: dict[str, list[tuple[int, int, int]]] = {}
        for video_id, clip, first, last in zip(
            *(table.column(c).to_pylist() for c in table.column_names), strict=True
        ):
            spans.setdefault(video_id, []).append((clip, first, last))
        return {video: [(first, last) for _, first, last in sorted(rows)] for video, rows in spans.items()}

    def remove(self, video_ids: Iterable[str]) -> None:
        """Delete every clip of these videos, in one commit."""
        ids = sorted(set(video_ids))
        if ids:
            self.table.delete(f"video_id IN ({', '.join(map(_sql_string, ids))})")

    def count_rows(self) -> int:
        return self.table.count_rows()

    def content_digest(self) -> str:
        """sha256 of every row, in (video, clip) order: the same for the same clips and vectors, whatever
        the files LanceDB wrote them in (their names carry random UUIDs and times)."""
        table = self.table.to_arrow().sort_by([("video_id", "ascending"), ("clip_index", "ascending")])
        digest = hashlib.sha256()
        for name in self.schema.names:
            column = table.column(name)
            if name == "embedding":
                digest.update(np.asarray(column.combine_chunks().flatten(), dtype=np.float32).tobytes())
            else:
                digest.update(json.dumps(column.to_pylist()).encode())
        return digest.hexdigest()

    def clips_of_video(self, video_id: str) -> VideoClips:
        """The clips of one video, in ``clip_index`` order. Raises KeyError if the video is not indexed."""
        found = (
            self.table.search()
            .where(f"video_id = {_sql_string(video_id)}")
            .select(["clip_index", "start_frame", "end_frame", "start_time", "end_time", "embedding"])
            .to_arrow()
            .sort_by("clip_index")
        )
        if found.num_rows == 0:
            raise KeyError(
                f"video {video_id!r} has no clips in table {self.name}; materialize clip_embeddings"
            )
        column = found.column
        return VideoClips(
            spans=np.stack([column("start_frame").to_numpy(), column("end_frame").to_numpy()], axis=1),
            times=np.stack([column("start_time").to_numpy(), column("end_time").to_numpy()], axis=1),
            embeddings=_embedding_matrix(column("embedding"), self.embed_dim),
        )

    def search(self, query_embedding: np.ndarray, k: int) -> list[ClipHit]:
        """The ``k`` clips of the whole corpus nearest to the query by cosine distance.

        Exact (a flat scan) below ``vector_index_min_rows``; approximate (IVF-PQ, 32 partitions
        probed, the best ``10 k`` candidates re-ranked by exact distance) once
        :meth:`build_indexes` has built the vector index.
        """
        found = (
            self.table.search(np.asarray(query_embedding, dtype=np.float32), vector_column_name="embedding")
            .distance_type("cosine")
            .nprobes(32)
            .refine_factor(10)  # re-rank PQ candidates with exact distances: quantisation must not reorder
            .select(["video_id", "clip_index", "_distance"])
            .limit(k)
            .to_arrow()
        )
        return [
            ClipHit(video_id=video_id, clip_index=clip_index, score=1.0 - distance)
            for video_id, clip_index, distance in zip(
                found.column("video_id").to_pylist(),
                found.column("clip_index").to_pylist(),
                found.column("_distance").to_pylist(),
                strict=True,
            )
        ]

    def build_indexes(self) -> list[str]:
        """Build the vector and ``video_id`` indexes if the table is large enough and has none yet,
        else fold new rows into the existing ones; compacts small data files. Returns the index names."""
        existing = {index.columns[0] for index in self.table.list_indices()}
        rows = self.count_rows()
        if rows >= self.config.vector_index_min_rows:
            if "embedding" not in existing:
                logger.info("building the IVF-PQ index of %s over %d clips", self.name, rows)
                self.table.create_index("embedding", config=IvfPq(distance_type="cosine"))
            if "video_id" not in existing:
                self.table.create_index("video_id", config=BTree())
        self.table.optimize()
        return [index.name for index in self.table.list_indices()]

    def _rows(self, video_id: str, clips: VideoClips) -> pa.Table:
        if clips.embeddings.shape[1] != self.embed_dim:
            raise ValueError(
                f"video {video_id!r}: embeddings have dimension {clips.embeddings.shape[1]}, table {self.name} "
                f"holds {self.embed_dim}"
            )
        n = len(clips)
        flat = pa.array(clips.embeddings.astype(np.float32).ravel(), type=pa.float32())
        return pa.table(
            {
                "video_id": [video_id] * n,
                "clip_index": pa.array(np.arange(n, dtype=np.int32)),
                "start_frame": pa.array(clips.spans[:, 0].astype(np.int64)),
                "end_frame": pa.array(clips.spans[:, 1].astype(np.int64)),
                "start_time": pa.array(clips.times[:, 0].astype(np.float64)),
                "end_time": pa.array(clips.times[:, 1].astype(np.float64)),
                "embedding": pa.FixedSizeListArray.from_arrays(flat, self.embed_dim),
                "model_id": [self.model_id] * n,
            },
            schema=self.schema,
        )


@dataclass(frozen=True)
class VideoToIndex:
    """A video to embed: its id in the index, its file and its clip spans (inclusive frames)."""

    video_id: str
    path: Path
    spans: list[tuple[int, int]]


@dataclass
class FillReport:
    """What :func:`fill_index` did: videos embedded now, skipped as already indexed, and quarantined."""

    embedded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def fill_index(
    index: ClipIndex,
    videos: Iterable[VideoToIndex],
    embed_clips: Callable[[Path, list[tuple[int, int]]], VideoClips],
) -> FillReport:
    """Embed and add every video not yet in ``index``, ``index.config.commit_every`` videos per commit.

    ``embed_clips`` is typically ``ClipEmbedder(config).embed_clips``. A video that cannot be decoded
    is quarantined (its reason in ``report.failed``) and the run goes on; any other error stops it,
    and a re-run resumes after the last commit.
    """
    report = FillReport()
    done = index.indexed_videos()
    pending: dict[str, VideoClips] = {}
    for video in tqdm(list(videos), desc="clip embeddings", unit="video"):
        if video.video_id in done:
            report.skipped.append(video.video_id)
            continue
        try:
            pending[video.video_id] = embed_clips(video.path, video.spans)
        except VideoDecodeError as error:
            report.failed[video.video_id] = error.problem
            continue
        if len(pending) == index.config.commit_every:
            index.add(pending)
            report.embedded.extend(pending)
            pending = {}
    index.add(pending)
    report.embedded.extend(pending)
    return report


def _sql_string(value: str) -> str:
    """A SQL string literal (single quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def _embedding_matrix(column: pa.ChunkedArray, embed_dim: int) -> np.ndarray:
    """A fixed-size-list column → (N, embed_dim) float32."""
    values = column.combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return values.astype(np.float32).reshape(-1, embed_dim)
