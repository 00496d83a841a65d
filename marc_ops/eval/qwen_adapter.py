"""The real model adapter: Qwen2.5-VL (base, SFT or C-GRPO weights) answering benchmark samples as one method.

:class:`QwenAdapter` is the runner's :class:`~marc_ops.eval.runner.ModelAdapter` for every method of
:data:`~marc_ops.config.methods.METHODS`. For each sample it builds the method's visual input, renders
the runner's chat messages, and counts the video placeholders the compressed model expects; a batch
is left-padded and decoded greedily. What the method decides:

- ``use_vmr``: the frames ``vmr_selection`` recorded for the sample (split ``eval:<benchmark>``), each
  tagged with its clip; otherwise the whole video at ``video.fps`` (1 fps), thinned to
  ``method.max_frames``, as one clip. Images are fed as they are either way.
- ``compression``: applied to the model when it is loaded (it overrides a checkpoint's own), so an
  SFT or C-GRPO checkpoint is evaluated at the method's budget, not at the one it was saved with.
- ``checkpoint``: which weights answer (:func:`resolve_checkpoint`).

Per sample it returns the decoded text, the visual tokens the LLM saw (image or video placeholders
in that sample's prompt) and the batch's wall time divided by its size: building the frames,
encoding, prefill and decoding, not loading the model. With ``decode_workers`` > 0, ``prefetch``
builds the next batch's frames in a pool of that many threads while the current batch generates
(decord, PyAV and torch's resize release the GIL while they work); the latency then counts only
the wait for frames that were not ready.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import polars as pl
import torch
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

from marc_ops.config import ProjectPaths
from marc_ops.config.methods import MethodSpec
from marc_ops.errors import MarcError
from marc_ops.eval.runner import EvalInput, GenerationOutput
from marc_ops.model import compression_of, load_qwen2_5_vl, load_qwen2_5_vl_processor
from marc_ops.model.generation import greedy_decode
from marc_ops.train.inputs import (
    EncodedSample,
    SampleBuilder,
    TrainingSample,
    encode_prompt,
    model_inputs,
    vmr_builder,
    whole_video_builder,
)
from marc_ops.video import DEFAULT_VIDEO_CONFIG, VideoConfig

logger = logging.getLogger(__name__)


class CheckpointNotFoundError(MarcError, FileNotFoundError):
    """A method's weights are not materialized; the message names the asset that makes them."""


class SelectionNotFoundError(MarcError, FileNotFoundError):
    """A VMR method's clips are not in ``vmr_selection``; the message says how to produce them."""


def resolve_checkpoint(
    paths: ProjectPaths, method: MethodSpec, *, init: Literal["base", "sft"] = "base"
) -> Path:
    """The directory holding ``method``'s weights.

    ``base``: the initial policy (``train.init``, passed as ``init``): the ``base_model`` asset's
    recorded path, or with ``init="sft"`` (tiny profile) the SFT warm-up the teacher and C-GRPO start
    from; ``sft``: ``assets/sft_checkpoint/model``; ``cgrpo:<tau>``:
    ``assets/cgrpo_checkpoint/tau_<tau:g>/model``.

    Raises:
        FileNotFoundError: the weights are not there; the message names the asset to materialize.
    """
    if method.checkpoint == "base" and init == "base":
        return paths.base_model()
    if method.checkpoint in ("sft", "base"):
        path, asset = paths.sft_model(), "sft_checkpoint"
    else:
        tau = method.tau
        path = paths.cgrpo_model(tau)
        asset = f"cgrpo_checkpoint partition {tau:g} (τ must be in train.taus)"
    if not (path / "config.json").is_file():
        raise CheckpointNotFoundError(
            f"method {method.name!r} answers with the {method.checkpoint!r} weights, expected in {path}, "
            f"which holds no config.json: materialize the {asset} asset first"
        )
    return path


def bind_method_artifacts(paths: ProjectPaths, method: MethodSpec) -> MethodSpec:
    """``method`` with the project's own paths for what its compression reads (SCORE's trained policy).

    Raises:
        CheckpointNotFoundError: the artifact is not materialized; the message names the asset.
    """
    compression = method.compression
    if compression.method != "score" or "policy" not in compression.options:
        return method
    policy = paths.project_dir / compression.options["policy"]
    if not policy.is_file():
        raise CheckpointNotFoundError(
            f"method {method.name!r} ranks tokens with SCORE's trained policy, expected at {policy}: materialize "
            "the score_policy asset first"
        )
    bound = compression.model_copy(update={"options": {**compression.options, "policy": str(policy)}})
    return method.model_copy(update={"compression": bound})


def visual_token_count(input_ids: torch.Tensor, processor: Qwen2_5_VLProcessor) -> int:
    """Image and video placeholders in one prompt (``input_ids``: (P,)): the visual tokens the LLM sees."""
    visual = (input_ids == processor.image_token_id) | (input_ids == processor.video_token_id)
    return int(visual.sum())


class QwenAdapter:
    """Qwen2.5-VL prepared for one method; ``generate`` answers a batch of benchmark samples.

    The weights are loaded on the first ``generate``, so a run that finds every sample recorded
    already (a resumed benchmark) never loads them.

    Args:
        model_path: the checkpoint directory or hub id (:func:`resolve_checkpoint`).
        method: frames, VMR and compression of the evaluated method.
        video: frame sampling and pixel bounds (the profile's ``video``); ``max_frames`` comes from
            the method.
        dtype, device, attn_implementation: as for :func:`~marc_ops.model.load_qwen2_5_vl`.
        selection_path: ``assets/vmr_selection/selection.parquet``; required by a VMR method, and
            only by one.
        split: the selection's split of the benchmark, ``eval:<benchmark>`` (VMR methods only).
        max_new_tokens: the longest answer, in tokens (SPEC section 8: 1024).
        decode_workers: threads that build the frames of the batch ``prefetch`` names ahead of its
            ``generate`` call; 0 builds them inside ``generate``. The frames are the same either way.
    """

    def __init__(
        self,
        model_path: str | Path,
        method: MethodSpec,
        *,
        video: VideoConfig = DEFAULT_VIDEO_CONFIG,
        dtype: torch.dtype | str = "auto",
        device: str | torch.device = "cpu",
        attn_implementation: str | None = None,
        selection_path: Path | None = None,
        split: str | None = None,
        max_new_tokens: int = 1024,
        decode_workers: int = 0,
    ) -> None:
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens={max_new_tokens} must be >= 1")
        if decode_workers < 0:
            raise ValueError(
                f"decode_workers={decode_workers} must be >= 0 (0: build frames inside generate)"
            )
        self.model_path = model_path
        self.method = method
        self.max_new_tokens = max_new_tokens
        self._load_options = {"dtype": dtype, "device": device, "attn_implementation": attn_implementation}
        sampling = video.model_copy(update={"max_frames": method.max_frames})
        self.build_sample = _sample_builder(method, sampling, selection_path, split)
        self._decode_pool = ThreadPoolExecutor(decode_workers, "decode") if decode_workers else None
        self._prefetched: dict[str, Future[TrainingSample]] = {}

    @functools.cached_property
    def model(self) -> Qwen2_5_VLForConditionalGeneration:
        logger.info(
            "loading %s for %s (compression: %s)", self.model_path, self.method.name, self.method.compression
        )
        model = load_qwen2_5_vl(self.model_path, compression=self.method.compression, **self._load_options)
        return model.eval().requires_grad_(False)

    @functools.cached_property
    def processor(self) -> Qwen2_5_VLProcessor:
        return load_qwen2_5_vl_processor(self.model_path)

    def prefetch(self, batch: Sequence[EvalInput]) -> None:
        """Start building the frames of ``batch`` in the decode pool and return at once (nothing without
        ``decode_workers``); a media error surfaces when ``generate`` takes the sample."""
        if self._decode_pool is None:
            return
        for item in batch:
            self._prefetched[item.problem_id] = self._decode_pool.submit(self.build_sample, item.row)

    @torch.inference_mode()
    def generate(self, batch: Sequence[EvalInput]) -> list[GenerationOutput]:
        """Greedy answers to ``batch``, in order.

        Raises:
            MediaError: a sample's media cannot be read (``path`` names the file); raised while the
                inputs are built, before anything is generated.
        """
        # Loaded (on the first call) before the clock starts: latency is per answer, not per process.
        model, processor = self.model, self.processor
        started = time.perf_counter()
        encoded = [self._encode(item, model, processor) for item in batch]
        inputs = model_inputs(encoded, processor, padding_side="left")
        texts = greedy_decode(inputs, model, processor, max_new_tokens=self.max_new_tokens)
        latency = (time.perf_counter() - started) / len(encoded)
        return [
            GenerationOutput(
                text=text, visual_tokens=visual_token_count(sample.input_ids, processor), latency_s=latency
            )
            for text, sample in zip(texts, encoded, strict=True)
        ]

    def _encode(
        self, item: EvalInput, model: Qwen2_5_VLForConditionalGeneration, processor: Qwen2_5_VLProcessor
    ) -> EncodedSample:
        """The sample's frames (or image) and its prompt, with the placeholders ``model``'s compression expects."""
        prefetched = self._prefetched.pop(item.problem_id, None)
        sample = self.build_sample(item.row) if prefetched is None else prefetched.result()
        return encode_prompt(processor, compression_of(model), sample, messages=item.messages, encoder=model)


@torch.inference_mode()
def _sample_builder(
    method: MethodSpec, video: VideoConfig, selection_path: Path | None, split: str | None
) -> SampleBuilder:
    """The method's visual input: the VMR's recorded frames of ``split``, or the whole video."""
    if not method.use_vmr:
        if selection_path is not None:
            raise ValueError(f"method {method.name!r} does not use the VMR: pass no selection_path")
        return whole_video_builder(video)
    if selection_path is None or split is None:
        raise ValueError(
            f"method {method.name!r} feeds the VMR's clips: pass selection_path "
            "(assets/vmr_selection/selection.parquet) and split ('eval:<benchmark>')"
        )
    if not Path(selection_path).is_file():
        raise SelectionNotFoundError(
            f"method {method.name!r} feeds the VMR's clips, but {selection_path} does not exist: "
            "materialize the vmr_selection asset first"
        )
    in_split = (
        pl.scan_parquet(selection_path).filter(pl.col("split") == split).select(pl.len()).collect().item()
    )
    if not in_split:
        raise SelectionNotFoundError(
            f"{selection_path} holds no samples of split {split!r}: materialize vmr_selection again (it selects "
            "clips for every eval_<name>.json in data.eval_dir; this benchmark's file was not there when it ran)"
        )
    return vmr_builder(Path(selection_path), video, split=split)
