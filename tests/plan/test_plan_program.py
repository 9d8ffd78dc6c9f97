"""The planner compiles the loops' own train step: `rlvr-compile` lowers `TrainProgram.jitted` (the function
`train/text_loop.py` runs and whose raw step `train/loop.py` fuses), and the program it builds from
abstract models lowers to the same program as the one the loop builds from live ones. CPU only: the 8
fake devices of tests/conftest.py, no libtpu."""
import dataclasses

import jax
import pytest

from tests.plan.plan_helpers import tiny_plan_cfg


def _cfg():
    return tiny_plan_cfg(algo={"mini_batches": 2}, memory=True)


@pytest.fixture(scope="module")
def planned():
    """(cfg, mesh, the planner's numbers, [(program, lower args)] it lowered)."""
    from rlvr_jax.plan import aot
    cfg = _cfg()
    mesh = aot.make_mesh_for(cfg, jax.devices())
    lowered = []
    real = aot.train_program

    def recording(*a, **k):
        program = real(*a, **k)

        class Spy:
            def lower(self, *args):
                lowered.append((program, args))
                return program.jitted.lower(*args)
        return dataclasses.replace(program, jitted=Spy())
    mp = pytest.MonkeyPatch()
    mp.setattr(aot, "train_program", recording)
    try:
        pc = aot.policy_model_config(cfg)
        nums = aot.compile_numbers(cfg, mesh, pc, aot.memory_model_config(cfg, pc), sampler=False)
    finally:
        mp.undo()
    return cfg, mesh, nums, lowered


def test_the_planner_compiles_the_program_jitted_step(planned):
    cfg, mesh, nums, lowered = planned
    assert len(lowered) == 1
    program, (state, batch) = lowered[0]
    assert state is program.abstract_state and program.mesh is mesh
    rows = 4 * 2 // 2  # a mini-batch of prompts_per_step * group_size rollouts
    assert program.rows == rows and batch["prompt_BxP"].shape == (rows, 8) and batch["response_BxN"].shape == (rows, 6)
    assert all(batch[k].sharding == program.batch_shardings[k] for k in batch)
    assert state.ref is not None and state.memory is not None  # kl_coef > 0, memory.enabled
    assert nums["train"]["argument"] > 0 and nums["xla_flops"] > 0


def test_the_loops_program_lowers_to_the_planners(planned):
    """The loop builds its program from live modules (`train.build`), the planner from abstract ones: same
    shardings, same lowered train step."""
    from rlvr_jax.plan import aot
    from rlvr_jax.train.build import build
    from rlvr_jax.train.loop import updates_per_run
    from rlvr_jax.train.program import train_program
    cfg, mesh, _, lowered = planned
    plan_program = lowered[0][0]
    built = build(cfg)
    live = train_program(cfg, built.policy, built.memory, mesh, updates_per_run(cfg))
    assert jax.tree.leaves(live.state_shardings) == jax.tree.leaves(plan_program.state_shardings)
    assert jax.tree.leaves(live.abstract_state) == jax.tree.leaves(plan_program.abstract_state)
    P, N = aot.prompt_len(cfg), cfg.rollout.max_new_tokens
    texts = [p.jitted.lower(p.abstract_state, p.abstract_batch(P, N)).as_text() for p in (live, plan_program)]
    assert texts[0] == texts[1]
