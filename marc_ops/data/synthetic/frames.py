"""Synthetic video frames in memory: shots of the corpus's kind, back to back, for timing runs that need no file."""

from __future__ import annotations

import numpy as np

from marc_ops.config.synthetic import BACKGROUNDS
from marc_ops.data.synthetic.render import add_noise, draw_scene
from marc_ops.data.synthetic.scenes import Scene, place_shapes, random_specs


def synthetic_video_frames(
    n_frames: int = 64, *, height: int = 224, width: int = 448, shots: int = 4, seed: int = 0
) -> np.ndarray:
    """A synthetic video sampled at 1 fps, (n_frames, height, width, 3) uint8.

    ``shots`` scenes of the embedded corpus's kind (a background, moving shapes), back to back with
    hard cuts, with its mild per-frame noise. 448x224 is 128 merged 28x28 patches per frame: one
    temporal group is the paper's ~120 tokens, 64 frames are 32 groups = 4096 tokens.
    """
    if n_frames < 1 or shots < 1:
        raise ValueError(f"n_frames={n_frames} and shots={shots} must be >= 1")
    rng = np.random.default_rng(seed)
    backgrounds = rng.choice(list(BACKGROUNDS), size=shots, replace=shots > len(BACKGROUNDS))
    scenes = [
        Scene(background=str(bg), shapes=place_shapes(rng, random_specs(rng, str(bg), 3), width, height))
        for bg in backgrounds
    ]
    shot_of_frame = np.minimum(np.arange(n_frames) * shots // n_frames, shots - 1)
    first_frame = {shot: int(np.argmax(shot_of_frame == shot)) for shot in range(shots)}
    return np.stack(
        [
            add_noise(draw_scene(scenes[shot], float(i - first_frame[shot]), width, height), rng, 3)
            for i, shot in enumerate(shot_of_frame.tolist())
        ]
    )
