"""The Visual Memory Retriever's configs: shot detection, the clip embedder, the clip index, the tiny retriever."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class ShotConfig(BaseModel):
    """How `segment_video` runs TransNetV2 and turns its scores into shots.

    Attributes:
        threshold: a frame whose single-frame-head probability exceeds this is a boundary frame
            (TransNetV2's default 0.5).
        precision: "float32" runs the network as shipped; "bfloat16" under bfloat16 autocast
            (convolutions and matmuls in bfloat16, scores within a few hundredths); "auto" picks
            bfloat16 where the device computes it natively (a GPU that supports it, a CPU with
            AVX512-BF16 or AMX), else float32. On a CPU without those, bfloat16 is slower.
        batch_windows: 100-frame windows stacked into one forward pass. On the CPU one is
            fastest (larger batches fall out of cache); on a GPU more help. Results agree up
            to float rounding.
        decode_chunk: frames decoded (at 48x27) per chunk before they enter the window buffer.
            Results do not depend on it.
        device: torch device the network runs on ("cpu", "cuda", "cuda:1", ...).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float = Field(default=0.5, gt=0.0, lt=1.0)
    precision: Literal["auto", "float32", "bfloat16"] = "auto"
    batch_windows: int = Field(default=1, ge=1)
    decode_chunk: int = Field(default=500, ge=1)
    device: str = "cpu"


DEFAULT_SHOT_CONFIG = ShotConfig()


class EmbedderConfig(BaseModel):
    """Which open_clip model embeds clips and questions, and how.

    Attributes:
        model_name: an open_clip architecture (``open_clip.list_models()``, e.g. "ViT-B-32"), or
            the name recorded in a local checkpoint folder (the embedded default's "marc-tiny-clip").
        pretrained: a hub tag of that architecture (e.g. "laion2b_s34b_b79k": the weights must be in
            the Hugging Face cache), a local weights file for a built-in architecture, or a local
            checkpoint folder holding ``open_clip_config.json`` and its weights.
        frame_fps: frames per second of video averaged into a clip's embedding (SPEC 4.2: 1).
        batch_size: frames or texts per forward pass; results do not depend on it.
        device: torch device ("cpu", "cuda", "cuda:1", ...).
        num_threads: torch intra-op CPU threads while embedding (restored afterwards); None keeps
            torch's setting (all cores). A tiny model runs fastest on 1: its ops are too small to
            split, and on a busy 2-core machine two threads embedded 40x slower than one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = Field(min_length=1)
    pretrained: str = Field(min_length=1)
    frame_fps: float = Field(default=1.0, gt=0)
    batch_size: int = Field(default=64, ge=1)
    device: str = "cpu"
    num_threads: int | None = Field(default=None, ge=1)


class ClipIndexConfig(BaseModel):
    """How the clip index is written and when it builds its indexes.

    Attributes:
        vector_index_min_rows: build the IVF-PQ vector index (and the ``video_id`` BTREE) once the
            table holds at least this many rows; below it a flat scan is faster than the index pays
            back and PQ has too few rows to train on.
        commit_every: videos embedded per commit in :func:`fill_index`: larger batches make fewer,
            larger data files; smaller ones lose less work to a kill.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    vector_index_min_rows: int = Field(default=10_000, ge=256)
    commit_every: int = Field(default=16, ge=1)


class RetrieverTrainingConfig(BaseModel):
    """The tiny retriever's architecture, its training data and its optimisation.

    Architecture (open_clip CLIP): a ViT of ``vision_layers`` blocks of width ``vision_width``
    over ``image_size``² frames cut into ``patch_size``² patches, a causal text transformer of
    ``text_layers`` blocks of width ``text_width`` over ``context_length`` tokens of open_clip's
    own BPE vocabulary, both projected to ``embed_dim``. Frames are squashed to a square (not
    centre-cropped), so nothing at the edge of a wide frame is lost.

    Data: each training shot contributes its frames at ``frames_per_second`` (centred slots, as
    the embedder samples). Optimisation: ``steps`` AdamW steps of ``batch_size`` (text, frame)
    pairs, learning rate warmed up linearly over the first ``warmup_steps`` then cosine-decayed,
    on ``num_threads`` torch threads (restored afterwards).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = Field(default="marc-tiny-clip", min_length=1, description="recorded in the checkpoint")
    seed: int = Field(default=0, ge=0, description="seeds the initialisation, batch order and frame draws")
    embed_dim: int = Field(default=64, ge=8)
    image_size: int = Field(default=64, ge=16)
    patch_size: int = Field(default=16, ge=2)
    vision_width: int = Field(default=128, ge=16)
    vision_layers: int = Field(default=2, ge=1)
    text_width: int = Field(default=64, ge=16)
    text_layers: int = Field(default=2, ge=1)
    head_width: int = Field(default=32, ge=8, description="width of one attention head (vision and text)")
    context_length: int = Field(
        default=32, ge=8, description="text tokens; longer texts are cut (the corpus's longest query: 28)"
    )
    frames_per_second: float = Field(default=2.0, gt=0, description="training frames per second of each shot")
    train_on_questions: bool = Field(default=True, description="add question ↔ evidence-shot pairs")
    steps: int = Field(default=250, ge=0, description="optimiser steps; 0 saves the untrained initialisation")
    batch_size: int = Field(default=64, ge=2)
    learning_rate: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=0.05, ge=0)
    warmup_steps: int = Field(default=20, ge=0)
    num_threads: int = Field(
        default=1,
        ge=1,
        description="torch intra-op threads while training; the tiny model's ops are too small to split "
        "(on a busy 2-core machine one thread ran a step 4x faster than two), and a fixed count keeps "
        "the weights identical across machines",
    )

    @model_validator(mode="after")
    def _check_shapes(self) -> RetrieverTrainingConfig:
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})"
            )
        for name in ("vision_width", "text_width"):
            if getattr(self, name) % self.head_width:
                raise ValueError(
                    f"{name} ({getattr(self, name)}) must be a multiple of head_width ({self.head_width})"
                )
        return self
