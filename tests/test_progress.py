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


def test_a_counter_moves_as_told_and_shows_its_note_and_time_left():
    off = Progress()
    with off, off.counter("cells", 3) as update:
        update(1, "2 running")  # off: nothing to show, nothing raised
    with Progress(enabled=True) as progress:
        with progress.counter("cells", 4) as update:
            (task,) = progress._bars.tasks
            update(1, "2 running, 1 failed")
            assert (task.completed, task.description) == (1, "cells: 2 running, 1 failed")
            time_left = progress._bars.columns[-1]
            task.start_time -= 60  # one of four done a minute in: three minutes left at that pace
            assert str(time_left.render(task)) == "0:03:00"
        assert not progress._bars.tasks
