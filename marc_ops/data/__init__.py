"""Video-R1 data: schema, loader with quarantine, stratified sampler, benchmark files, chat messages,
synthetic corpus."""

from marc_ops.data.benchmarks import BenchmarkFileNotFoundError, load_task_rows
from marc_ops.data.messages import MediaSpec, build_messages
from marc_ops.data.sampling import allocate_largest_remainder, category_table, stratified_sample
from marc_ops.data.schema import MANIFEST_SCHEMA, PROBLEM_TYPES, QUARANTINE_SCHEMA, category_of
from marc_ops.data.videor1 import DataFileError, LoadedManifest, load_many, load_videor1

__all__ = [
    "BenchmarkFileNotFoundError",
    "MediaSpec",
    "build_messages",
    "load_task_rows",
    "MANIFEST_SCHEMA",
    "PROBLEM_TYPES",
    "QUARANTINE_SCHEMA",
    "DataFileError",
    "LoadedManifest",
    "allocate_largest_remainder",
    "category_of",
    "category_table",
    "load_many",
    "load_videor1",
    "stratified_sample",
]
