"""Keys (by pygame's key names, so that the window and a headless key script share them) to actions and commands.

Action keys come from the game's action meanings (Atari's ``get_action_meanings()``): arrows for UP/DOWN/LEFT/
RIGHT, space for FIRE, held together for combined actions (``UPRIGHTFIRE``). Digit keys pick an action by its
number in every game, also one whose actions have no meanings.
"""

from __future__ import annotations

from wmbench.errors import WmbenchError

DIRECTIONS = {"up": "UP", "down": "DOWN", "right": "RIGHT", "left": "LEFT", "space": "FIRE"}
COMMANDS = {
    "p": "pause",
    "s": "step",
    "r": "reset",
    "=": "faster",
    "+": "faster",
    "[+]": "faster",
    "-": "slower",
    "[-]": "slower",
    "c": "record",
    "y": "yes",
    "n": "no",
    "q": "quit",
    "escape": "quit",
}
HELP = "p pause  s step  r reset  +/- speed  c record  q quit"


def action_names(env, num_actions: int) -> list[str]:
    """The env's own action meanings where it has them, else ``action 0``, ``action 1``, ..."""
    meanings = getattr(env.unwrapped, "get_action_meanings", None)
    names = list(meanings()) if meanings else []
    return names if len(names) == num_actions else [f"action {i}" for i in range(num_actions)]


class Controls:
    def __init__(self, names: list[str]):
        self.names = names

    def action(self, held: set[str]) -> int:
        """The action of the keys held now: a digit's action, or the meaning the held arrows and space spell."""
        digits = sorted(int(k) for k in held if k.isdigit() and int(k) < len(self.names))
        if digits:
            return digits[0]
        parts = [DIRECTIONS[k] for k in DIRECTIONS if k in held]
        meaning = "".join(parts) or "NOOP"
        if meaning in self.names:
            return self.names.index(meaning)
        return self.names.index("NOOP") if "NOOP" in self.names else 0

    def help(self) -> str:
        """The keys of each action, shown on screen."""
        keys = {v: k for k, v in DIRECTIONS.items()}
        shown = []
        for i, name in enumerate(self.names):
            combo = [keys[p] for p in ("UP", "DOWN", "RIGHT", "LEFT", "FIRE") if p in name]
            spelled = "".join(DIRECTIONS[k] for k in DIRECTIONS if k in combo)
            key = "+".join(combo) if combo and spelled == name else (str(i) if i < 10 else "")
            if key:
                shown.append(f"{name}={key}")
        return "  ".join(shown)


def parse_script(text: str) -> list[set[str]]:
    """A key script: one item per frame, separated by commas or spaces; ``KEY+KEY*N`` holds keys for N frames,
    ``.`` is a frame with no key. E.g. ``right*5,space,.,c,left+space*3,c``."""
    frames: list[set[str]] = []
    for item in text.replace(",", " ").split():
        keys, _, count = item.partition("*")
        try:
            n = int(count) if count else 1
        except ValueError:
            raise WmbenchError(f"key script item {item!r}: the count after * is not a number") from None
        held = set() if keys == "." else set(keys.split("+"))
        unknown = sorted(k for k in held if k not in DIRECTIONS and k not in COMMANDS and not k.isdigit())
        if unknown or n < 1:
            raise WmbenchError(
                f"key script item {item!r}: unknown key(s) {', '.join(unknown) or count}; "
                f"keys: {', '.join([*DIRECTIONS, *COMMANDS])}, digits, '.'"
            )
        frames.extend([held] * n)
    return frames
