"""Training: caption alignment of the tiny base model, teacher rewards, C-GRPO (TRL's GRPOTrainer with
video inputs) and the SFT baseline.

- ``inputs``: ``TrainingSample`` / ``SampleBuilder`` (the seam for the VMR frames), prompt encoding.
- ``dataset``: training rows with quarantine (unreadable media, missing inputs) by id; checkpointed runs.
- ``align``: caption-training the random tiny model (``model.align``).
- ``teacher``: ``compute_teacher_rewards`` (a_full per video sample, batched, resumable) and
  ``python -m marc_ops.train.teacher`` (samples sharded across the processes ``accelerate launch`` starts).
- ``cgrpo``: ``CGRPOTrainer``, ``train_cgrpo`` and ``python -m marc_ops.train.cgrpo``.
- ``sft``: ``SFTCollator``, ``train_sft`` and ``python -m marc_ops.train.sft``.
- ``stages``: the ``base_model``, ``teacher_rewards``, ``sft_checkpoint`` and ``cgrpo_checkpoint`` stages.

The package imports none of them itself, so ``python -m marc_ops.train.cgrpo`` does not find its own
module already imported. Their configs are in :mod:`marc_ops.config.train`.
"""
