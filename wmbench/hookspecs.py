"""The hooks a wmbench plugin implements. Every hook is named ``wmbench_*``.

Registration hooks (backbones, tokenizers, env suites) run once, when the plugins load; ``wmbench_add_commands``
when the CLI starts; the run-observer hooks (``wmbench_run_started``, ``wmbench_metrics_logged``,
``wmbench_checkpoint_saved``, ``wmbench_run_finished``) during the runs that name the plugin in their config's
``loggers``. An implementation may take any subset of a hook's arguments, by the same names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    import click

    from wmbench.config import RunConfig
    from wmbench.executors.base import RegisterExecutor
    from wmbench.plugins import Register
    from wmbench.rundir import RunDir

hookspec = pluggy.HookspecMarker("wmbench")
hookimpl = pluggy.HookimplMarker("wmbench")


@hookspec
def wmbench_register_backbones(register: Register) -> None:
    """Register world-model backbones, once, when the plugins load.

    Call ``register(name, build, options=OptionsDataclass, summary="...")``. ``build(options, shape)`` gets the
    plugin's frozen options dataclass and a :class:`wmbench.engine.backbone.BackboneShape`, and returns a
    :class:`wmbench.engine.backbone.Backbone`. Import heavy libraries inside ``build``, not at module level.
    """


@hookspec
def wmbench_register_tokenizers(register: Register) -> None:
    """Register frame tokenizers, once, when the plugins load.

    Call ``register(name, build, options=OptionsDataclass, summary="...")``. ``build(options, frame_size)``
    returns a :class:`wmbench.engine.tokenizer.Tokenizer` for square RGB frames of that size.
    """


@hookspec
def wmbench_add_commands(cli: click.Group) -> None:
    """Add subcommands to the ``wmbench`` command line (``cli.add_command(command)``).

    Called when the CLI starts. Keep imports inside the command's function so that ``wmbench --help``
    stays fast.
    """


@hookspec
def wmbench_register_env_suites(register: Register) -> None:
    """Register env suites (families of games), once, when the plugins load.

    Call ``register(name, games, make_env, num_actions, reference_scores=None, summary="...")``:

    - ``games``: the game names users pass to ``--game``; a name another suite took is an error naming both plugins.
    - ``make_env(game, config, train, seed) -> gymnasium.Env``: the training (``train=True``) or test env for a
      :class:`wmbench.config.EnvConfig`, seeded with ``seed``; observations are uint8 RGB of shape
      ``(config.size, config.size, 3)``, actions ``Discrete(num_actions(game))``. A first ``reset()`` without a
      seed should equal ``reset(seed=seed)``, and an env replayed with the same seed and actions should give the
      same frames (``--resume`` relies on it).
    - ``num_actions(game) -> int``.
    - ``reference_scores(game) -> (random, human) | None``: for human-normalised scores (NaN without them).

    Import gymnasium and the simulator inside ``make_env``, not at module level.
    """


@hookspec
def wmbench_register_executors(register: RegisterExecutor) -> None:
    """Register sweep executors (``wmbench sweep --executor NAME``), once, when the plugins load.

    Call ``register(name, executor_class, summary="...")``: a subclass of
    :class:`wmbench.executors.base.Executor` with an ``Options`` dataclass (its options, from the benchmark file's
    ``[executor]`` table and ``--executor-option KEY=VALUE``). The executor hands each cell's
    :class:`wmbench.executors.base.Task` to its engine, which runs it with ``wmbench.executors.base.run_task``;
    it reports job states, cancels jobs and shows what it would submit (``--dry-run``). The built-in ``local``,
    ``slurm`` and ``ray`` register through this hook. Import the engine's library inside the executor's methods.
    """


@hookspec
def wmbench_run_started(run: RunDir, config: RunConfig) -> None:
    """A run begins or resumes: its folder and ``config.json`` exist, no epoch has run since.

    On ``--resume``, ``run.read_metrics()`` holds the epochs the checkpoint covers. An exception here stops the
    run with a one-line error naming the plugin, before any epoch (the run folder can be resumed).
    """


@hookspec
def wmbench_metrics_logged(run: RunDir, record: dict[str, Any]) -> None:
    """One epoch's metrics line was appended to ``metrics.jsonl`` (the source of truth): ``record`` is that line,
    with ``epoch``, ``env_steps``, ``wall_time`` and namespaced metrics such as ``loss/world_model/total``."""


@hookspec
def wmbench_checkpoint_saved(run: RunDir, path: Path, epoch: int) -> None:
    """The checkpoint at ``path`` (``checkpoints/last.pt``) was written atomically after epoch ``epoch``."""


@hookspec
def wmbench_run_finished(run: RunDir, summary: dict[str, Any] | None) -> None:
    """The run ended: ``summary`` is what ``summary.json`` holds, or None when the run stopped early after a
    checkpoint (Ctrl-C, SIGTERM) and can be resumed. Close files and flush here. Every kind of run is heard of: the
    agent track, the world-model track, and ``wmbench eval`` (whose ``run`` is the evaluation's output folder and
    whose ``summary`` is the evaluation's record, with ``epochs`` the checkpoint's epoch).

    An exception in this hook, ``wmbench_metrics_logged`` or ``wmbench_checkpoint_saved`` does not stop the run: it
    is reported once as a warning naming the plugin, and that plugin hears nothing more of the run.
    """
