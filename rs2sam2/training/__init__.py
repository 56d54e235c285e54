"""Training of RS2-SAM2 (paper, Implementation Details; the objective of the Method section), single
process or ``torchrun`` + DDP.

What the official recipe (``RS2-SAM2:train.py``, ``fine.sh``/``fine_rs.sh``) does, and where it lives here:

* data (:mod:`.data`): one sample per sentence; the image resized to S×S and 224×224
  (:class:`~.data.TrainingSet` via the processor), the GT mask nearest-resized to S×S; optional RRSIS-D
  random-box occlusion (``occlusion``); ``DistributedSampler(shuffle=True)`` re-shuffled every epoch,
  ``drop_last``;
* objective (:mod:`.losses`): :class:`~.losses.RS2SAM2Loss` (0.9·CE + 0.1·Dice + 0.2·L_tbl) on the S×S
  logits;
* optimiser (:mod:`.trainer`): AdamW, weight decay 0.01 on every parameter, two groups from
  :meth:`~rs2sam2.RS2SAM2.parameter_groups` (BHFM + MPG at ``fusion_lr`` 1e-4, the rest at ``base_lr``
  5e-5); no warm-up, no clipping;
* schedule (:data:`.config.SCHEDULES`): ``official`` ×0.1 from epoch index 50 on (so never in RRSIS-D's 40
  epochs: the official code differs from the paper here), ``paper`` ×0.1 for the last ``decay_epochs``
  epochs, or ``constant``;
* selection: after every epoch evaluate on val (:func:`rs2sam2.evaluate.evaluate`, official resolution)
  and keep the epoch maximising mIoU + oIoU, saved as a model folder ``OUT/best``;
* seed 2401, deterministic algorithms where available (:mod:`.runtime`).

Additions: gradient accumulation, bf16 autocast (CUDA), gradient checkpointing (union-encoder layers and
Hiera blocks), JSON-lines metrics (``OUT/metrics.jsonl``), an atomically written checkpoint
(``OUT/checkpoint.pt``: model, optimiser, scheduler, RNG states, epoch, step, position in the epoch) after
every epoch (and every ``save_every_steps`` steps), and exact resumption from it (:mod:`.checkpoint`).
For training from random weights (not in the paper, off by default): the pseudo-mask loss and teacher
forcing (:mod:`.losses`, :mod:`.config`), and the grounding stage (:mod:`.grounding`).

Modules: :mod:`.config` (``TrainConfig``, schedules, precisions) · :mod:`.losses` · :mod:`.data` ·
:mod:`.checkpoint` (atomic save, resume, RNG state) · :mod:`.runtime` (process group, determinism) ·
:mod:`.grounding` (the grounding stage) · :mod:`.trainer` (the loop). ``rs2sam2 train``
(:mod:`rs2sam2.cli.train`) builds a run from its arguments.
The package imports none of them itself: ``import rs2sam2.training.losses`` loads the losses only.
"""
