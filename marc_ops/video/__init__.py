"""Video and image input: decoding (decord, PyAV fallback), frame sampling and Qwen2.5-VL resizing."""

from marc_ops.config.video import DEFAULT_VIDEO_CONFIG, VideoConfig
from marc_ops.video.decode import VideoInfo, iter_frames, open_video, probe_video
from marc_ops.video.errors import ImageLoadError, MediaError, VideoDecodeError
from marc_ops.video.image import load_image
from marc_ops.video.resize import resize_frames, smart_resize
from marc_ops.video.sampling import SampledFrames, read_resized, sample_frame_indices, sample_frames

__all__ = [
    "DEFAULT_VIDEO_CONFIG",
    "ImageLoadError",
    "MediaError",
    "SampledFrames",
    "VideoConfig",
    "VideoDecodeError",
    "VideoInfo",
    "iter_frames",
    "load_image",
    "open_video",
    "probe_video",
    "read_resized",
    "resize_frames",
    "sample_frame_indices",
    "sample_frames",
    "smart_resize",
]
