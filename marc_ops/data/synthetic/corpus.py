"""Write the whole synthetic corpus: media, the Video-R1 annotation files, the shot ground truth.

Layout under ``out_dir`` (every relative path resolves against the folder of the file that holds
it, as in Video-R1, whose eval files sit beside their media in ``Evaluation/``)::

    Video-R1-260k.json          training rows, paths like ./SynthCount/train_00001.mp4
    Video-R1-COT-165k.json      the same rows (all carry `process`)
    SynthShapes/ SynthCount/ SynthText/ SynthScenes/ SynthImage/     training media
    eval/eval_synthetic.json    held-out rows, paths like ./SynthText/eval_00002.mp4 (relative to eval/):
                                the videos' rows, the images', then the long videos' (``n_eval_long_videos``,
                                ./SynthLong/eval_long_00000.mp4)
    eval/SynthShapes/ ...       held-out media
    shots.json                  per video (keys relative to out_dir: ./SynthShapes/..., ./eval/SynthShapes/...):
                                fps, spans, transitions, scene descriptions
    captions.json               per training and held-out shot and image, except the long videos' shots: its
                                path (relative to out_dir), frame span (null for an image) and caption (the
                                scene's description), the image-text pairs the tiny base model is aligned on
                                and measured on (``marc_ops.train.align``); a long video's scenes are of the
                                same kind, and its shots would only lengthen that measure
    synthetic_config.json       the config and codec that produced it

Every item draws from its own random streams (split, purpose, index) and the long videos come after
every other item, with their own option-letter turns: adding long videos leaves every other file's
bytes and every other row as they were, and only appends rows and shots.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from marc_ops.config.synthetic import SyntheticConfig
from marc_ops.data.synthetic.questions import (
    IMAGE_CATEGORY,
    LONG_CATEGORY,
    LetterBalancer,
    PlannedVideo,
    Question,
    plan_image,
    plan_long_video,
    plan_video,
)
from marc_ops.data.synthetic.render import (
    add_noise,
    draw_scene,
    resolve_codec,
    video_frames,
    write_mp4,
    write_png,
)
from marc_ops.io import atomic_dir

TRAIN_FILE = "Video-R1-260k.json"
COT_FILE = "Video-R1-COT-165k.json"
EVAL_FILE = "eval/eval_synthetic.json"
SHOTS_FILE = "shots.json"
CAPTIONS_FILE = "captions.json"
CONFIG_FILE = "synthetic_config.json"
# Bumped when the files written change (2: captions.json), so a corpus written by older code is regenerated.
CORPUS_FORMAT = 2
_SPLITS = {"train": 0, "eval": 1}
_STREAMS = {
    "video": 0,
    "image": 1,
    "video_noise": 2,
    "image_noise": 3,
    "long_video": 4,
    "long_video_noise": 5,
}


@dataclass(frozen=True)
class CorpusFiles:
    """Where a generated corpus's files are. Media paths in ``eval_json`` resolve against ``eval_json.parent``."""

    root: Path
    train_json: Path
    cot_json: Path
    eval_json: Path
    shots_json: Path
    captions_json: Path
    config_json: Path

    @classmethod
    def under(cls, root: Path | str) -> CorpusFiles:
        root = Path(root)
        return cls(
            root=root,
            train_json=root / TRAIN_FILE,
            cot_json=root / COT_FILE,
            eval_json=root / EVAL_FILE,
            shots_json=root / SHOTS_FILE,
            captions_json=root / CAPTIONS_FILE,
            config_json=root / CONFIG_FILE,
        )


def generate_corpus(config: SyntheticConfig, out_dir: Path | str) -> CorpusFiles:
    """Generate the corpus into ``out_dir``, replacing what is there only once everything is written.

    The same config gives the same JSON files and the same media bytes.
    """
    codec = resolve_codec(config.video_codec)
    problem_ids = itertools.count(1)
    total = (
        config.n_train_videos
        + config.n_eval_videos
        + config.n_train_images
        + config.n_eval_images
        + config.n_eval_long_videos
    )
    with (
        atomic_dir(Path(out_dir)) as tmp,
        tqdm(total=total, desc="synthetic corpus", unit="item") as progress,
    ):
        files = CorpusFiles.under(tmp)
        train_rows, train_shots, train_captions = _write_split(
            config, "train", tmp, problem_ids, codec, progress
        )
        eval_rows, eval_shots, eval_captions = _write_split(
            config, "eval", files.eval_json.parent, problem_ids, codec, progress
        )
        long_rows, long_shots = _write_long_videos(
            config, files.eval_json.parent, problem_ids, codec, progress
        )
        eval_rows += long_rows
        eval_shots.update(long_shots)
        shots = {**train_shots, **{f"./eval/{key[2:]}": value for key, value in eval_shots.items()}}
        captions = [
            *train_captions,
            *({**caption, "path": f"./eval/{caption['path'][2:]}"} for caption in eval_captions),
        ]
        _write_json(files.train_json, train_rows)
        _write_json(files.cot_json, train_rows)
        _write_json(files.eval_json, eval_rows)
        _write_json(files.shots_json, shots)
        _write_json(files.captions_json, captions)
        _write_json(files.config_json, {"config": config.model_dump(), "codec": codec})
    return CorpusFiles.under(out_dir)


def _write_split(
    config: SyntheticConfig,
    split: str,
    media_root: Path,
    problem_ids: Iterator[int],
    codec: str,
    progress: tqdm,
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Videos then images of one split: returns its rows, its shot ground truth (keys relative to media_root)
    and a caption per shot and image (``split``, ``path``, ``span``, ``caption``)."""
    n_videos = config.n_train_videos if split == "train" else config.n_eval_videos
    n_images = config.n_train_images if split == "train" else config.n_eval_images
    video_letters, image_letters = LetterBalancer(), LetterBalancer()
    rows: list[dict[str, Any]] = []
    shots: dict[str, dict[str, Any]] = {}
    captions: list[dict[str, Any]] = []
    for index in range(n_videos):
        video = plan_video(config, index, _rng(config, split, "video", index), video_letters)
        path = f"./{video.category}/{split}_{index:05d}.mp4"
        shots[path] = _write_video(
            config, video, media_root, path, _rng(config, split, "video_noise", index), codec
        )
        captions.extend(
            {"split": split, "path": path, "span": list(span), "caption": scene.description()}
            for span, scene in zip(video.timeline.spans, video.timeline.scenes, strict=True)
        )
        rows.extend(_video_rows(video, path, problem_ids))
        progress.update()
    for index in range(n_images):
        scene, question = plan_image(config, index, _rng(config, split, "image", index), image_letters)
        path = f"./{IMAGE_CATEGORY}/{split}_image_{index:05d}.png"
        pixels = draw_scene(scene, 0.0, config.width, config.height)
        write_png(
            media_root / path,
            add_noise(pixels, _rng(config, split, "image_noise", index), config.noise_amplitude),
        )
        rows.append(_row(next(problem_ids), question, "image", path, IMAGE_CATEGORY, None))
        captions.append({"split": split, "path": path, "span": None, "caption": scene.description()})
        progress.update()
    return rows, shots, captions


def _write_long_videos(
    config: SyntheticConfig, media_root: Path, problem_ids: Iterator[int], codec: str, progress: tqdm
) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]]]:
    """The held-out long videos: their rows and their shot ground truth (keys relative to media_root)."""
    letters = LetterBalancer()
    rows: list[dict[str, Any]] = []
    shots: dict[str, dict[str, Any]] = {}
    for index in range(config.n_eval_long_videos):
        video = plan_long_video(config, index, _rng(config, "eval", "long_video", index), letters)
        path = f"./{LONG_CATEGORY}/eval_long_{index:05d}.mp4"
        shots[path] = _write_video(
            config, video, media_root, path, _rng(config, "eval", "long_video_noise", index), codec
        )
        rows.extend(_video_rows(video, path, problem_ids))
        progress.update()
    return rows, shots


def _write_video(
    config: SyntheticConfig,
    video: PlannedVideo,
    media_root: Path,
    path: str,
    noise_rng: np.random.Generator,
    codec: str,
) -> dict[str, Any]:
    """Render and encode one video at its timeline's fps; returns its shot ground truth."""
    timeline = video.timeline
    frames = video_frames(timeline, config.width, config.height, noise_rng, config.noise_amplitude)
    written = write_mp4(
        media_root / path,
        frames,
        width=config.width,
        height=config.height,
        fps=timeline.fps,
        codec=codec,
        crf=config.crf,
    )
    if written != timeline.n_frames:
        raise RuntimeError(f"{path}: encoded {written} frames, the timeline has {timeline.n_frames}")
    return {
        "fps": timeline.fps,
        "n_frames": timeline.n_frames,
        "width": config.width,
        "height": config.height,
        "spans": [list(span) for span in timeline.spans],
        "transitions": list(timeline.transitions),
        "descriptions": [scene.description() for scene in timeline.scenes],
        "scenes": [scene.to_json() for scene in timeline.scenes],
    }


def _video_rows(video: PlannedVideo, path: str, problem_ids: Iterator[int]) -> list[dict[str, Any]]:
    """One row per question of a video, its evidence the one shot that holds the answer."""
    spans = video.timeline.spans
    return [
        _row(
            next(problem_ids),
            question,
            "video",
            path,
            video.category,
            {"shots": [question.evidence_shot], "spans": [list(spans[question.evidence_shot])]},
        )
        for question in video.questions
    ]


def _rng(config: SyntheticConfig, split: str, stream: str, index: int) -> np.random.Generator:
    """An independent random stream per item and purpose, so adding items leaves the others' content alone."""
    return np.random.default_rng([config.seed, _SPLITS[split], _STREAMS[stream], index])


def _row(
    problem_id: int,
    question: Question,
    data_type: str,
    path: str,
    category: str,
    evidence: dict[str, Any] | None,
) -> dict[str, Any]:
    """One record in the Video-R1 schema, plus ``evidence`` (the shots that hold the answer; null for images)."""
    return {
        "problem_id": problem_id,
        "problem": question.problem,
        "data_type": data_type,
        "problem_type": question.problem_type,
        "options": list(question.options),
        "process": f"<think>{question.reasoning}</think>",
        "solution": f"<answer>{question.answer}</answer>",
        "path": path,
        "data_source": category,
        "evidence": evidence,
    }


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
