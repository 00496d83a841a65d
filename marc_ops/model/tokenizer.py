"""A small Qwen2-style tokenizer trained on this machine (the embedded default, SPEC section 9).

Nothing is downloaded: a byte-level BPE is trained with ``tokenizers`` on a built-in text (generated
sentences about colours, shapes, counts, words and digits, plus the Video-R1 prompt templates and
the chat roles) and wrapped in transformers' ``Qwen2Tokenizer``, so it behaves like the real
Qwen2.5-VL tokenizer:

- the same pre-tokenizer (Qwen2's split regex, then byte-level) and NFC normalizer, so any text
  encodes (unknown words fall back to bytes);
- the same added tokens in the same order after the BPE vocabulary (``<|endoftext|>`` first, then
  ``<|im_start|>``, ``<|im_end|>``, ..., ``<|vision_start|>``, ``<|image_pad|>``, ``<|video_pad|>``),
  ``eos_token = <|im_end|>``, ``pad_token = <|endoftext|>``, no bos or unk token;
- the Qwen2.5-VL-Instruct chat template, byte for byte.

On top of those, ``<think>``, ``</think>``, ``<answer>`` and ``</answer>`` are added tokens (one id
each) but *not* special ones: decoding with ``skip_special_tokens=True`` keeps them, which the
format and accuracy rewards need.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import Qwen2Tokenizer
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

# Qwen2.5-VL's added tokens, in its id order (151643 onwards in the real vocabulary).
QWEN2_5_VL_SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Added but not special in Qwen2.5-VL (they survive skip_special_tokens).
QWEN2_5_VL_PLAIN_ADDED_TOKENS: tuple[str, ...] = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)
REASONING_TOKENS: tuple[str, ...] = ("<think>", "</think>", "<answer>", "</answer>")

# The chat template of Qwen/Qwen2.5-VL-*-Instruct, byte for byte (TRL keeps the same text in
# trl/chat_templates/qwen2_5_vl.jinja to recognise the model; a test checks the two agree).
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% endif %}"
)

# Only the tokenizer's training text: the prompt the evaluation sends is owned by marc_ops.eval.
_VIDEO_R1_PROMPT_TEXT = (
    "Please think about this question as if you were a human pondering deeply. "
    "Engage in an internal dialogue using expressions such as 'let me think', 'wait', "
    "'Hmm', 'oh, I see', 'let's break it down', etc., or other natural language "
    "thought expressions. It's encouraged to include self-reflection or verification "
    "in the reasoning process. Provide your detailed reasoning between the <think> "
    "and </think> tags, and then give your final answer between the <answer> and "
    "</answer> tags.",
    " Please provide only the single option letter (e.g., A, B, C, D, etc.) within the <answer> </answer> tags.",
    " Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
    " Please transcribe text clearly and provide your answer within the <answer> </answer> tags.",
    " Please provide your text answer within the <answer> </answer> tags.",
    "You are a helpful assistant.",
)
_COLOURS = (
    "red",
    "green",
    "blue",
    "yellow",
    "orange",
    "purple",
    "pink",
    "brown",
    "black",
    "white",
    "gray",
    "cyan",
)
_SHAPES = ("circle", "square", "triangle", "star", "rectangle", "diamond", "hexagon", "line", "ball", "box")
_COUNTS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "many")
_WORDS = (
    "cat",
    "dog",
    "sun",
    "moon",
    "tree",
    "house",
    "river",
    "book",
    "apple",
    "bird",
    "fish",
    "car",
    "road",
)
_ADJECTIVES = (
    "big",
    "small",
    "bright",
    "dark",
    "fast",
    "slow",
    "tall",
    "short",
    "round",
    "sharp",
    "empty",
    "full",
)
_NOUNS = (
    "person",
    "table",
    "chair",
    "door",
    "window",
    "wall",
    "room",
    "kitchen",
    "garden",
    "street",
    "cup",
    "bag",
)
_VERBS = (
    "moves",
    "appears",
    "stays",
    "turns",
    "grows",
    "shrinks",
    "spins",
    "disappears",
    "opens",
    "closes",
    "walks",
    "runs",
    "jumps",
    "falls",
    "picks up",
    "puts down",
    "looks at",
    "holds",
)
_PLACES = ("left", "right", "top", "bottom", "centre", "middle", "corner", "edge", "front", "back")
_TIMES = ("before", "after", "first", "then", "finally", "while", "during", "at the end", "at the start")
_QUESTIONS = ("What", "Which", "Where", "When", "Why", "How", "Who", "Is", "Does", "Did")
_COMMON_WORDS = (
    "about above across action activity actually against along already also although always among amount "
    "animal another answer anything area around arrive ask away baby bottle because become begin behind "
    "believe below beside best better between both bring build camera carry cause certain change check "
    "choose clear climb clock close colour compare contain continue correct count cover cross cut dance "
    "describe detail different direction distance doing draw drink drive during each early either enough "
    "event every example explain face fact family far feel field fill find finish floor follow food foot "
    "form forward frame game give glass going ground group hand happen head hear help himself however "
    "idea image include inside instead interest itself keep kind know large later leave letter light "
    "likely little long make measure meter minute moment most mountain movement must near need next "
    "nothing notice number object often only order other outside paper part pass picture place plant play "
    "point position possible probably question quickly rather reason remember result scene second sequence "
    "several shape should show side similar since size something sometimes sound space speed start still "
    "story surface take tell than through together toward under until upon video visible water watch whole "
    "within without woman word world would write year"
).split()


def training_text() -> list[str]:
    """The built-in corpus the tiny BPE is trained on (deterministic, a few thousand lines)."""
    lines = list(_VIDEO_R1_PROMPT_TEXT)
    lines += ["system", "user", "assistant", "system user assistant"] * 20
    streams = zip(
        itertools.cycle(_COLOURS),
        itertools.cycle(_SHAPES),
        itertools.cycle(_COUNTS),
        itertools.cycle(_WORDS),
        itertools.cycle(_ADJECTIVES),
        itertools.cycle(_NOUNS),
        itertools.cycle(_VERBS),
        itertools.cycle(_PLACES),
        itertools.cycle(_TIMES),
        itertools.cycle(_QUESTIONS),
        range(600),
    )
    for colour, shape, count, word, adjective, noun, verb, place, time, question, i in streams:
        letter = "ABCD"[i % 4]
        lines += [
            f"The {adjective} {colour} {shape} {verb} to the {place} of the frame {time} the {noun}.",
            f"{question} {count} {shape}s are in the video? There are {count} {shape}s, so the answer is {i % 10}.",
            f"Which word is written on the {colour} background? The word is {word.upper()} ({word}).",
            f"<think>Let me think. In the scene with the {colour} background I see {count} {shape}s. "
            f"Wait, let's break it down: the {noun} {verb} and the word {word} appears at {i % 60} seconds. "
            f"Hmm, oh, I see.</think><answer>{letter}</answer>",
            f"Options:\n{letter}. {adjective} {colour} {shape}\nThe scene lasts {i % 13}.{i % 10} seconds.",
        ]
    lines += [" ".join(str(n) for n in range(start, start + 20)) for start in range(0, 1000, 20)]
    lines += [" ".join(_COMMON_WORDS[i::7]).capitalize() + "." for i in range(7)] * 12
    return lines


def build_tiny_tokenizer(out_dir: Path | str | None = None, *, vocab_size: int = 1024) -> Qwen2Tokenizer:
    """Train the tiny byte-level BPE and wrap it as a Qwen2.5-VL-style ``Qwen2Tokenizer``.

    Args:
        out_dir: where to ``save_pretrained`` it (``Qwen2Tokenizer.from_pretrained(out_dir)`` and
            ``AutoTokenizer`` load it back); ``None`` keeps it in memory only.
        vocab_size: the BPE vocabulary (256 byte tokens plus merges); the added tokens come on
            top, so ``len(tokenizer) == vocab_size + 26`` when the corpus supports that many merges.
    """
    if vocab_size <= 256:
        raise ValueError(
            f"vocab_size={vocab_size} must exceed the 256 byte tokens a byte-level BPE starts from"
        )
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(training_text(), trainer)
    trained = json.loads(bpe.to_str())["model"]

    tokenizer = Qwen2Tokenizer(
        vocab=trained["vocab"],
        merges=[tuple(pair) for pair in trained["merges"]],
        # Added below, in Qwen's order; the constructor would otherwise add them in its own.
        unk_token=None,
        eos_token=None,
        pad_token=None,
        errors="replace",
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
        split_special_tokens=False,
    )
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in QWEN2_5_VL_SPECIAL_TOKENS],
        special_tokens=True,
    )
    plain = QWEN2_5_VL_PLAIN_ADDED_TOKENS + REASONING_TOKENS
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in plain])
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.pad_token = "<|endoftext|>"
    tokenizer.extra_special_tokens = list(QWEN2_5_VL_SPECIAL_TOKENS[1:])
    tokenizer.chat_template = QWEN2_5_VL_CHAT_TEMPLATE
    if out_dir is not None:
        tokenizer.save_pretrained(out_dir)
    return tokenizer
