"""Progress bars: on only when asked for on a terminal; the loops they wrap and the lines they print unchanged."""

from wmbench.progress import Progress


def test_off_it_is_the_plain_loop_and_the_plain_log():
    lines: list[str] = []
    with Progress(log=lines.append) as progress:
        assert list(progress.track(range(3), "steps")) == [0, 1, 2]
        with progress.stage("collection"):
            progress.log("epoch 1")
    assert lines == ["epoch 1"]


def test_off_when_not_a_terminal_and_quiet_silences_the_lines(capsys):
    lines: list[str] = []
    assert not Progress.for_terminal(False, lines.append).enabled  # pytest's stderr is not a terminal
    quiet = Progress.for_terminal(True, lines.append)
    quiet.log("epoch 1")
    assert not quiet.enabled and lines == []


def test_on_the_bars_wrap_the_same_loop_and_lines_still_print(capsys):
    with Progress(enabled=True) as progress:
        assert list(progress.track(iter("abc"), "letters", total=3)) == ["a", "b", "c"]
        with progress.stage("evaluation"):
            progress.log("epoch 1 done")
        assert progress._bars is not None and not progress._bars.tasks  # every bar removed when its loop ended
    assert "epoch 1 done" in capsys.readouterr().err
