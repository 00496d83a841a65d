"""`GpuConfig`: which assets a profile runs on a GPU, and which Kubernetes nodes those steps go to."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Toleration(BaseModel):
    """A Kubernetes toleration (core/v1 ``Toleration``) that lets a GPU step onto a tainted GPU node."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(min_length=1, description="the taint's key, e.g. 'nvidia.com/gpu'")
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str | None = Field(default=None, description="the taint's value (operator 'Equal' only)")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="the taint effect tolerated; None tolerates every effect of the key"
    )

    @model_validator(mode="after")
    def _exists_takes_no_value(self) -> Toleration:
        if self.operator == "Exists" and self.value is not None:
            raise ValueError(
                f"toleration {self.key!r}: operator 'Exists' matches any value; remove value or use 'Equal'"
            )
        return self


class GpuConfig(BaseModel):
    """The assets whose stage computes on a CUDA device, and where a Kubernetes deployment runs them.

    Each asset named in ``assets`` joins the ``gpu`` concurrency pool and carries dagster-k8s tags:
    its step's pod requests (and is limited to) that many ``nvidia.com/gpu`` and gets ``node_selector``
    and ``tolerations``. An asset not named runs wherever the executor puts it, with no GPU: a stage
    whose device is ``cuda`` (``model.device``, ``vmr.shots.device``, ``vmr.embedder.device``) must be
    named. Nothing here changes how a stage computes; docs/deployment.md shows the path to a GPU node.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    assets: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict, description="GPUs each asset's step requests, by asset name (not named: no GPU)"
    )
    node_selector: dict[str, str] = Field(
        default_factory=dict, description="node labels a GPU step's pod requires, e.g. nvidia.com/gpu.present"
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="taints of the GPU nodes that a GPU step's pod tolerates"
    )
