"""The wall time of one whole run, projected from the measured time of one step of each training phase.

The trainer's epochs run collection (``collect.steps_per_epoch`` env steps while ``epoch <= stop_after_epoch``), then
the tokenizer, world-model and actor-critic updates (``steps_per_epoch`` each once ``epoch > start_after_epochs``),
at the batch sizes of the config. Evaluation, checkpoints and media are left out.
"""

from __future__ import annotations

from wmbench.config import TrainingConfig

PHASES = ("collection", "tokenizer", "world_model", "actor_critic")


def phase_steps(training: TrainingConfig) -> dict[str, int]:
    """Steps of each phase over the run's ``training.epochs`` epochs (env steps for collection, updates else)."""
    epochs = training.epochs
    return {
        "collection": training.collect.steps_per_epoch * min(epochs, training.collect.stop_after_epoch),
        **{
            phase: getattr(training, phase).steps_per_epoch
            * max(0, epochs - getattr(training, phase).start_after_epochs)
            for phase in PHASES[1:]
        },
    }


def projected_seconds(training: TrainingConfig, seconds_per_step: dict[str, float]) -> dict[str, float]:
    """Seconds each phase takes over the run at ``seconds_per_step`` (a phase name to the time of one of its steps),
    and their ``total``."""
    steps = phase_steps(training)
    out = {phase: steps[phase] * seconds_per_step[phase] for phase in PHASES}
    out["total"] = sum(out.values())
    return out
