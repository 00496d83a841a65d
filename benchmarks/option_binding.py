"""Seeing against answering: does the caption-pretrained tiny model pick the option letter of what it sees?

Why a trained tiny model can name what it sees and still answer a multiple-choice item at chance:
this separates perception from the step that turns it into an answer. On still images with one large
shape (radius a quarter to a third of the frame height, on one of the 10 backgrounds):

1. build the tiny profile's Qwen2.5-VL from config and caption-pretrain it on ``--captions`` images
   ("Describe the image." → ``"a red circle on a teal background"``), as ``model.align`` does;
2. from that model, two SFT runs on ``--qa`` rows of "What colour is the <shape> in the image?" (the
   Video-R1 prompt and CoT format: ``<think>The image shows ... The circle in it is red: option B.</think>``):
   - ``drawn``: four options, three wrong colours drawn for each question and the answer put at A, B,
     C, D in turn (how the synthetic corpus writes its multiple-choice items);
   - ``fixed``: all six shape colours, always in the same order, so a colour's letter never changes;
3. on 96 held-out images: the share of CoTs naming the right colour (seeing) and of right letters
   (answering), against chance.

Writes ``benchmarks/results/option_binding.json`` and prints the rows of ``docs/benchmarks.md``.

    python benchmarks/option_binding.py            # ~12 min on 2 cores
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _provenance import command_line, machine

from marc_ops.config import load_params
from marc_ops.config.synthetic import BACKGROUNDS
from marc_ops.config.train import AlignConfig, SFTTrainConfig
from marc_ops.data.synthetic.questions import LETTERS
from marc_ops.data.synthetic.render import add_noise, draw_scene, write_png
from marc_ops.data.synthetic.scenes import SHAPE_COLOURS, SHAPE_KINDS, MovingShape, Scene
from marc_ops.io import write_json
from marc_ops.model.builders import build_tiny_checkpoint
from marc_ops.rewards.accuracy import extract_answer
from marc_ops.train.align import PROMPTS, align_on_captions, caption_builder, greedy_texts, shape_colours
from marc_ops.train.dataset import train_and_save
from marc_ops.train.inputs import prompt_messages
from marc_ops.train.sft import build_sft_trainer, sft_dataset

ROOT = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 224, 128
_STATED = re.compile(r"is (\w+): option")


def one_shape_images(out_dir: Path, n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` noisy PNGs with one large still shape each: path, background, kind, colour, caption."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    images = []
    for index in range(n):
        background = str(rng.choice(list(BACKGROUNDS)))
        kind = str(rng.choice(SHAPE_KINDS))
        colour = str(rng.choice([c for c in SHAPE_COLOURS if c != background]))
        radius = float(rng.uniform(0.25, 1 / 3) * HEIGHT)
        x, y = float(rng.uniform(radius, WIDTH - radius)), float(rng.uniform(radius, HEIGHT - radius))
        scene = Scene(background, (MovingShape(kind, colour, radius, x, y, 0.0, 0.0),))
        path = out_dir / f"{index:05d}.png"
        write_png(path, add_noise(draw_scene(scene, 0.0, WIDTH, HEIGHT), rng, 3))
        images.append({"path": str(path), "kind": kind, "colour": colour, "caption": scene.description()})
    return images


def caption_row(image: dict[str, Any], index: int) -> dict[str, Any]:
    return {
        "problem_id": f"caption-{index}",
        "data_type": "image",
        "media_path": image["path"],
        "frame_indices": [],
        "prompt": [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": PROMPTS["image"]}]}
        ],
        "target": image["caption"],
    }


def question_row(image: dict[str, Any], index: int, options: str, rng: np.random.Generator) -> dict[str, Any]:
    """A Video-R1 multiple-choice row about the image's shape colour, with its CoT."""
    colour = image["colour"]
    if options == "fixed":
        choices = list(SHAPE_COLOURS)
    else:
        wrong = [str(c) for c in rng.permutation(list(SHAPE_COLOURS)) if c != colour][:3]
        position = index % 4
        choices = [*wrong[:position], colour, *wrong[position:]]
    letter = LETTERS[choices.index(colour)]
    return {
        "problem_id": f"qa-{index}",
        "problem": f"What colour is the {image['kind']} in the image?",
        "data_type": "image",
        "problem_type": "multiple choice",
        "options": [f"{LETTERS[i]}. {c}" for i, c in enumerate(choices)],
        "process": f"<think>The image shows {image['caption']}. The {image['kind']} in it is {colour}: "
        f"option {letter}.</think>",
        "solution": f"<answer>{letter}</answer>",
        "path": image["path"],
        "media_path": image["path"],
        "colour": colour,
        "chance": 1 / len(choices),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captions", type=int, default=1500, help="caption-pretraining images")
    parser.add_argument("--qa", type=int, default=800, help="question rows for each SFT run")
    parser.add_argument("--align-steps", type=int, default=400)
    parser.add_argument("--sft-steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "option_binding.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the tiny model is fastest on one thread
    params = load_params(ROOT / "configs" / "tiny.yaml")
    load_start = os.getloadavg()[0]
    report: dict[str, Any] = {
        "command": command_line("option_binding.py", argv),
    }
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        build_tiny_checkpoint(work / "base", params.model.tiny)
        captions = one_shape_images(work / "captions", args.captions, seed=1)
        held_out = one_shape_images(work / "held_out", 96, seed=2)
        align = AlignConfig(max_steps=args.align_steps, save_steps=args.align_steps, save_total_limit=1)
        started = time.perf_counter()
        aligned = align_on_captions(
            work / "base",
            [caption_row(image, i) for i, image in enumerate(captions)],
            work / "aligned",
            align,
            params.video,
        )
        said = greedy_texts(
            aligned, [caption_row(image, i) for i, image in enumerate(held_out)], params.video
        )
        report["aligned"] = {
            "seconds": round(time.perf_counter() - started, 1),
            "caption_colour_accuracy": float(
                np.mean(
                    [
                        shape_colours(text) == {image["colour"]}
                        for text, image in zip(said, held_out, strict=True)
                    ]
                )
            ),
        }
        qa_images = one_shape_images(work / "qa", args.qa, seed=3)
        sft = SFTTrainConfig(
            learning_rate=2e-3,
            lr_scheduler_type="cosine",
            max_grad_norm=5.0,
            per_device_train_batch_size=16,
            max_steps=args.sft_steps,
            save_steps=args.sft_steps,
            save_total_limit=1,
            bf16=False,
            seed=0,
        )
        for options in ("drawn", "fixed"):
            rng = np.random.default_rng(4)
            train = [question_row(image, i, options, rng) for i, image in enumerate(qa_images)]
            dataset, _ = sft_dataset(train)
            started = time.perf_counter()
            trainer = build_sft_trainer(
                sft, dataset, aligned, work / options, sample_builder=caption_builder(params.video)
            )
            model = train_and_save(trainer, work / options, [], label=f"sft-{options}", fingerprint=options)
            rows = [question_row(image, i, options, rng) for i, image in enumerate(held_out)]
            for row in rows:
                row["prompt"] = prompt_messages(row)
            texts = greedy_texts(model, rows, params.video, max_new_tokens=96)
            letters = [extract_answer(t) for t in texts]
            stated = [(_STATED.search(t).group(1) if _STATED.search(t) else None) for t in texts]
            report[options] = {
                "seconds": round(time.perf_counter() - started, 1),
                "letter_accuracy": float(
                    np.mean(
                        [got == extract_answer(r["solution"]) for got, r in zip(letters, rows, strict=True)]
                    )
                ),
                "stated_colour_accuracy": float(
                    np.mean([s == r["colour"] for s, r in zip(stated, rows, strict=True)])
                ),
                "chance": rows[0]["chance"],
                "examples": texts[:3],
            }
    report["machine"] = machine(load_start)
    report["settings"] = {
        "captions": args.captions,
        "qa": args.qa,
        "held_out": 96,
        "align": align.model_dump(mode="json"),
        "sft": sft.model_dump(mode="json"),
    }
    write_json(args.out, report)
    print(
        f"caption colour accuracy after alignment: {100 * report['aligned']['caption_colour_accuracy']:.1f} %"
    )
    for options in ("drawn", "fixed"):
        r = report[options]
        print(
            f"| {options} | {100 * r['chance']:.1f} % | {100 * r['stated_colour_accuracy']:.1f} % | "
            f"{100 * r['letter_accuracy']:.1f} % |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
