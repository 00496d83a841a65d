"""Caption pretraining of the tiny base model: the captions file, its rows, the stage, and that it learns."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from tests_support import small_tiny_params, write_params

from marc_ops.config import ConfigError, ProjectPaths, load_params
from marc_ops.config.train import AlignConfig
from marc_ops.data.stages import videor1_source_stage
from marc_ops.data.synthetic import SyntheticConfig, generate_corpus
from marc_ops.train.align import (
    PROMPTS,
    align_tiny_model,
    caption_builder,
    caption_rows,
    caption_run_fingerprint,
    shape_colours,
)
from marc_ops.train.stages import base_model_stage
from marc_ops.video import VideoConfig

VIDEO = VideoConfig(max_pixels=100352, min_pixels=3136)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("align") / "corpus"
    generate_corpus(
        SyntheticConfig(n_train_videos=3, n_eval_videos=2, n_train_images=2, n_eval_images=1), root
    )
    return root


def test_captions_file_has_every_shot_and_image_of_both_splits(corpus: Path):
    captions = json.loads((corpus / "captions.json").read_text())
    shots = json.loads((corpus / "shots.json").read_text())
    videos = [c for c in captions if c["span"] is not None]
    # One caption per shot, in order, equal to shots.json's descriptions.
    by_video: dict[str, list[dict]] = {}
    for caption in videos:
        by_video.setdefault(caption["path"], []).append(caption)
    assert set(by_video) == set(shots)
    for path, entries in by_video.items():
        assert [e["span"] for e in entries] == shots[path]["spans"]
        assert [e["caption"] for e in entries] == shots[path]["descriptions"]
        assert {e["split"] for e in entries} == {"eval" if path.startswith("./eval/") else "train"}
    images = [c for c in captions if c["span"] is None]
    assert [c["split"] for c in images] == ["train", "train", "eval"]
    for image in images:
        assert (corpus / image["path"]).is_file()
        assert (
            image["caption"].split(" background")[0].split(" on a")[-1].strip(" n")
        )  # "... on a(n) <colour> background"
    # The image captions are the scenes the CoT describes ("The image shows <caption>.").
    cot = {row["path"]: row["process"] for row in json.loads((corpus / "Video-R1-COT-165k.json").read_text())}
    for image in images[:2]:
        assert f"The image shows {image['caption']}." in cot[image["path"]]


def test_caption_rows_sample_each_shot_at_one_fps_in_even_groups(corpus: Path):
    rows = caption_rows(corpus, VIDEO)
    shots = json.loads((corpus / "shots.json").read_text())
    train_shots = sum(len(v["spans"]) for k, v in shots.items() if not k.startswith("./eval/"))
    assert len(rows) == train_shots + 2
    assert all("/eval/" not in row["media_path"] for row in rows)
    for row in rows:
        assert row["prompt"][0]["content"][1]["text"] == PROMPTS[row["data_type"]]
        if row["data_type"] == "image":
            assert row["frame_indices"] == []
            continue
        frames = row["frame_indices"]
        key = "./" + Path(row["media_path"]).relative_to(corpus).as_posix()
        first, last = next(
            span
            for span, text in zip(shots[key]["spans"], shots[key]["descriptions"], strict=True)
            if text == row["target"]
        )
        seconds = (last - first + 1) / shots[key]["fps"]
        assert len(frames) % 2 == 0
        assert len(frames) - math.ceil(seconds) in (0, 1)  # one frame per second, padded to even
        assert all(first <= f <= last for f in frames)
        assert frames == sorted(frames)
    held_out = caption_rows(corpus, VIDEO, split="eval")
    assert all("/eval/" in row["media_path"] for row in held_out) and len(held_out) > 1


def test_caption_builder_decodes_the_shot_frames(corpus: Path):
    rows = caption_rows(corpus, VIDEO)
    build = caption_builder(VIDEO)
    shot = next(r for r in rows if r["data_type"] == "video")
    sample = build(shot)
    assert sample.frames.shape[0] == len(shot["frame_indices"])
    assert sample.frames.shape[1] % 28 == 0 and sample.frames.shape[2] % 28 == 0
    assert sample.clip_ids.tolist() == [0] * len(shot["frame_indices"])
    image = build(next(r for r in rows if r["data_type"] == "image"))
    assert image.clip_ids is None and image.frames.ndim == 3


def test_missing_captions_file_says_to_regenerate(tmp_path: Path):
    (tmp_path / "shots.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="captions.json not found.*videor1_source"):
        caption_rows(tmp_path, VIDEO)


def test_the_run_fingerprint_names_the_media_by_content_not_by_folder(
    corpus: Path, tiny_model: Path, tmp_path: Path
):
    """The fingerprint is an output DVC hashes: a copy of the corpus in another folder gives the same one, a
    changed video another."""
    config = AlignConfig(max_steps=2)
    moved = tmp_path / "elsewhere" / "corpus"
    shutil.copytree(corpus, moved)
    here = caption_run_fingerprint(config, tiny_model, caption_rows(corpus, VIDEO))
    assert caption_run_fingerprint(config, tiny_model, caption_rows(moved, VIDEO)) == here
    video = next(row["media_path"] for row in caption_rows(moved, VIDEO) if row["data_type"] == "video")
    with open(video, "ab") as handle:
        handle.write(b"\0")
    assert caption_run_fingerprint(config, tiny_model, caption_rows(moved, VIDEO)) != here


def test_align_only_for_the_tiny_model_on_the_synthetic_corpus(tmp_path: Path):
    params = small_tiny_params()
    params["model"] = {"source": "pretrained", "align": {"max_steps": 2}}
    with pytest.raises(ConfigError, match="model.align trains the tiny model"):
        load_params(write_params(tmp_path, params))
    params = small_tiny_params()
    params["model"]["align"] = {"max_steps": 2}
    params["data"]["source"] = "videor1"
    params["data"]["data_root"] = "${MARC_VIDEOR1_ROOT:-/data/Video-R1}"
    with pytest.raises(ConfigError, match="needs data.source 'synthetic'"):
        load_params(write_params(tmp_path, params))


def test_interrupted_training_resumes_the_checkpoint_weights(
    corpus: Path, tiny_model: Path, tmp_path: Path, one_thread
):
    """Two steps straight, or one step, stop, and resume to two: the same weights. transformers' own
    resume loads none of a Qwen2.5-VL checkpoint's tensors (CheckpointWeightsMixin); a finished run is
    not trained further when materialized again."""
    config = AlignConfig(max_steps=2, per_device_train_batch_size=2, save_steps=1, save_total_limit=None)
    straight = align_tiny_model(tiny_model, corpus, tmp_path / "straight", config, VIDEO)
    first = align_tiny_model(
        tiny_model, corpus, tmp_path / "split", config.model_copy(update={"max_steps": 1}), VIDEO
    )
    after_one = load_file(first / "model.safetensors")
    resumed = align_tiny_model(tiny_model, corpus, tmp_path / "split", config, VIDEO)
    expected, got = load_file(straight / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert expected.keys() == got.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], msg=name)
    assert any(not torch.equal(after_one[name], got[name]) for name in got)
    again = align_tiny_model(tiny_model, corpus, tmp_path / "split", config, VIDEO)
    assert not (tmp_path / "split" / "checkpoint-3").exists()
    for name, tensor in load_file(again / "model.safetensors").items():
        assert torch.equal(tensor, got[name])


def test_base_model_stage_aligns_then_resumes(small_project: Path, one_thread):
    params = yaml.safe_load((small_project / "params.yaml").read_text())
    params["model"]["align"] = {"max_steps": 2, "per_device_train_batch_size": 2, "save_steps": 1}
    write_params(small_project, params)
    paths = ProjectPaths(small_project)
    videor1_source_stage(paths, paths.params())
    first = base_model_stage(paths, paths.params())
    assert paths.base_model() == small_project / "assets/base_model/aligned/model"
    assert (paths.base_model() / "config.json").is_file()
    assert first.metadata["align_steps"] == 2
    assert 0.0 <= first.metadata["heldout_background_accuracy"] <= 1.0
    assert 0.0 <= first.metadata["heldout_shape_colour_accuracy"] <= 1.0
    assert first.metadata["heldout_captions"] > 0
    assert first.tables["align_steps"].height == 2
    again = base_model_stage(paths, paths.params())  # finished at step 2: nothing more is trained
    assert again.metadata["built_now"] is False and again.metadata["align_steps"] == 2


@pytest.mark.parametrize(
    ("caption", "colours"),
    [
        ("a red circle and two blue squares on a yellow background, text 'KIWI'", {"red", "blue"}),
        ("a green square on an orange background", {"green"}),
        ("three white triangles on a red background", {"white"}),  # the background's colour is not a shape's
        ("on a teal background", set()),
    ],
)
def test_shape_colours_reads_the_shapes_phrase_only(caption: str, colours: set[str]):
    assert shape_colours(caption) == colours
