"""``dvc.yaml``, rendered from the stage declarations (``marc dvc-yaml``; the committed file is the embedded
default's, and a test fails when it differs from what this renders).

One DVC stage per asset, per partition: ``cgrpo_checkpoint@<tau>`` and
``benchmark_scores@<benchmark>-<method>`` (``@`` in a method's name becomes ``-``: DVC keeps ``@`` for
itself). A stage depends on the code it declares, the outputs of the assets it reads, the params it
reads and, when the data root is outside the project (the paper profile), the annotation, CoT and
benchmark files it reads (hashed, never copied). Resumable caches are ``persist``ed, so ``dvc repro``
keeps them; timings and host facts are metrics (``dvc metrics show``), cached and pushed like any output
(``assets/`` is not in git).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from marc_ops.config import Params
from marc_ops.registry import STAGES, partition_keys
from marc_ops.registry.declare import Out

HEADER = """\
# Rendered by `marc dvc-yaml` from the stage declarations in marc_ops/registry; do not edit by hand.
# Each stage runs the function its Dagster asset runs (`marc stage NAME [--partition KEY]`); params.yaml is
# the active profile, read by both drivers. A benchmark stage whose method has no VMR selection or SCORE
# policy repeats its checkpoint in those slots (foreach needs one dependency list for all of its items).
"""

CMD = "python -m marc_ops.cli stage"


def dvc_name(name: str, partition_key: str | None) -> str:
    """The DVC stage of one asset partition: ``cgrpo_checkpoint@0.6``, ``benchmark_scores@synthetic-marc-0.6``."""
    if partition_key is None:
        return name
    return f"{name}@{dvc_key(partition_key)}"


def dvc_key(partition_key: str) -> str:
    return partition_key.replace("|", "-").replace("@", "-")


def outputs(name: str, partition_key: str | None) -> list[tuple[Out, str]]:
    """Each declared output of one partition, with its path."""
    stage = STAGES[name]
    fields = stage.fields(partition_key)
    return [(out, out.at(**fields)) for out in stage.outs]


def upstream_paths(name: str, params: Params, partition_key: str | None) -> list[str]:
    """The output paths of every asset (partition) stage ``name`` reads, in declaration order."""
    paths: list[str] = []
    for ref in STAGES[name].reads(params, partition_key):
        asset, _, key = ref.partition("[")
        keys = [key.rstrip("]")] if key else partition_keys(asset, params)
        for upstream_key in keys:
            paths.extend(path for _, path in outputs(asset, upstream_key))
    return list(dict.fromkeys(paths))


def data_paths(name: str, params: Params, project_dir: Path, partition_key: str | None) -> list[str]:
    """The data-root files stage ``name`` reads, when the data root is outside the project (else they are
    inside ``videor1_source``'s output, already a dependency); absolute paths."""
    stage = STAGES[name]
    root = params.data.root(project_dir)
    if stage.data_files is None or root.is_relative_to(project_dir.resolve()):
        return []
    fields = stage.parse(partition_key) if stage.parse and partition_key is not None else {}
    return [str(path) for path in stage.data_files(params, project_dir, fields)]


def declared_paths(
    name: str, params: Params, project_dir: Path, partition_key: str | None
) -> dict[str, list[str]]:
    """What one stage partition may open: its upstream outputs and data files (``reads``) and its own
    outputs (``writes``); project-relative except data files outside the project."""
    return {
        "reads": upstream_paths(name, params, partition_key)
        + data_paths(name, params, project_dir, partition_key),
        "writes": [path for _, path in outputs(name, partition_key)],
    }


def _outs(pairs: list[tuple[Out, str]]) -> dict[str, list[Any]]:
    section: dict[str, list[Any]] = {}
    for out, path in pairs:
        if out.metric:
            section.setdefault("metrics", []).append(path)
        elif out.plot:
            section.setdefault("plots", []).append({path: dict(out.plot)})
        else:
            options = {"persist": True} if out.persist else {}
            if out.varies:
                options["desc"] = f"not reproducible: {out.varies}"
            section.setdefault("outs", []).append({path: options} if options else path)
    return {key: section[key] for key in ("outs", "metrics", "plots") if key in section}


def _plain(name: str, params: Params, project_dir: Path) -> dict[str, Any]:
    stage = STAGES[name]
    return {
        "cmd": f"{CMD} {name}",
        "deps": [
            *stage.code,
            *upstream_paths(name, params, None),
            *data_paths(name, params, project_dir, None),
        ],
        "params": list(stage.params),
        **_outs(outputs(name, None)),
    }


def _foreach(name: str, params: Params, project_dir: Path) -> dict[str, Any]:
    """One ``foreach`` over the partitions: each item names its own dependency slots, the body fills them."""
    stage = STAGES[name]
    keys = [key for key in partition_keys(name, params) if key is not None]
    shared: list[str] | None = None
    items: dict[str, dict[str, Any]] = {}
    for key in keys:
        deps = upstream_paths(name, params, key) + data_paths(name, params, project_dir, key)
        items[dvc_key(key)] = {"partition": key, "deps": deps, **stage.fields(key)}
        shared = deps if shared is None else [path for path in shared if path in deps]
    shared = shared or []
    width = max(len([d for d in item["deps"] if d not in shared]) for item in items.values())
    for item in items.values():
        own = [path for path in item.pop("deps") if path not in shared]
        # Unused slots repeat the first of this item's own paths (or the first shared one).
        filler = own[0] if own else shared[0]
        for slot in range(width):
            item[f"dep{slot}"] = own[slot] if slot < len(own) else filler
    body_outs = [(out, out.path.replace("{", "${item.")) for out in stage.outs]
    return {
        "foreach": items,
        "do": {
            "cmd": f"{CMD} {name} --partition '${{item.partition}}'",
            "deps": [*stage.code, *shared, *[f"${{item.dep{slot}}}" for slot in range(width)]],
            "params": list(stage.params),
            **_outs(body_outs),
        },
    }


def render_dvc_yaml(params: Params, project_dir: Path) -> str:
    """The text of ``dvc.yaml`` for ``params`` (the active profile) in ``project_dir``."""
    stages = {
        name: (_plain if stage.partitions is None else _foreach)(name, params, project_dir.resolve())
        for name, stage in STAGES.items()
    }
    body = yaml.safe_dump({"stages": stages}, sort_keys=False, width=120, default_flow_style=False)
    return HEADER + body


def missing_params(profile: Mapping[str, Any]) -> dict[str, str]:
    """Each param a stage declares that the profile file leaves to its class default, with the first stage that
    reads it: DVC reads params from the file itself, and refuses to record a stage whose param is absent."""
    missing: dict[str, str] = {}
    for name, stage in STAGES.items():
        for key in stage.params:
            node: Any = profile
            for part in key.split("."):
                if not isinstance(node, Mapping) or part not in node:
                    missing.setdefault(key, name)
                    break
                node = node[part]
    return missing


def unreproducible_outputs(params: Params) -> dict[str, str]:
    """Every output path whose bytes a run in another clone need not match, with the reason: metrics (measured
    figures) and the outputs declared with ``varies``. Every other output's hash in ``dvc.lock`` is what a
    reproduction of the same inputs must write again (docs/auditing.md)."""
    found: dict[str, str] = {}
    for name in STAGES:
        for key in partition_keys(name, params):
            for out, path in outputs(name, key):
                if not out.reproducible:
                    found[path] = out.varies or "a metrics file: measured figures"
    return found
