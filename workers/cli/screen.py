"""Where ``--watch`` draws: in place on a terminal (ANSI cursor movement), else one snapshot
after another, separated by a blank line, for a file or a pipe."""

from __future__ import annotations

import os
import shutil
from typing import TextIO

# ANSI (ECMA-48) sequences: cursor up N lines, erase to the end of the line, erase below the
# cursor, hide and show the cursor.
UP = "\x1b[{}A\r"
ERASE_LINE = "\x1b[K"
ERASE_BELOW = "\x1b[J"
HIDE_CURSOR = "\x1b[?25l"
SHOW_CURSOR = "\x1b[?25h"


class Screen:
    """Draws snapshots of lines on ``stream``. ``in_place`` (default: ``stream`` is a terminal
    that understands ANSI, i.e. ``TERM`` is not ``dumb``) redraws over the last snapshot, each
    line cut to the terminal's width so the count of lines to go back up stays exact. ``close``
    shows the cursor again; call it however the watch ends."""

    def __init__(self, stream: TextIO, in_place: bool | None = None) -> None:
        self.stream = stream
        if in_place is None:
            in_place = stream.isatty() and os.environ.get("TERM", "") != "dumb"
        self.in_place = in_place
        self.drawn = 0  # lines of the last snapshot (in place) or snapshots drawn (not)

    def draw(self, lines: list[str]) -> None:
        if not self.in_place:
            self.stream.write(("\n" if self.drawn else "") + "".join(f"{x}\n" for x in lines))
            self.stream.flush()
            self.drawn += 1
            return
        width = max(20, shutil.get_terminal_size().columns - 1)
        out = [HIDE_CURSOR if not self.drawn else UP.format(self.drawn)]
        out += [line[:width] + ERASE_LINE + "\n" for line in lines]
        out.append(ERASE_BELOW)
        self.stream.write("".join(out))
        self.stream.flush()
        self.drawn = len(lines)

    def close(self) -> None:
        if self.in_place and self.drawn:
            self.stream.write(SHOW_CURSOR)
            self.stream.flush()
