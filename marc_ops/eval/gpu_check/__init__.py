"""The GPU check (``marc gpu-check``): the real Qwen2.5-VL-3B architecture on a CUDA device, every claim
that needs one, in one run (docs/gpu.md).

- ``checks``: the checks, ``run_gpu_check`` and the report (``gpu_check.json``, ``gpu_check.md``).
- ``train_steps``: the few SFT or C-GRPO steps a training check runs, in process or under
  ``accelerate launch`` with DeepSpeed ZeRO-3 (it is the module that launch starts, so this package
  imports neither on its own).
"""
