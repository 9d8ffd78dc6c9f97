"""The compile planner (`rlvr-compile`): the loops' train step and the sampler compiled from shapes, per-chip bytes."""
