"""What a run's score stands for: the reasons to keep it apart from published Atari 100k scores, and where the
setup departs from the paper's (the notes shown by ``describe``, ``run``'s last line, ``summary.json`` and compare).
"""

from __future__ import annotations

from typing import Any

from wmbench.config import RunConfig, load_preset

PAPER_TEST_FRAMES = 108_000
"""The paper's cap on test episodes, in emulator frames."""


def score_caveats(config: RunConfig) -> list[str]:
    """Why the score is not one to set beside published scores: cut test episodes, or a pipeline preset (one
    whose ``meta.pipeline`` is true). Empty: a real score (at whatever budget the preset has)."""
    caveats = []
    if config.env.max_frames_test < PAPER_TEST_FRAMES:
        caveats.append(f"test episodes cut at {config.env.max_frames_test:,} frames")
    if load_preset(config.preset).get("meta", {}).get("pipeline"):
        caveats.append(f"pipeline preset {config.preset}")
    return caveats


def paper_departures(config: RunConfig, tokenizer_info: dict[str, Any]) -> list[str]:
    """Where the setup departs from the paper's in ways a reader should see: LPIPS off, parallel frame prediction."""
    departures = []
    if str(tokenizer_info.get("perceptual_loss", "")).startswith("off"):
        departures.append("LPIPS off (the paper's tokenizer loss adds it)")
    if config.world_model.parallel:
        departures.append("parallel frame prediction (a frame's tokens at once, not one by one as IRIS)")
    return departures


def marked_score(summary: dict[str, Any]) -> str:
    """``summary``'s mean return and normalised score as one phrase, marked when it is not a comparable score."""
    text = f"eval return {summary['eval_return_mean']:.2f}"
    caveats = summary.get("score_caveats") or []
    if caveats:
        return f"{text} (not a score: {'; '.join(caveats)})"
    return f"{text} (human-normalised {summary['human_normalised_score']:.3f})"
