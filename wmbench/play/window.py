"""The pygame window: the player's views at its speed, keys from the keyboard (and a key script, if given)."""

from __future__ import annotations

import os

from wmbench.errors import WmbenchError
from wmbench.play.player import Player
from wmbench.play.views import compose


def run_window(player: Player, steps: int | None, script: list[set[str]]) -> int:
    """Show the views until ``q``, the window is closed, or ``steps`` frames; returns the frames shown."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    try:
        import pygame
    except ImportError:
        raise WmbenchError("the window needs pygame: pip install 'wmbench[play]', or use --headless") from None
    try:
        pygame.display.init()
        first = compose(player.frame, player.session.mode, player.status(), player.help)
        screen = pygame.display.set_mode((first.shape[1], first.shape[0]))
    except pygame.error as exc:
        raise WmbenchError(f"cannot open a window ({exc}); use --headless") from None
    pygame.display.set_caption(f"wmbench play: {player.session.mode}")
    clock, held, shown = pygame.time.Clock(), set(), 0
    view = first
    try:
        while not player.quit and (steps is None or shown < steps):
            pressed = []
            for event in pygame.event.get():
                if event.type == pygame.QUIT:
                    player.quit = True
                elif event.type == pygame.KEYDOWN:
                    pressed.append(pygame.key.name(event.key))
                    held.add(pressed[-1])
                elif event.type == pygame.KEYUP:
                    held.discard(pygame.key.name(event.key))
            scripted = script[shown] if shown < len(script) else set()
            screen.blit(pygame.surfarray.make_surface(view.swapaxes(0, 1)), (0, 0))
            pygame.display.flip()
            view = player.tick(pressed + sorted(scripted), held | scripted)
            shown += 1
            clock.tick(player.fps)
    finally:
        player.close()
        pygame.display.quit()
    return shown
