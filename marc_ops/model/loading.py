"""Load Qwen2.5-VL (the real checkpoint or the tiny one) the same way, with the compression patch.

``load_qwen2_5_vl("Qwen/Qwen2.5-VL-3B-Instruct")`` and ``load_qwen2_5_vl("assets/tiny_model")``
run the same code: resolve the source (a local directory, else a snapshot in the Hugging Face
cache, else, when the hub is reachable, the hub), ``from_pretrained`` it, then
``apply_compression``. A saved compressed model keeps its ``CompressionConfig`` in
``config.json`` (``marc_compression``), so loading it back re-applies the same compression unless
the caller passes another.
"""

from __future__ import annotations

from pathlib import Path

import torch
from huggingface_hub import is_offline_mode, snapshot_download
from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
from transformers.utils import is_flash_attn_2_available

from marc_ops.compression import CompressionConfig
from marc_ops.errors import MarcError
from marc_ops.io import safetensors_weights
from marc_ops.model.patch import apply_compression, compression_of


class ModelNotAvailableError(MarcError, FileNotFoundError):
    """A model id that is neither a local directory nor in the Hugging Face cache, with the hub offline."""


def resolve_model_source(model_id_or_path: str | Path) -> str:
    """A local directory to load from, or the hub id itself when it may be downloaded.

    Raises:
        ModelNotAvailableError: not a directory, not cached, and ``HF_HUB_OFFLINE`` is set.
    """
    path = Path(model_id_or_path).expanduser()
    if path.is_dir():
        return str(path)
    try:
        return snapshot_download(str(model_id_or_path), local_files_only=True)
    except HFValidationError as err:
        raise ModelNotAvailableError(
            f"model {str(model_id_or_path)!r} is not a local directory (nor a hub id like 'Qwen/Qwen2.5-VL-3B-Instruct')"
        ) from err
    except LocalEntryNotFoundError as err:
        if is_offline_mode():
            raise ModelNotAvailableError(
                f"model {str(model_id_or_path)!r} is not a local directory and is not in the Hugging Face cache, "
                f"and HF_HUB_OFFLINE is set: run `hf download {model_id_or_path}` where there is internet and "
                "bring the cache here (HF_HOME), or point the profile at a local directory holding its files"
            ) from err
        return str(model_id_or_path)


FLASH_ATTENTION_2 = "flash_attention_2"


def _as_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    """``"bfloat16"`` -> ``torch.bfloat16``; ``"auto"`` and ``None`` (the checkpoint's dtype) -> ``None``."""
    if dtype is None or dtype == "auto":
        return None
    return dtype if isinstance(dtype, torch.dtype) else getattr(torch, dtype)


def default_attn_implementation(
    device: str | torch.device | None, dtype: torch.dtype | str | None = None
) -> str:
    """``flash_attention_2`` on a CUDA device when flash-attn is installed and the weights are 16-bit (or
    ``dtype`` is ``"auto"``/``None``, the checkpoint's), else ``sdpa``: FlashAttention-2 has no float32 kernel."""
    on_cuda = device is not None and torch.device(device).type == "cuda"
    sixteen_bit = _as_dtype(dtype) in (None, torch.bfloat16, torch.float16)
    return FLASH_ATTENTION_2 if on_cuda and sixteen_bit and is_flash_attn_2_available() else "sdpa"


def refuse_float32_flash_attention(attn_implementation: str | None, dtype: torch.dtype | str | None) -> None:
    """Raise when FlashAttention-2 is asked for float32 weights (it has kernels for fp16/bf16 only: it would fail,
    or silently compute in another dtype than the model's).

    Raises:
        ValueError: ``attn_implementation`` is ``flash_attention_2`` and ``dtype`` is float32.
    """
    if attn_implementation == FLASH_ATTENTION_2 and _as_dtype(dtype) == torch.float32:
        raise ValueError(
            "attn_implementation 'flash_attention_2' needs bfloat16 or float16 weights but this model loads in "
            "float32: set model.attn_implementation to 'sdpa' (or train with bf16 under DeepSpeed, which loads bf16)"
        )


def load_qwen2_5_vl(
    model_id_or_path: str | Path,
    *,
    compression: CompressionConfig | None = None,
    dtype: torch.dtype | str = "auto",
    device: str | torch.device | None = "cpu",
    attn_implementation: str | None = None,
) -> Qwen2_5_VLForConditionalGeneration:
    """Load a Qwen2.5-VL checkpoint and patch it for memory-aware compression.

    Args:
        model_id_or_path: a hub id (``Qwen/Qwen2.5-VL-3B-Instruct``) or a local directory.
        compression: the compression to apply; ``None`` keeps the checkpoint's own
            (``config.marc_compression``), or none for a checkpoint that has none.
        dtype: ``torch.bfloat16``, ``"auto"`` (the checkpoint's dtype), ...
        device: where to place the weights; ``None`` leaves them where ``from_pretrained`` puts
            them (for DeepSpeed ZeRO-3, which places them itself).
        attn_implementation: ``None`` picks ``default_attn_implementation(device, dtype)``; FlashAttention-2
            with float32 weights is refused (:func:`refuse_float32_flash_attention`).

    Returns:
        The model in eval mode, with ``compression_of(model)`` the compression in effect.

    Raises:
        UnsafeWeightsError: a local folder whose weights are not safetensors (they are never unpickled).
        ValueError: FlashAttention-2 asked for float32 weights.
    """
    attention = attn_implementation or default_attn_implementation(device, dtype)
    refuse_float32_flash_attention(attention, dtype)
    source = resolve_model_source(model_id_or_path)
    if Path(source).is_dir():
        safetensors_weights(source)  # a folder of pickle weights is refused before anything opens them
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        source,
        use_safetensors=True,
        dtype=dtype,
        device_map=None if device is None else torch.device(device),
        attn_implementation=attention,
    )
    refuse_float32_flash_attention(model.config._attn_implementation, model.dtype)  # dtype "auto" resolved
    apply_compression(model, compression if compression is not None else compression_of(model))
    return model


def load_qwen2_5_vl_processor(model_id_or_path: str | Path) -> Qwen2_5_VLProcessor:
    """The checkpoint's processor (tokenizer, chat template, image and video processors).

    Count video placeholders for a compressing model with ``prepare_model_inputs``.
    """
    return Qwen2_5_VLProcessor.from_pretrained(resolve_model_source(model_id_or_path))
