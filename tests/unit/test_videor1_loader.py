"""The Video-R1 loader: schema, categories, every quarantine reason, JSON array and JSONL."""

import json
from pathlib import Path

import polars as pl
import pytest

from marc_ops.data import DataFileError, load_videor1
from marc_ops.data.schema import MANIFEST_SCHEMA, QUARANTINE_SCHEMA, category_of


def _row(pid, **overrides):
    row = {
        "problem_id": pid,
        "problem": "What colour is the ball?",
        "data_type": "video",
        "problem_type": "multiple choice",
        "options": ["A. red", "B. blue"],
        "process": "<think>It is red.</think>",
        "solution": "<answer>A</answer>",
        "path": "./LLaVA-Video-178K/liwei_youtube_videos/videos/clip1.mp4",
        "data_source": "LLaVA-Video-178K/2_3_m_youtube_v0_1",
    }
    row.update(overrides)
    return row


@pytest.fixture()
def data_root(tmp_path: Path) -> Path:
    for rel in [
        "LLaVA-Video-178K/liwei_youtube_videos/videos/clip1.mp4",
        "CLEVRER/video_10000-11000/video_10001.mp4",
        "Chart/chartqa/001.png",
    ]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    return tmp_path


@pytest.mark.parametrize(
    ("path", "category"),
    [
        ("./LLaVA-Video-178K/liwei_youtube_videos/videos/a.mp4", "LLaVA-Video-178K"),
        ("./CLEVRER/video_10000-11000/video_10001.mp4", "CLEVRER"),
        ("Chart/chartqa/001.png", "Chart"),
        ("./a.mp4", ""),
    ],
)
def test_category_is_first_path_component(path, category):
    assert category_of(path) == category


def test_loads_good_rows_with_schema_and_category(data_root: Path):
    rows = [
        _row(1),
        _row(
            2,
            path="./CLEVRER/video_10000-11000/video_10001.mp4",
            problem_type="numerical",
            options=[],
            solution="<answer> 3 </answer>",
        ),
        _row(
            "img-3",
            data_type="image",
            path="./Chart/chartqa/001.png",
            problem_type="OCR",
            options=[],
            solution="<answer>KIWI</answer>",
        ),
    ]
    (data_root / "Video-R1-260k.json").write_text(json.dumps(rows))
    loaded = load_videor1(data_root / "Video-R1-260k.json", data_root)
    assert loaded.quarantine.height == 0
    assert dict(loaded.rows.schema) == MANIFEST_SCHEMA
    assert loaded.rows["problem_id"].to_list() == ["1", "2", "img-3"]
    assert loaded.rows["category"].to_list() == ["LLaVA-Video-178K", "CLEVRER", "Chart"]
    assert loaded.rows["answer"].to_list() == ["A", "3", "KIWI"]
    assert loaded.rows["media_path"][1] == str(
        (data_root / "CLEVRER/video_10000-11000/video_10001.mp4").resolve()
    )
    assert loaded.rows["source_row"].to_list() == [0, 1, 2]


@pytest.mark.parametrize(
    ("bad", "code"),
    [
        (_row(9, path="./LLaVA-Video-178K/missing.mp4"), "missing_media"),
        (_row(9, problem_type="yes/no"), "unknown_problem_type"),
        (_row(9, data_type="audio"), "unknown_data_type"),
        (_row(9, options=[]), "mc_without_options"),
        (_row(9, solution="A"), "solution_without_answer"),
        (_row(9, problem="   "), "empty_problem"),
        ({k: v for k, v in _row(9).items() if k != "path"}, "missing_field"),
        (_row(9, options="A. red"), "bad_type"),
        ([1, 2], "not_an_object"),
        (_row(1), "duplicate_problem_id"),
        (_row(9, options=[f"{i}. x" for i in range(27)]), "too_many_options"),
        (_row(9, path="../outside.mp4"), "path_escapes_root"),
        (_row(9, path="/etc/hostname"), "path_escapes_root"),
        (_row(9, path="./LLaVA-Video-178K/a\x00.mp4"), "bad_path"),
        (_row(9, path="./LLaVA-Video-178K/" + "a" * 300 + ".mp4"), "bad_path"),  # past NAME_MAX
        (_row(9, evidence={"shots": [0], "spans": [[0, 1, 2]]}), "bad_type"),
    ],
)
def test_bad_rows_are_quarantined_and_the_rest_load(data_root: Path, bad, code):
    rows = [_row(1), bad, _row(2)]
    (data_root / "Video-R1-260k.json").write_text(json.dumps(rows))
    loaded = load_videor1(data_root / "Video-R1-260k.json", data_root)
    assert loaded.rows["problem_id"].to_list() == ["1", "2"]
    assert dict(loaded.quarantine.schema) == QUARANTINE_SCHEMA
    assert loaded.quarantine["reason_code"].to_list() == [code]
    assert loaded.quarantine["source_row"].to_list() == [1]
    reason = loaded.quarantine["reason"][0]
    assert reason.startswith("Video-R1-260k.json row 1:")


def test_missing_media_reason_names_the_file(data_root: Path):
    (data_root / "a.json").write_text(json.dumps([_row(1, path="./STAR/nope.mp4")]))
    loaded = load_videor1(data_root / "a.json", data_root)
    assert str(data_root / "STAR" / "nope.mp4") in loaded.quarantine["reason"][0]


def test_jsonl_with_a_malformed_line(data_root: Path):
    lines = [json.dumps(_row(1)), "{not json", "", json.dumps(_row(2))]
    (data_root / "train.jsonl").write_text("\n".join(lines))
    loaded = load_videor1(data_root / "train.jsonl", data_root)
    assert loaded.rows["problem_id"].to_list() == ["1", "2"]
    assert loaded.quarantine.select("source_row", "reason_code").rows() == [(1, "malformed_json")]


def test_check_media_off_keeps_rows_without_files(data_root: Path):
    (data_root / "a.json").write_text(json.dumps([_row(1, path="./STAR/nope.mp4")]))
    loaded = load_videor1(data_root / "a.json", data_root, check_media=False)
    assert loaded.rows.height == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        (b"", "empty"),
        (b"[{]", r"not valid JSON \(line 1"),
        (
            b'[\n{"problem": "caf\xe9"}]',
            r"not UTF-8 \(byte 0xe9: invalid continuation byte at byte offset 18, line 2\)",
        ),
        (b'{\n  "rows": []\n}\n', "holds one JSON object; expected an array"),
        (b"42\n", "holds one JSON number"),
        (b"[" * 100_000, "nested too deeply"),
    ],
)
def test_unreadable_file_raises_naming_it(tmp_path: Path, content, message):
    path = tmp_path / "Video-R1-260k.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataFileError, match=message) as info:
        load_videor1(path, tmp_path)
    assert str(path) in str(info.value)


def test_eval_file_loads_with_the_same_loader(data_root: Path):
    eval_rows = [
        _row(100, data_source="MVBench"),
        _row(
            101,
            problem_type="regression",
            options=[],
            solution="<answer>2.5</answer>",
            data_source="VSI-Bench",
        ),
    ]
    (data_root / "eval_mvbench.json").write_text(json.dumps(eval_rows))
    loaded = load_videor1(data_root / "eval_mvbench.json", data_root)
    assert loaded.rows.height == 2 and loaded.quarantine.height == 0
    assert loaded.rows.filter(pl.col("problem_type") == "regression")["answer"].to_list() == ["2.5"]


def test_a_json_array_that_starts_with_a_byte_order_mark_loads(data_root: Path):
    path = data_root / "Video-R1-260k.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([_row(1), _row(2)], indent=2).encode())
    loaded = load_videor1(path, data_root)
    assert loaded.rows["problem_id"].to_list() == ["1", "2"]
    assert loaded.quarantine.height == 0
