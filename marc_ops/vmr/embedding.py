"""Clip and query embeddings in one image-text space (SPEC section 4.2 and 4.4, paper 3.1.2).

Any open_clip model embeds the VMR's clips and questions: a built-in architecture with a hub tag
(its weights must already sit in the Hugging Face cache: nothing is downloaded offline), a
built-in architecture with a local weights file, or a local checkpoint folder in open_clip's own
format (``open_clip_config.json`` + weights), which is what
:func:`~marc_ops.vmr.retriever_training.train_retriever` writes and what a Hugging Face snapshot
of an open_clip model looks like.

Decisions (SPEC 4.2, 4.4):

- a clip's embedding is the L2-normalised mean of its frames' embeddings, the frames taken at
  ``frame_fps`` (1 fps) inside the clip: ``ceil(duration * fps)`` frames, at least one, each at
  the centre of its slot (:func:`clip_frame_indices`), so a clip shorter than a second is
  represented by its middle frame and no sample sits on a clip's first frame, where a
  cross-fade or a late cut would blend in the neighbouring shot;
- a query is the question followed by its options (:func:`query_text`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from huggingface_hub import constants as hf_constants
from PIL import Image

from marc_ops.config.vmr import EmbedderConfig
from marc_ops.errors import MarcError
from marc_ops.io import PICKLE_SUFFIXES, UnsafeWeightsError, check_safetensors, safetensors_weights
from marc_ops.video import open_video

# The config file of open_clip's folder format (`local-dir:` and Hugging Face snapshots).
CHECKPOINT_CONFIG = "open_clip_config.json"


class ClipWeightsNotFoundError(MarcError, FileNotFoundError):
    """The weights an `EmbedderConfig` names are not on this machine; the message says how to provide them."""


class EmptyQueryError(MarcError, ValueError):
    """A sample whose question text is empty cannot be turned into a retrieval query."""


@dataclass(frozen=True)
class VideoClips:
    """The clips of one video and their embeddings; clip ``i`` is row ``i``, in temporal order.

    spans: (N, 2) int64, inclusive ``[first_frame, last_frame]``;
    times: (N, 2) float64 seconds, ``[first_frame / fps, (last_frame + 1) / fps)``;
    embeddings: (N, D) float32, unit L2 norm per row.
    """

    spans: np.ndarray
    times: np.ndarray
    embeddings: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.spans)
        if self.spans.shape != (n, 2) or self.times.shape != (n, 2) or self.embeddings.ndim != 2:
            raise ValueError(
                f"VideoClips needs spans (N, 2), times (N, 2), embeddings (N, D); got "
                f"{self.spans.shape}, {self.times.shape}, {self.embeddings.shape}"
            )
        if len(self.embeddings) != n:
            raise ValueError(f"{n} spans but {len(self.embeddings)} embeddings")

    def __len__(self) -> int:
        return len(self.spans)


def query_text(problem: str, options: Sequence[str], *, sample_id: str) -> str:
    """The retrieval query of a sample: its question, then its options (SPEC 4.4), one space apart.

    ``query_text("What colour is the square?", ["A. red", "B. blue"], sample_id="7")`` →
    ``"What colour is the square? A. red B. blue"``. Raises EmptyQueryError naming
    ``sample_id`` when the question is empty or blank.
    """
    if not problem.strip():
        raise EmptyQueryError(
            f"sample {sample_id}: the question text is empty, so there is nothing to retrieve clips for; "
            "fix or quarantine the row"
        )
    return " ".join([problem.strip(), *(option.strip() for option in options if option.strip())])


def clip_frame_indices(first: int, last: int, source_fps: float, fps: float) -> np.ndarray:
    """Source frames that represent the clip ``[first, last]`` (inclusive) at ``fps`` frames per second.

    The clip's duration is cut into ``n = ceil(frames * fps / source_fps)`` equal slots (at least
    one, at most one per frame) and each slot contributes its centre frame. Returns (n,) int64,
    strictly increasing, inside ``[first, last]``.

    Example: frames 16..43 at 8 fps (3.5 s), fps=1 → 4 slots of 7 frames → [19, 26, 33, 40];
    frames 0..3 (0.5 s) → its middle frame [2].
    """
    if last < first or first < 0:
        raise ValueError(f"a clip span needs 0 <= first <= last, got [{first}, {last}]")
    length = last - first + 1
    # round() first: 2.0000000001 slots are 2, not 3.
    n = min(length, max(1, math.ceil(round(length * fps / source_fps, 6))))
    return first + np.floor((np.arange(n) + 0.5) * length / n).astype(np.int64)


class ClipEmbedder:
    """An open_clip model that embeds frames, clips and question texts into one unit-norm space.

    ``model_id`` names the model and its exact weights (a hub tag, or the sha256 of local weight
    files), so embeddings of different models or checkpoints never share an index table.
    """

    def __init__(self, config: EmbedderConfig) -> None:
        self.config = config
        self.device = torch.device(config.device)
        source, pretrained, self.model_id = _resolve_weights(config.model_name, config.pretrained)
        self.model, _, self.preprocess = open_clip.create_model_and_transforms(
            source, pretrained=pretrained, device=self.device
        )
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(source)
        self.embed_dim = int(self.model.text_projection.shape[1])

    @torch.inference_mode()
    def embed_frames(self, frames: np.ndarray) -> np.ndarray:
        """frames: (T, H, W, 3) uint8 RGB → (T, D) float32, unit L2 norm per row."""
        with torch_threads(self.config.num_threads):
            rows = [
                self._encode_images(frames[start : start + self.config.batch_size])
                for start in range(0, len(frames), self.config.batch_size)
            ]
        return np.concatenate(rows) if rows else np.zeros((0, self.embed_dim), np.float32)

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """texts: Q strings → (Q, D) float32, unit L2 norm per row (long texts are cut at the
        tokenizer's context length)."""
        rows = []
        with torch_threads(self.config.num_threads):
            for start in range(0, len(texts), self.config.batch_size):
                tokens = self.tokenizer(list(texts[start : start + self.config.batch_size])).to(self.device)
                rows.append(F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu().numpy())
        return np.concatenate(rows) if rows else np.zeros((0, self.embed_dim), np.float32)

    def embed_query(self, problem: str, options: Sequence[str], *, sample_id: str) -> np.ndarray:
        """The query embedding of a sample (question + options, :func:`query_text`): (D,) float32, unit norm."""
        return self.embed_texts([query_text(problem, options, sample_id=sample_id)])[0]

    @torch.inference_mode()
    def embed_clips(self, video_path: str | Path, spans: Sequence[tuple[int, int]]) -> VideoClips:
        """Embed each clip ``(first_frame, last_frame)`` of a video (SPEC 4.2).

        Frames are chosen by :func:`clip_frame_indices` at ``frame_fps``, decoded once for all clips
        in batches of ``batch_size`` (memory holds one batch of frames, not the video), embedded, and
        averaged per clip; the mean is L2-normalised. Returns N = len(spans) clips, in the given order.
        Raises VideoDecodeError naming the file if it cannot be read, ValueError for a span outside it.
        """
        reader = open_video(video_path)
        spans_array = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
        if len(spans_array) == 0:
            raise ValueError(f"{video_path}: no clip spans to embed")
        if spans_array.min() < 0 or spans_array.max() >= reader.num_frames:
            raise ValueError(
                f"{video_path}: clip spans reach frames {spans_array.min()}..{spans_array.max()} but the "
                f"video has frames 0..{reader.num_frames - 1}; were the shots detected on another file?"
            )
        per_clip = [
            clip_frame_indices(int(a), int(b), reader.fps, self.config.frame_fps) for a, b in spans_array
        ]
        wanted, where = np.unique(np.concatenate(per_clip), return_inverse=True)
        with torch_threads(self.config.num_threads):
            frame_embeddings = np.concatenate(
                [self._encode_images(chunk) for chunk in reader.read(wanted, self.config.batch_size)]
            )[where]
        bounds = np.cumsum([0, *(len(indices) for indices in per_clip)])
        means = np.stack(
            [frame_embeddings[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        )
        return VideoClips(
            spans=spans_array,
            times=np.stack([spans_array[:, 0], spans_array[:, 1] + 1], axis=1) / reader.fps,
            embeddings=_unit_rows(means),
        )

    def _encode_images(self, frames: np.ndarray) -> np.ndarray:
        """(B, H, W, 3) uint8 → (B, D) float32 unit rows, through the model's own preprocessing."""
        batch = torch.stack([self.preprocess(Image.fromarray(frame)) for frame in frames]).to(self.device)
        return F.normalize(self.model.encode_image(batch).float(), dim=-1).cpu().numpy()


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block on ``count`` torch intra-op threads, then restore the previous count (None: leave it)."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    """(N, D) → (N, D) float32 with unit L2 norm per row."""
    matrix = matrix.astype(np.float32)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def _resolve_weights(model_name: str, pretrained: str) -> tuple[str, str | None, str]:
    """(open_clip model source, open_clip `pretrained` argument, model id) for a config's two fields."""
    path = Path(pretrained).expanduser()
    if path.is_dir():
        return _checkpoint_folder(model_name, path)
    if path.is_file():
        check_safetensors(path)
        if path.suffix != ".safetensors":  # open_clip picks the loader by the name: torch.load for any other
            raise ValueError(
                f"{path}: a safetensors file must be named *.safetensors, or open_clip loads it as a pickle; "
                "rename it"
            )
        if model_name not in open_clip.list_models():
            raise ValueError(
                f"model_name {model_name!r} is not an open_clip architecture, so the weights file {path} has no "
                f"architecture to load into; point pretrained at a checkpoint folder holding {CHECKPOINT_CONFIG}, "
                "or use a built-in name from open_clip.list_models()"
            )
        return model_name, str(path), f"{model_name}@{_sha256(path)[:12]}"
    if model_name not in open_clip.list_models():
        raise ClipWeightsNotFoundError(
            f"pretrained={pretrained!r} is not an existing file or folder, and {model_name!r} is not a built-in "
            "open_clip architecture that could have hub tags; for the embedded default, materialize "
            "retriever_checkpoint first (it writes the folder pretrained should point at)"
        )
    tags = open_clip.list_pretrained_tags_by_model(model_name)
    if pretrained not in tags:
        raise ClipWeightsNotFoundError(
            f"pretrained={pretrained!r} is neither an existing local path nor a hub tag of {model_name} "
            f"(its tags: {', '.join(tags) or 'none'})"
        )
    _require_cached_hub_weights(model_name, pretrained)
    return model_name, pretrained, f"{model_name}@{pretrained}"


def _checkpoint_folder(model_name: str, folder: Path) -> tuple[str, None, str]:
    """A folder in open_clip's format: its config defines the architecture, its weights file the state."""
    config_file = folder / CHECKPOINT_CONFIG
    if not config_file.is_file():
        raise ClipWeightsNotFoundError(
            f"checkpoint folder {folder} has no {CHECKPOINT_CONFIG}; an open_clip checkpoint folder holds that "
            "config and one .safetensors weights file"
        )
    recorded = json.loads(config_file.read_text()).get("model_name")
    if recorded is not None and recorded != model_name:
        raise ValueError(
            f"checkpoint folder {folder} holds a {recorded!r} model but model_name is {model_name!r}; "
            "set model_name to match the checkpoint"
        )
    # open_clip picks a folder's weights by name and may prefer a pickle (open_clip_pytorch_model.bin) to a
    # safetensors file, so a folder that holds one is refused whatever else it holds.
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise UnsafeWeightsError(
            f"{folder / pickles[0]}: checkpoint folder {folder} holds pickle files ({', '.join(pickles)}), which "
            "can run code when loaded and which open_clip may load in place of the safetensors weights: keep only "
            "the .safetensors weights in the folder (convert them with safetensors.torch.save_file if needed)"
        )
    weights = safetensors_weights(folder)
    if not weights:
        raise ClipWeightsNotFoundError(
            f"checkpoint folder {folder} has {CHECKPOINT_CONFIG} but no .safetensors weights file"
        )
    digest = hashlib.sha256()
    for file in [config_file, *weights]:
        digest.update(_sha256(file).encode())
    return f"local-dir:{folder.resolve()}", None, f"{model_name}@{digest.hexdigest()[:12]}"


def _require_cached_hub_weights(model_name: str, tag: str) -> None:
    """Fetch (a cache hit when offline) the weights of a hub tag, or say where they were looked for."""
    pretrained_cfg = open_clip.get_pretrained_cfg(model_name, tag)
    try:
        open_clip.download_pretrained(pretrained_cfg)
    except OSError as error:  # open_clip raises FileNotFoundError for the hub, URLError (an OSError) for URLs
        hub = pretrained_cfg.get("hf_hub", "")
        if hub:
            # open_clip's convention: "org/repo/" means the repo's default file, "org/repo/file" that file.
            repo_id, filename = os.path.split(hub)
            looked_for = f"{repo_id}/{filename or 'open_clip_pytorch_model.bin (or .safetensors)'}"
            place = f"Hugging Face cache {Path(hf_constants.HF_HUB_CACHE) / ('models--' + repo_id.replace('/', '--'))}"
            fetch = f"run `hf download {repo_id}` on a connected machine and copy that cache folder here"
        else:
            looked_for = pretrained_cfg.get("url", "")
            place = f"download cache {Path('~/.cache/clip').expanduser() / os.path.basename(looked_for)}"
            fetch = f"download {looked_for} to that path"
        raise ClipWeightsNotFoundError(
            f"open_clip weights for {model_name} pretrained={tag!r} are not on this machine: looked for "
            f"{looked_for} in the {place}. To fix: {fetch}, or set pretrained to a local path: a weights file, or "
            f"a folder holding {CHECKPOINT_CONFIG} and the weights. ({type(error).__name__}: {error})"
        ) from error


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
