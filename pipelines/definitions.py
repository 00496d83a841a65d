"""The Dagster code location `pipelines`: every MARC artifact as a software-defined asset."""

from pipelines.defs import build_definitions

defs = build_definitions()
