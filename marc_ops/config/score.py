"""`ScoreDataConfig`: the data of SCORE's two-stage curriculum (SCORE.md section 8).

Stage 1 trains the policy on pseudo-videos: 2-4 images, each repeated for 3-6 raw frames, captioned by
the images' captions in order. Stage 2 trains it on real videos with dense captions. ``source: files``
reads both from caption files laid out as the released data are (LLaVA-OneVision-Data image captions,
LLaVA-Video-178K / Koala-36M re-captions); ``source: synthetic`` builds both from the synthetic corpus's
training split. The defaults are the paper profile's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from marc_ops.compression.score import ScorePolicyConfig
from marc_ops.config.env import expand_env
from marc_ops.config.video import PATCH_FACTOR

# The fields that decide what the stage-1 writer produces; a change to any other field leaves it valid.
STAGE1_FIELDS = frozenset(
    {
        "source",
        "stage1_captions",
        "stage1_media_root",
        "stage1_size",
        "images_per_video",
        "repeats_per_image",
        "frame_size",
        "seed",
        "check_media",
        "prompt",
    }
)


class ScoreDataConfig(BaseModel):
    """Where SCORE's stage-1 image captions and stage-2 video captions come from, and how samples are built.

    Paths are relative to the data root (``${VAR}`` and ``${VAR:-default}`` are expanded; an absolute path
    stays as it is). A caption file is JSON lines: ``{"image": path, "caption": text}`` for stage 1,
    ``{"video": path, "caption": text}`` for stage 2, the media paths relative to that stage's media root.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["synthetic", "files"] = Field(
        default="synthetic",
        description=(
            "'synthetic': stage 1 from the synthetic corpus's training shot keyframes and images, stage 2 from "
            "its training videos, all with their scripted captions; 'files': the caption files below"
        ),
    )
    stage1_captions: str | None = Field(
        default=None,
        description="source files: JSONL of {'image', 'caption'} (LLaVA-OneVision-Data image captions)",
    )
    stage1_media_root: str | None = Field(
        default=None,
        description="source files: folder the 'image' paths resolve against; None: the caption file's",
    )
    stage2_captions: str | None = Field(
        default=None,
        description="source files: JSONL of {'video', 'caption'} (LLaVA-Video-178K / Koala-36M re-captions)",
    )
    stage2_media_root: str | None = Field(
        default=None,
        description="source files: folder the 'video' paths resolve against; None: the caption file's",
    )
    check_media: bool = Field(default=True, description="quarantine caption rows whose media file is missing")
    stage1_size: int = Field(
        default=10_000, ge=1, description="pseudo-videos built for stage 1 (paper: ~10K)"
    )
    stage2_max_videos: int = Field(
        default=57_000, ge=1, description="stage-2 videos used, the first of the caption file (paper: ~57K)"
    )
    images_per_video: tuple[int, int] = Field(
        default=(2, 4), description="(fewest, most) images in a pseudo-video, drawn uniformly"
    )
    repeats_per_image: tuple[int, int] = Field(
        default=(3, 6), description="(fewest, most) raw frames an image is repeated for, drawn uniformly"
    )
    frame_size: int = Field(
        default=448,
        ge=PATCH_FACTOR,
        description="side of the square frames every pseudo-video image is centre-cropped and resized to",
    )
    seed: int = Field(default=0, ge=0, description="pseudo-video i draws from the stream (seed, i)")
    stage2_max_frames: int = Field(
        default=128,
        ge=2,
        description="stage 2: frames sampled uniformly over the whole video, an even count of at most this",
    )
    prompt: str = Field(
        default="Describe this video in detail.", description="the captioning instruction of both stages"
    )

    @model_validator(mode="after")
    def _check(self) -> ScoreDataConfig:
        for name, lowest in (("images_per_video", 1), ("repeats_per_image", 1)):
            low, high = getattr(self, name)
            if not lowest <= low <= high:
                raise ValueError(
                    f"{name} must be (fewest, most) with {lowest} <= fewest <= most: got {[low, high]}"
                )
        if self.frame_size % PATCH_FACTOR:
            nearest = max(PATCH_FACTOR, round(self.frame_size / PATCH_FACTOR) * PATCH_FACTOR)
            raise ValueError(
                f"frame_size must be a multiple of {PATCH_FACTOR} (Qwen2.5-VL's 14-px patches merged 2x2), or the "
                f"processor resizes the frames again: got {self.frame_size}, use {nearest}"
            )
        if self.stage2_max_frames % 2:
            raise ValueError(
                f"stage2_max_frames must be even (two frames make one temporal group): got "
                f"{self.stage2_max_frames}, use {self.stage2_max_frames - 1}"
            )
        if not self.prompt.strip():
            raise ValueError(
                "prompt is empty: set the captioning instruction, e.g. 'Describe this video in detail.'"
            )
        file_fields = ("stage1_captions", "stage1_media_root", "stage2_captions", "stage2_media_root")
        if self.source == "files":
            missing = [name for name in ("stage1_captions", "stage2_captions") if getattr(self, name) is None]
            if missing:
                raise ValueError(f"source 'files' reads the caption files: set {' and '.join(missing)}")
        else:
            given = [name for name in file_fields if getattr(self, name) is not None]
            if given:
                raise ValueError(
                    f"source 'synthetic' builds both stages from the synthetic corpus and reads no caption file: "
                    f"remove {', '.join(given)} or set source to 'files'"
                )
        return self

    def stage1_files(self, data_root: Path) -> tuple[Path, Path]:
        """(caption file, media root) of stage 1, absolute."""
        return self._files(data_root, self.stage1_captions, self.stage1_media_root, "stage1_captions")

    def stage2_files(self, data_root: Path) -> tuple[Path, Path]:
        """(caption file, media root) of stage 2, absolute."""
        return self._files(data_root, self.stage2_captions, self.stage2_media_root, "stage2_captions")

    def _files(
        self, data_root: Path, captions: str | None, media_root: str | None, name: str
    ) -> tuple[Path, Path]:
        if captions is None:
            raise ValueError(f"{name} is not set: caption files are read with source 'files' only")
        caption_file = (Path(data_root) / expand_env(captions)).resolve()
        root = (
            caption_file.parent
            if media_root is None
            else (Path(data_root) / expand_env(media_root)).resolve()
        )
        return caption_file, root


class ScoreTrainConfig(BaseModel):
    """How the policy is trained (SCORE.md section 7): K rollouts per video, B videos per step, REINFORCE.

    The defaults are SCORE.md's decisions for the paper profile (SGD, momentum 0.9, lr 0.02, clip 1.0,
    one pass over each stage's data). The two stages differ only in τ.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    rollouts: int = Field(default=16, ge=2, description="K, keep-masks sampled per video (a group)")
    videos_per_step: int = Field(default=8, ge=1, description="B, videos in one step; the loss is their mean")
    optimizer: Literal["sgd", "adam"] = Field(
        default="sgd", description="SCORE.md: SGD (the paper names none)"
    )
    learning_rate: float = Field(default=0.02, gt=0, description="the paper's 0.02")
    momentum: float = Field(default=0.9, ge=0, lt=1, description="SGD momentum")
    max_grad_norm: float = Field(default=1.0, gt=0)
    tau_stage1: float = Field(default=1.01, gt=1, description="τ on the pseudo-videos (eq 5)")
    tau_stage2: float = Field(default=1.02, gt=1, description="τ on the real videos (eq 5)")
    max_target_tokens: int = Field(default=512, ge=1, description="caption tokens scored, before <|im_end|>")
    stage1_steps: int | None = Field(default=None, ge=1, description="None: one pass over stage 1's samples")
    stage2_steps: int | None = Field(default=None, ge=1, description="None: one pass over stage 2's videos")
    save_steps: int = Field(default=50, ge=1, description="checkpoint every this many steps")
    seed: int = Field(default=0, ge=0, description="batch order and the masks of (step, video)")
    cache_video_tokens: bool = Field(
        default=False,
        description="keep each sample's frozen merger output in memory across steps (small data)",
    )
    stage1_only: bool = Field(
        default=False,
        description="the paper's curriculum ablation (Table 4): the policy is the stage-1 policy",
    )


class ScoreConfig(BaseModel):
    """The ``score:`` section of a profile: SCORE's data, its policy network and its training."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: ScoreDataConfig = ScoreDataConfig()
    policy: ScorePolicyConfig = ScorePolicyConfig()
    train: ScoreTrainConfig = ScoreTrainConfig()
