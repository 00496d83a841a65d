"""Every profile and params file loads; bad values fail with messages that say what to change."""

import re
from pathlib import Path

import pytest
import yaml

from marc_ops.config import ConfigError, Params, expand_env, load_params, profile_path
from marc_ops.config.methods import METHODS, resolve_method
from marc_ops.errors import UsageError

REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILES = sorted(p for p in (REPO_ROOT / "configs").glob("*.yaml") if p.name != "dagster.yaml")


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_every_profile_validates(path: Path):
    params = load_params(path)
    assert params.profile == path.stem


def test_params_yaml_is_the_tiny_profile():
    # The committed params.yaml is the embedded default; `marc profile NAME` switches it.
    assert load_params(REPO_ROOT / "params.yaml") == load_params(REPO_ROOT / "configs" / "tiny.yaml")


def test_paper_profile_is_the_papers_setting(monkeypatch):
    monkeypatch.delenv("MARC_VIDEOR1_ROOT", raising=False)
    params = load_params(profile_path("paper", REPO_ROOT))
    assert params.data.source == "videor1"
    assert params.data.train_size == 5000
    assert params.data.root(REPO_ROOT) == Path("/data/Video-R1")
    assert params.video.max_frames == 64 and params.video.max_pixels == 128 * 28 * 28
    monkeypatch.setenv("MARC_VIDEOR1_ROOT", "/mnt/vr1")
    assert params.data.root(REPO_ROOT) == Path("/mnt/vr1")


def test_env_expansion(monkeypatch):
    monkeypatch.setenv("MARC_X", "/x")
    monkeypatch.delenv("MARC_Y", raising=False)
    assert expand_env("${MARC_X}/a") == "/x/a"
    assert expand_env("${MARC_Y:-/d}/a") == "/d/a"
    with pytest.raises(ConfigError, match="MARC_Y is not set"):
        expand_env("${MARC_Y}/a")


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(UsageError, match="known: paper, tiny"):
        profile_path("huge", REPO_ROOT)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda p: p["data"].update(train_size=0), "data.train_size"),
        (lambda p: p["data"].update(source="s3"), "data.source"),
        (lambda p: p.update(extra_knob=1), "extra_knob"),
        (lambda p: p["video"].update(max_frames=0), "video"),
        (lambda p: p.update(gpu={"assets": {"base_model": 0}}), "gpu.assets.base_model"),
        (
            lambda p: p.update(
                gpu={"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "value": "1"}]}
            ),
            "gpu.tolerations.0: .*operator 'Exists' matches any value; remove value",
        ),
        (
            lambda p: (
                p.update(gpu={"assets": {"cgrpo_checkpoint": 1}})
                or p["train"].update(
                    launch={
                        "cgrpo": {"processes": 2, "accelerate_config": "configs/accelerate/cpu_2proc.yaml"}
                    }
                )
            ),
            "gpu.assets.cgrpo_checkpoint is 1 but train.launch.cgrpo.processes is 2: .*set both",
        ),
    ],
)
def test_bad_values_name_the_file_and_field(tmp_path: Path, edit, message):
    raw = yaml.safe_load((REPO_ROOT / "configs" / "tiny.yaml").read_text())
    edit(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message) as info:
        load_params(path)
    assert str(path) in str(info.value)


def test_a_params_file_that_is_not_yaml_names_the_line(tmp_path: Path):
    path = tmp_path / "params.yaml"
    path.write_text("profile: tiny\ndata: [1\n")
    with pytest.raises(ConfigError, match=r"params.yaml: not valid YAML at line 3, column 1: .*fix the file"):
        load_params(path)


def test_missing_params_file_says_how_to_make_one(tmp_path: Path):
    with pytest.raises(ConfigError, match="marc profile tiny"):
        load_params(tmp_path / "params.yaml")


def test_params_round_trip_through_yaml():
    params = load_params(REPO_ROOT / "configs" / "tiny.yaml")
    assert Params.model_validate(yaml.safe_load(yaml.safe_dump(params.model_dump(mode="json")))) == params


def _lookup(raw: dict, dotted: str):
    node = raw
    for part in dotted.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.stem)
def test_every_dvc_param_exists_in_every_profile(path: Path):
    # `dvc repro` refuses to run a stage whose params key is absent from params.yaml.
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    raw = yaml.safe_load(path.read_text())
    for name, stage in stages.items():
        for key in stage.get("params", []):
            try:
                _lookup(raw, key)
            except KeyError:
                pytest.fail(f"{path.name} lacks {key!r}, which dvc.yaml stage {name!r} tracks")


# --- evaluation methods -------------------------------------------------------------------------


def test_compared_compressors_are_evaluation_methods_by_name_and_budget():
    assert resolve_method("vidcom2@120").compression.budget == 120
    assert resolve_method("fastvid@0.25").compression.retention == 0.25
    assert resolve_method("moviechat-1f").compression.budget_groups == 1
    for name in (
        "vidcom2@120",
        "fastvid@0.25",
        "moviechat-1f",
        "holitom@0.1",
        "dycoke@0.4",
        "bytevideollm@120",
    ):
        spec = resolve_method(name)
        assert spec.name == name and spec.checkpoint == "base" and spec.max_frames == 64 and not spec.use_vmr
        assert spec.compression.enabled and spec.compression.method == name.split("@")[0].split("-")[0]
    # names that DVC's foreach, Dagster's partition keys and file names all accept
    assert all(re.fullmatch(r"[a-z0-9.@-]+", name) for name in METHODS)
    assert {"moviechat-1f", "vidcom2@120", "bytevideollm@120"} <= set(METHODS)  # MARC Table 1
    assert {f"{m}@{r}" for m in ("vidcom2", "fastvid", "holitom") for r in ("0.4", "0.25", "0.1")} <= set(
        METHODS
    )
    assert {"dycoke@0.4", "dycoke@0.25"} <= set(METHODS) and "dycoke@0.1" not in METHODS  # SCORE Table 1


@pytest.mark.parametrize("name", ["nope@0.25", "vidcom2@1.5", "vidcom2@0", "marc-1f"])
def test_a_method_name_that_means_nothing_is_rejected(name):
    with pytest.raises(ValueError, match=rf"unknown method|{re.escape(name)}: a budget"):
        resolve_method(name)
