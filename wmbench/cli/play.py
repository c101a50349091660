"""``wmbench play``: load an agent from a run folder or checkpoint, build the chosen mode, play it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import click
import numpy as np

from wmbench.cli.options import CONTEXT, SEED
from wmbench.errors import WmbenchError
from wmbench.play import session as sessions


def load(target: Path, game: str | None, preset: str, overrides: tuple[str, ...]):
    """The agent (``evaluation.Loaded``) and the run folder it belongs to (None for a loose checkpoint)."""
    from wmbench import checkpoints, evaluation
    from wmbench import config as cfg
    from wmbench.files import load_torch
    from wmbench.plugins import registry
    from wmbench.rundir import RunDir

    if target.is_dir():
        run = RunDir(target)
        run.read_config()
        loaded, run_path = evaluation.from_run(target, registry()), target
    elif not target.is_file():
        raise WmbenchError(f"{target} is neither a run folder nor a checkpoint file")
    elif isinstance(raw := load_torch(target), dict) and raw.get("format") == checkpoints.FORMAT:
        loaded = evaluation.from_checkpoint(target, registry())
        parent = target.resolve().parent.parent
        run_path = parent if RunDir(parent).config.is_file() else None
    else:
        if not game:
            raise WmbenchError(f"{target} is not a wmbench checkpoint; for a reference IRIS checkpoint give --game")
        extra = {"init": str(target), "init_parts": list(checkpoints.PARTS)}
        config = cfg.resolve(
            preset, registry().game(game).name, 0, "vqvae", "scratch", list(overrides), registry(), extra
        )
        loaded, run_path = evaluation.from_reference(target, config, registry()), None
    if game and game != loaded.config.game:
        raise WmbenchError(f"{target} holds an agent of {loaded.config.game}, not of --game {game}")
    return loaded, run_path


def build_session(mode: str, loaded, device, seed: int, flush_every: int, source: str, run_path: Path | None):
    from wmbench.play.controls import action_names
    from wmbench.plugins import registry

    c = loaded.config
    game = registry().game(c.game)
    env = game.make_env(c.env, train=False, seed=seed)
    names = action_names(env, game.num_actions())
    if mode == "replay":
        if run_path is None:
            raise WmbenchError("replay needs a run folder (or a checkpoint inside one): its episodes are saved there")
        episodes = sessions.load_episodes(run_path, source, c.env.size)
        return sessions.ReplaySession(loaded.agent, names, device, seed, episodes)
    kind = sessions.DreamSession if mode.startswith("dream") else sessions.RealSession
    human = mode in ("human", "dream")
    return kind(loaded.agent, names, device, seed, env, human, c.eval.temperature, flush_every)


def has_display() -> bool:
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or os.environ.get(
        "SDL_VIDEODRIVER"
    ) in ("dummy", "offscreen")


@click.command(context_settings=CONTEXT)
@click.argument("target", type=click.Path(path_type=Path))
@click.option(
    "--mode",
    "-m",
    type=click.Choice(sessions.MODES),
    default="agent",
    show_default=True,
    help="agent/human: the real game; dream/dream-agent: inside the world model; replay: saved episodes.",
)
@click.option(
    "--source",
    type=click.Choice(sessions.REPLAY_SOURCES),
    default="train",
    show_default=True,
    help="With --mode replay: which saved episodes.",
)
@click.option("--game", "-g", help="The game (checked against the checkpoint's; needed for a reference IRIS file).")
@click.option("--preset", "-p", default="iris", show_default=True, help="With a reference IRIS checkpoint: its preset.")
@click.option(
    "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="With a reference checkpoint: a config field."
)
@click.option(
    "--flush-every",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Rebuild the world model's memory from the current frame every N steps (0: only when full).",
)
@click.option("--fps", type=click.IntRange(min=1), default=15, show_default=True, help="Starting speed.")
@click.option("--seed", "-s", default=0, show_default=True, type=SEED)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--save-mode", is_flag=True, help="Record every episode; at its end ask (y/n) whether to keep it.")
@click.option("--headless", is_flag=True, help="No window: render the views to a video file.")
@click.option("--steps", type=click.IntRange(min=1), help="Stop after this many frames [headless default: 100].")
@click.option(
    "--keys", "script", default="", metavar="SCRIPT", help="Scripted keys, one item per frame: 'right*5,space,c'."
)
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), help="Media folder [default: the run's media/, or play/]."
)
def play(
    target,
    mode,
    source,
    game,
    preset,
    overrides,
    flush_every,
    fps,
    seed,
    device,
    save_mode,
    headless,
    steps,
    script,
    out,
):
    """Play a run's agent, the real game or the world model, in a pygame window (or headless, to a video).

    \b
    Keys: arrows and space (the game's actions, shown on screen) or digits; p pause, s single step, r reset,
    +/- speed, c start/stop recording (saved under MEDIA/recordings/), y/n keep an episode in --save-mode, q quit.
    \b
    Examples:
      wmbench play runs/Pong/scratch/0-20261124-101500 --mode dream
      wmbench play runs/try/checkpoints/last.pt --mode replay --source test
      wmbench play runs/try --mode dream-agent --headless --steps 200 --keys 'c,.*50,c'
    """
    from wmbench.engine.trainer import resolve_device
    from wmbench.media import save_video
    from wmbench.play.controls import Controls, parse_script
    from wmbench.play.player import Player
    from wmbench.play.recording import Recorder
    from wmbench.rundir import RunDir

    keys = parse_script(script)
    if not headless and not has_display():
        raise WmbenchError("no display (DISPLAY is not set): use --headless, or run under a desktop or Xvfb")
    loaded, run_path = load(target, game, preset, overrides)
    media = out or (RunDir(run_path).media if run_path else Path("play"))
    session = build_session(mode, loaded, resolve_device(device), seed, flush_every, source, run_path)
    player = Player(session, Controls(session.action_names), Recorder(media / "recordings", mode, fps), save_mode, fps)
    start = time.perf_counter()
    if headless:
        n = steps or max(len(keys), 100)
        views = [player.tick(sorted(k), k) for k in (keys + [set()] * n)[:n]]
        player.close()
        video = save_video(media / "play" / f"{mode}-{time.strftime('%Y%m%d-%H%M%S')}", np.stack(views), fps=fps)
        shown, written = len(views), [video, *player.recorder.saved]
    else:
        from wmbench.play.window import run_window

        shown, written = run_window(player, steps, keys), player.recorder.saved
    rate = shown / (time.perf_counter() - start)
    click.echo(f"{mode}: {shown} frames at {rate:.1f} fps" + "".join(f"\n  wrote {p}" for p in written))
