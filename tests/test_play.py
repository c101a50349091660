"""``wmbench play``: every mode headless, in a pygame window (SDL's dummy driver, and a real X server), with
scripted keys; the files it writes; a screenshot of the window taken from the X display; bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from click.testing import CliRunner
from plugin_site import CATCH, TINY, add_package, wmbench

from wmbench import config as cfg
from wmbench.cli import cli
from wmbench.engine.trainer import Trainer
from wmbench.files import load_torch
from wmbench.play import views
from wmbench.rundir import RunDir

MODES = ("agent", "human", "dream", "dream-agent", "replay")
KEYS = "right*2,c,space*2,up+space,right,c"
"""Eight frames: a recording of frames 3 to 7 (pressing c starts it, the second c saves it)."""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A two-epoch smoke run of Pong, with media (test and imagined videos) and a replay of the training episodes."""
    from wmbench.plugins import registry

    path = tmp_path_factory.mktemp("play") / "run"
    config = cfg.resolve("smoke", "Pong", 0, "vqvae", "scratch", [*TINY, "training.media_every=2"], registry())
    RunDir(path).create(cfg.to_dict(config))
    Trainer(config, RunDir(path), registry(), log=lambda *_: None).fit()
    return path


def play(*args):
    return CliRunner().invoke(cli, ["play", *map(str, args)])


def newest(folder: Path, pattern: str) -> Path:
    return max(folder.glob(pattern), key=lambda p: p.stat().st_mtime_ns)


def check_recording(folder: Path, mode: str) -> dict[str, np.ndarray]:
    archive = newest(folder / "recordings", f"{mode}-*.npz")
    assert archive.with_suffix(".mp4").is_file() or archive.with_suffix(".gif").is_file()
    with np.load(archive) as data:
        out = {k: data[k] for k in ("frames", "actions", "rewards")}
    assert out["frames"].shape == (5, 32, 32, 3) and out["actions"].shape == out["rewards"].shape == (5,)
    return out


@pytest.mark.parametrize("mode", MODES)
def test_headless_mode_writes_the_views_and_a_recording(run, tmp_path, mode):
    result = play(run, "--mode", mode, "--headless", "--steps", 8, "--keys", KEYS, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    assert f"{mode}: 8 frames" in result.output
    video = iio.imread(newest(tmp_path / "play", f"{mode}-*"), index=None)
    assert video.shape[0] == 8 and video.shape[1] > views.PANEL and video[0].std() > 10
    recorded = check_recording(tmp_path, mode)
    if (
        mode == "human"
    ):  # keys held on frames 3-7: c (no action key), space, space, up+space (Pong has no UPFIRE), right
        meanings = ["NOOP", "FIRE", "RIGHT", "LEFT", "RIGHTFIRE", "LEFTFIRE"]
        assert [meanings[a] for a in recorded["actions"]] == ["NOOP", "FIRE", "FIRE", "NOOP", "RIGHT"]


def test_replay_of_test_videos_and_recordings(run, tmp_path):
    assert play(run, "--mode", "human", "--headless", "--steps", 8, "--keys", KEYS).exit_code == 0
    for source in ("train", "test", "imagined", "recordings"):
        result = play(run, "--mode", "replay", "--source", source, "--headless", "--steps", 3, "--out", tmp_path)
        assert result.exit_code == 0, (source, result.output)


def test_save_mode_keeps_an_episode_only_when_asked(run, tmp_path):
    # Replaying a training episode: it ends, play asks, "n" drops it; the next one ends, "y" keeps it.
    length = len(load_torch(run / "replay" / "000000.pt")["frames"])
    keys = f".*{length + 1},n,.*{length + 1},y"
    result = play(run, "--mode", "replay", "--save-mode", "--headless", "--keys", keys, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    archives = list((tmp_path / "recordings").glob("*.npz"))
    assert len(archives) == 1
    with np.load(archives[0]) as data:
        assert data["frames"].shape[0] == length


@pytest.mark.parametrize("mode", MODES)
def test_window_mode_with_the_dummy_video_driver(run, tmp_path, monkeypatch, mode):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.delenv("DISPLAY", raising=False)
    result = play(run, "--mode", mode, "--steps", 8, "--keys", KEYS, "--fps", 120, "--out", tmp_path)
    assert result.exit_code == 0, result.output
    check_recording(tmp_path, mode)


def test_bad_input_is_one_line_and_exit_2(run, tmp_path, monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    cases = {
        "is not a run folder": (tmp_path, "--headless"),
        "holds an agent of Pong, not of --game Breakout": (run, "--game", "Breakout", "--headless"),
        "no display": (run,),
        "unknown key(s) jump": (run, "--headless", "--keys", "right,jump"),
    }
    for message, args in cases.items():
        result = play(*args)
        assert result.exit_code == 2, (message, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("wmbench: error:") and message in lines[0], lines
    assert not (tmp_path / "play").exists()


@pytest.mark.slow
def test_a_non_atari_suite_plays_inside_its_world_model(tmp_path):
    site = add_package(tmp_path / "site", "wmbench-catch", "1.0", {"catch": "wmbench_catch"}, {"wmbench_catch": CATCH})
    sets = [a for o in TINY for a in ("--set", o)]
    assert wmbench("run", "--game", "Catch", "--preset", "smoke", *sets, "--out", "catch", site=site).returncode == 0
    result = wmbench(
        "play", "catch", "--mode", "dream", "--headless", "--steps", "8", "--keys", "0,2*3,c,1*2,c", site=site
    )
    assert result.returncode == 0, result.stderr
    with np.load(next((tmp_path / "catch" / "media" / "recordings").glob("dream-*.npz"))) as data:
        actions = list(data["actions"])  # c holds no key (action 0); -1 marks a first frame (the dream may end)
    assert len(actions) == 3 and set(actions) <= {-1, 0, 1} and 1 in actions  # digits pick unnamed actions


# A real X server -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def display():
    """An Xvfb display (Debian's ``xvfb``; ``.ci/xvfb`` installs it) for the duration of the module."""
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed (apt-get install xvfb x11-apps imagemagick xdotool, as .ci/xvfb does)")
    number = f":{90 + os.getpid() % 100}"
    server = subprocess.Popen(
        ["Xvfb", number, "-screen", "0", "1024x768x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        if subprocess.run(["xdpyinfo", "-display", number], capture_output=True, check=False).returncode == 0:
            break
        time.sleep(0.1)
    yield number
    server.terminate()
    server.wait(10)


def find_window(title: str, env: dict[str, str], timeout: float = 120) -> str:
    """The id of the X window with this title, waited for."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        tree = subprocess.run(
            ["xwininfo", "-root", "-tree"], env=env, capture_output=True, text=True, check=False
        ).stdout
        for line in tree.splitlines():
            if f'"{title}"' in line:
                return line.split()[0]
        time.sleep(0.5)
    raise AssertionError(f"no window {title!r} appeared")


def panels(shot: np.ndarray, first_width: int) -> list[np.ndarray]:
    """The three panels of a view (laid out as :func:`wmbench.play.views.compose` does) in a screenshot."""
    top, side, gap = views.HEADER + views.LINE, views.PANEL, views.GAP
    lefts = (gap, 2 * gap + first_width, 3 * gap + first_width + side)
    return [shot[top : top + side, x : x + w] for x, w in zip(lefts, (first_width, side, side))]


@pytest.mark.slow
@pytest.mark.parametrize("mode", MODES)
def test_window_under_x_shows_three_panels_and_the_header(run, tmp_path, display, mode):
    env = {**os.environ, "DISPLAY": display, "OMP_NUM_THREADS": "1"}
    env.pop("SDL_VIDEODRIVER", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "wmbench",
            "play",
            str(run),
            "--mode",
            mode,
            "--keys",
            KEYS,
            "--out",
            str(tmp_path),
            "--fps",
            "8",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        window = find_window(f"wmbench play: {mode}", env)
        for _ in range(600):  # until the scripted keys are past and the recording is saved
            if list((tmp_path / "recordings").glob("*.npz")):
                break
            time.sleep(0.1)
        shot_path = tmp_path / "shot.png"
        subprocess.run(["import", "-window", window, str(shot_path)], env=env, check=True, timeout=30)
        subprocess.run(["xdotool", "key", "--window", window, "q"], env=env, check=True, timeout=30)  # a real key
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    shot = iio.imread(shot_path)[..., :3].astype(int)
    header = shot[: views.HEADER]
    assert (header.max(axis=2) > 200).sum() > 200  # white and yellow text
    # Atari's full screen (210 x 160) scaled to the panel's height; replay shows the stored 32 x 32 frame.
    seen = panels(shot, views.PANEL if mode == "replay" else round(160 * views.PANEL / 210))
    assert all(p.std() > 5 for p in seen), [p.std() for p in seen]
    small = [p[:: max(1, p.shape[0] // 32), :: max(1, p.shape[1] // 32)][:32, :32] for p in seen]
    assert np.abs(small[0] - small[2]).mean() > 3 and np.abs(small[1] - small[2]).mean() > 3  # distinct panels
    check_recording(tmp_path, mode)
