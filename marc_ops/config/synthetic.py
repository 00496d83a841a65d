"""The synthetic corpus's one config (sizes, frame geometry, shot timing, the long held-out videos,
encoding) and the vocabulary it draws scenes from, which the config's checks count on."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RGB = tuple[int, int, int]


# Every shot of a short video has its own background, so a question can name a shot by its colour. A long
# video has more shots than colours: its backgrounds repeat, never in adjacent shots, and only the shots a
# question is about have a background that no other shot of the video has.
BACKGROUNDS: dict[str, RGB] = {
    "red": (196, 40, 40),
    "orange": (236, 138, 36),
    "yellow": (232, 212, 60),
    "green": (46, 150, 64),
    "blue": (44, 84, 196),
    "purple": (128, 52, 168),
    "pink": (236, 150, 188),
    "gray": (128, 128, 128),
    "brown": (116, 74, 38),
    "teal": (32, 148, 148),
}


# The options of every "which background appears" question, always in this order: a colour's letter
# never changes. A 3-layer model that sees the colour picks a drawn option's letter at chance and a fixed
# list's far above it (benchmarks/option_binding.py), so this family's list is fixed; a video of it has
# exactly one shot with one of these backgrounds and its other shots take the other six.
SCENE_COLOUR_OPTIONS: tuple[str, ...] = ("red", "yellow", "green", "blue")


DEFAULT_SHAPE_RADIUS = (0.09, 0.15)  # fractions of the frame height (SyntheticConfig.shape_radius)

# The "bench" preset: ten times the default item counts, same frame geometry and timing.
_BENCH_SIZES: dict[str, int] = {
    "n_train_videos": 480,
    "n_eval_videos": 240,
    "n_train_images": 160,
    "n_eval_images": 80,
}


class SyntheticConfig(BaseModel):
    """What :func:`~marc_ops.data.synthetic.generate_corpus` writes; the same config gives the same corpus."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(default=0, ge=0, description="seeds every scene, question, motion and noise draw")
    n_train_videos: int = Field(default=48, ge=1, description="videos in Video-R1-260k.json")
    n_eval_videos: int = Field(default=24, ge=0, description="held-out videos in eval/eval_synthetic.json")
    n_train_images: int = Field(default=16, ge=0, description="single-image questions in the training set")
    n_eval_images: int = Field(default=8, ge=0, description="single-image questions in the eval set")
    questions_per_video: int = Field(
        default=2,
        ge=1,
        le=2,
        description="rows per video: each asks about a different shot (its category's families)",
    )
    width: int = Field(default=224, ge=64, le=1920, description="frame width in pixels (even)")
    height: int = Field(default=128, ge=64, le=1080, description="frame height in pixels (even)")
    fps: int = Field(default=8, ge=2, le=60, description="frames per second of every video")
    shape_radius: tuple[float, float] = Field(
        default=DEFAULT_SHAPE_RADIUS,
        description=(
            "(smallest, largest) shape radius as a fraction of the frame height (default: 12-19 px at 224x128, "
            "about one of Qwen2.5-VL's 28-pixel merged patches). Measured (docs/benchmarks.md, 'Shape size'): "
            "the caption-pretrained tiny model names the shape colours of held-out shots far more often with "
            "larger shapes (0.2-0.3); the tiny profile keeps the default, on which the learning check and the "
            "report are measured"
        ),
    )
    shots_per_video_min: int = Field(default=3, ge=2, description="fewest shots in a video")
    shots_per_video_max: int = Field(default=5, ge=2, description="most shots in a video")
    shot_seconds_min: float = Field(default=2.0, gt=0, description="shortest shot, seconds")
    shot_seconds_max: float = Field(default=4.0, gt=0, description="longest shot, seconds")
    gradual_transition_prob: float = Field(
        default=0.15,
        ge=0.0,
        le=1.0,
        description="chance that a shot boundary is a cross-fade instead of a hard cut",
    )
    dissolve_frames: int = Field(default=6, ge=2, description="length of a cross-fade, frames")
    text_prob: float = Field(
        default=0.3,
        ge=0.0,
        le=1.0,
        description="chance that a shot (or image) shows a word; in SynthText videos every shot shows one",
    )
    noise_amplitude: int = Field(
        default=3,
        ge=0,
        le=32,
        description="per-frame pixel noise: uniform integers in [-a, a] on the 0-255 scale",
    )
    video_codec: Literal["auto", "libx264", "mpeg4"] = Field(
        default="auto", description="'auto': H.264 (libx264) when PyAV's FFmpeg has it, else MPEG-4 Part 2"
    )
    crf: int = Field(
        default=18, ge=0, le=51, description="libx264 constant rate factor (lower = better quality)"
    )
    n_eval_long_videos: int = Field(
        default=0,
        ge=0,
        description=(
            "held-out long videos (category SynthLong), written after every other held-out item: many shots, "
            "the evidence of each question in one of them, so that frame budgets, retrieval and compression "
            "see different inputs; the training set has none"
        ),
    )
    long_shots_min: int = Field(default=12, ge=2, description="fewest shots in a long video")
    long_shots_max: int = Field(default=20, ge=2, description="most shots in a long video")
    long_shot_seconds_min: float = Field(
        default=6.0, gt=0, description="shortest shot of a long video, seconds"
    )
    long_shot_seconds_max: float = Field(
        default=9.0, gt=0, description="longest shot of a long video, seconds"
    )
    long_video_fps: int = Field(
        default=2,
        ge=2,
        le=60,
        description=(
            "frames per second of the long videos: fewer frames to encode and to segment; at least 2, so that "
            "sampling at 1 fps and the shot detector still see every shot"
        ),
    )

    @model_validator(mode="after")
    def _check_consistency(self) -> SyntheticConfig:
        for name in ("width", "height"):
            value = getattr(self, name)
            if value % 2:
                raise ValueError(
                    f"{name} must be even (yuv420p halves chroma resolution): got {value}, use {value - 1}"
                )
        low_radius, high_radius = self.shape_radius
        if not 0 < low_radius <= high_radius:
            raise ValueError(
                f"shape_radius must be (smallest, largest) fractions of the frame height with 0 < smallest <= "
                f"largest: got {list(self.shape_radius)}"
            )
        if 2 * high_radius * self.height >= min(self.width, self.height):
            raise ValueError(
                f"shape_radius largest {high_radius} of the height ({high_radius * self.height:.0f} px) gives a shape "
                f"as wide as the {self.width}x{self.height} frame: it cannot move inside it; lower it below "
                f"{min(self.width, self.height) / (2 * self.height):.2f}"
            )
        if self.shots_per_video_min > self.shots_per_video_max:
            raise ValueError(
                f"shots_per_video_min ({self.shots_per_video_min}) exceeds shots_per_video_max "
                f"({self.shots_per_video_max}); lower the first or raise the second"
            )
        if self.shots_per_video_max - 1 > len(BACKGROUNDS) - len(SCENE_COLOUR_OPTIONS):
            raise ValueError(
                f"shots_per_video_max must be at most {len(BACKGROUNDS) - len(SCENE_COLOUR_OPTIONS) + 1}: every "
                f"shot of a video gets its own background colour, and in a SynthScenes video only one shot takes "
                f"one of the option colours {list(SCENE_COLOUR_OPTIONS)}, so the others share the remaining "
                f"{len(BACKGROUNDS) - len(SCENE_COLOUR_OPTIONS)}; got {self.shots_per_video_max}"
            )
        if self.questions_per_video > self.shots_per_video_min:
            raise ValueError(
                f"questions_per_video ({self.questions_per_video}) exceeds shots_per_video_min "
                f"({self.shots_per_video_min}); each question needs its own evidence shot"
            )
        if self.shot_seconds_min > self.shot_seconds_max:
            raise ValueError(
                f"shot_seconds_min ({self.shot_seconds_min}) exceeds shot_seconds_max ({self.shot_seconds_max})"
            )
        low, high = self.shot_frames_range
        if low < self.dissolve_frames:
            raise ValueError(
                f"shot_seconds_min * fps = {low} frames is shorter than dissolve_frames ({self.dissolve_frames}); "
                "raise shot_seconds_min or fps, or lower dissolve_frames"
            )
        if high - low + 1 < self.shots_per_video_max:
            raise ValueError(
                f"shots of {low}..{high} frames allow only {high - low + 1} distinct durations, fewer than "
                f"shots_per_video_max ({self.shots_per_video_max}); widen shot_seconds_min..shot_seconds_max "
                "(duration questions need every shot of a video to last a different time)"
            )
        self._check_long_videos()
        return self

    def _check_long_videos(self) -> None:
        if self.long_shots_min > self.long_shots_max:
            raise ValueError(
                f"long_shots_min ({self.long_shots_min}) exceeds long_shots_max ({self.long_shots_max}); "
                "lower the first or raise the second"
            )
        if self.long_shot_seconds_min > self.long_shot_seconds_max:
            raise ValueError(
                f"long_shot_seconds_min ({self.long_shot_seconds_min}) exceeds long_shot_seconds_max "
                f"({self.long_shot_seconds_max})"
            )
        low, _ = self.long_shot_frames_range
        if low < self.long_dissolve_frames:
            raise ValueError(
                f"long_shot_seconds_min * long_video_fps = {low} frames is shorter than a long video's cross-fade "
                f"({self.long_dissolve_frames} frames, dissolve_frames / fps seconds); raise long_shot_seconds_min "
                "or long_video_fps"
            )
        shortest_long = self.long_shots_min * self.long_shot_seconds_min
        longest_short = self.shots_per_video_max * self.shot_seconds_max
        if self.n_eval_long_videos and shortest_long <= longest_short:
            raise ValueError(
                f"the shortest long video (long_shots_min * long_shot_seconds_min = {shortest_long:g} s) is no "
                f"longer than the longest short one (shots_per_video_max * shot_seconds_max = {longest_short:g} s); "
                "raise long_shots_min or long_shot_seconds_min"
            )

    @property
    def long_shot_frames_range(self) -> tuple[int, int]:
        """(shortest, longest) shot of a long video in frames, inclusive."""
        return (
            round(self.long_shot_seconds_min * self.long_video_fps),
            round(self.long_shot_seconds_max * self.long_video_fps),
        )

    @property
    def long_dissolve_frames(self) -> int:
        """A long video's cross-fade in frames: as many seconds as a short video's, at least 2 frames."""
        return max(2, round(self.dissolve_frames * self.long_video_fps / self.fps))

    @property
    def shot_frames_range(self) -> tuple[int, int]:
        """(shortest, longest) shot in frames, inclusive."""
        return round(self.shot_seconds_min * self.fps), round(self.shot_seconds_max * self.fps)

    @classmethod
    def bench(cls, **overrides: Any) -> SyntheticConfig:
        """The larger preset for benchmarks: 480/240 videos and 160/80 images; ``overrides`` win."""
        return cls(**{**_BENCH_SIZES, **overrides})
