"""What each method costs (paper section 4.2, Fig. 5): the profiler, its peak-memory probe, the profile's schema.

- ``profiler``: ``profile_efficiency(model, processor, frames, ...)`` times each method's phases on one video.
- ``memory``: the peak memory of one pass (CUDA's allocator peak, or the process's RSS high-water mark).
- ``schema``: ``EfficiencyProfile``, the JSON the profiler writes and the report reads.

Nothing is imported here, so that a reader of the schema (the report) does not load the model code.
"""
