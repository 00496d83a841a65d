"""The profile: every stage's typed config composed into one ``Params``, and how it is loaded.

A profile is data (``configs/<name>.yaml``); ``params.yaml`` holds the active profile's knobs
and is what both DVC (as params) and Dagster (through the ``marc`` resource) read, so the two
drivers never disagree. Every default lives in exactly one place: the field that owns it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from marc_ops.config.efficiency import EfficiencyConfig
from marc_ops.config.env import ConfigError, expand_env
from marc_ops.config.eval import EvalConfig
from marc_ops.config.gpu import GpuConfig
from marc_ops.config.model import TinyQwen2_5_VLConfig
from marc_ops.config.score import ScoreConfig
from marc_ops.config.synthetic import SyntheticConfig
from marc_ops.config.train import AlignConfig, TrainParams
from marc_ops.config.video import VideoConfig
from marc_ops.config.vmr import ClipIndexConfig, EmbedderConfig, RetrieverTrainingConfig, ShotConfig
from marc_ops.errors import UsageError


class DataConfig(BaseModel):
    """Where the Video-R1 data (or the synthetic corpus) lives and how the subset is drawn."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["synthetic", "videor1"] = Field(
        description="'synthetic': generate the embedded corpus into data_root; 'videor1': use real files there"
    )
    data_root: str = Field(
        description="media root; relative paths in the annotation files resolve against it"
    )
    annotation_files: list[str] = Field(
        default=["Video-R1-260k.json"],
        min_length=1,
        description="training annotation files, relative to data_root",
    )
    cot_file: str = Field(
        default="Video-R1-COT-165k.json", description="the CoT annotation file (SFT), in data_root"
    )
    eval_dir: str = Field(description="directory holding the benchmark files eval_<name>.json")
    train_size: int = Field(ge=1, description="rows in the stratified training subset (paper: 5000)")
    sample_seed: int = 42
    check_media: bool = Field(default=True, description="quarantine rows whose media file is missing")

    def root(self, project_dir: Path) -> Path:
        return (project_dir / expand_env(self.data_root)).resolve()

    def evals(self, project_dir: Path) -> Path:
        return (project_dir / expand_env(self.eval_dir)).resolve()


class ModelConfig(BaseModel):
    """The base model: the tiny one built from config, or a pretrained Qwen2.5-VL by id or path."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    source: Literal["tiny", "pretrained"] = Field(
        default="tiny",
        description="'tiny': build from `tiny`; 'pretrained': load `model_id` (HF cache or local dir)",
    )
    model_id: str = Field(
        default="Qwen/Qwen2.5-VL-3B-Instruct", description="hub id or local directory (source: pretrained)"
    )
    tiny: TinyQwen2_5_VLConfig = TinyQwen2_5_VLConfig()
    align: AlignConfig | None = Field(
        default=None,
        description=(
            "source tiny only: caption-train the random tiny model on the synthetic corpus's training shots "
            "and images before anything else (the stand-in for a real VLM's pretraining); None: leave it random"
        ),
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    device: str = Field(default="cpu", description="'cpu', 'cuda', 'cuda:0', ...")
    attn_implementation: str | None = Field(
        default=None, description="None picks flash_attention_2 on CUDA when installed, else sdpa"
    )

    @model_validator(mode="after")
    def _expand_path(self) -> ModelConfig:
        object.__setattr__(self, "model_id", expand_env(self.model_id))
        if self.align is not None and self.source != "tiny":
            raise ValueError(
                "model.align trains the tiny model built from config: set model.source to 'tiny' or remove "
                "model.align (a pretrained model is already aligned)"
            )
        return self


class VMRConfig(BaseModel):
    """The Visual Memory Retriever: shot detection, clip embedding, the index, top-k retrieval.

    ``retriever_training`` set (tiny profile): the ``retriever_checkpoint`` asset trains the
    embedder on the corpus and ``embedder.pretrained`` points at its folder. Unset (paper
    profile): the embedder's weights come from the HF cache or a local path.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    shots: ShotConfig = ShotConfig()
    shot_workers: int = Field(default=1, ge=1, description="processes segmenting videos in parallel")
    embedder: EmbedderConfig
    retriever_training: RetrieverTrainingConfig | None = None
    index: ClipIndexConfig = ClipIndexConfig()
    top_k: int = Field(default=3, ge=1, description="clips kept per question (paper: 3)")

    def resolved_embedder(self, project_dir: Path) -> EmbedderConfig:
        """The embedder config with ``pretrained`` made absolute when it names a path in the project."""
        pretrained = expand_env(self.embedder.pretrained)
        candidate = project_dir / pretrained
        if self.retriever_training is not None or candidate.exists():
            pretrained = str(candidate.resolve())
        return self.embedder.model_copy(update={"pretrained": pretrained})


class Params(BaseModel):
    """The active profile: every knob of every stage."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str = Field(description="profile name, e.g. 'tiny' (embedded default) or 'paper'")
    data: DataConfig
    synthetic: SyntheticConfig = SyntheticConfig()
    video: VideoConfig = VideoConfig()
    model: ModelConfig = ModelConfig()
    vmr: VMRConfig
    train: TrainParams = TrainParams()
    eval: EvalConfig = EvalConfig()
    efficiency: EfficiencyConfig = EfficiencyConfig()
    score: ScoreConfig = ScoreConfig()
    gpu: GpuConfig = GpuConfig()

    @model_validator(mode="after")
    def _synthetic_root_is_generated(self) -> Params:
        if self.data.source == "synthetic" and "${" in self.data.data_root:
            raise ValueError(
                "data.data_root of a synthetic profile must be a plain path the corpus is generated into"
            )
        if self.model.align is not None and self.data.source != "synthetic":
            raise ValueError(
                "model.align captions the synthetic corpus's shots and images: it needs data.source 'synthetic'"
            )
        return self

    @model_validator(mode="after")
    def _launched_trainers_get_their_gpus(self) -> Params:
        # A trainer launched with N processes runs one per GPU: its step's pod must get N GPUs.
        for asset, trainer in (("sft_checkpoint", "sft"), ("cgrpo_checkpoint", "cgrpo")):
            processes = getattr(self.train.launch, trainer).processes
            gpus = self.gpu.assets.get(asset)
            if gpus is not None and gpus != processes:
                raise ValueError(
                    f"gpu.assets.{asset} is {gpus} but train.launch.{trainer}.processes is {processes}: "
                    "a launched trainer runs one process per GPU; set both to the GPU count"
                )
        return self

    @model_validator(mode="after")
    def _evaluated_taus_are_trained(self) -> Params:
        for method in self.eval.methods:
            if method.startswith("marc@") and float(method.removeprefix("marc@")) not in self.train.taus:
                raise ValueError(
                    f"eval.methods has {method}, but {method.removeprefix('marc@')} is not in train.taus"
                )
        return self


def load_params(path: Path | str) -> Params:
    """Read and validate a params/profile YAML file; errors name the file and the field."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path} (run `marc profile tiny` to write one)")
    try:
        raw: Any = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}: not valid YAML{where}: {problem}; fix the file") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        raise ConfigError(f"{path}: {problems}") from err


def profile_path(name: str, project_dir: Path) -> Path:
    path = project_dir / "configs" / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in (project_dir / "configs").glob("*.yaml") if p.stem not in ("dagster",))
        raise UsageError(f"unknown profile {name!r}: {path} does not exist (known: {', '.join(known)})")
    return path
