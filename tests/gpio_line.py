"""A mock GPIO line that outlives its process, for tests of what a signal or a kill leaves behind.

gpiozero's MockFactory keeps pin levels in the memory of one process. A real GPIO line keeps its
level when the process that drove it dies, and the next process to claim it starts from that level.
:class:`LineFactory` is MockFactory with pins that do the same through files: every level change is
appended to ``$AVID_TEST_GPIO_DIR/GPIO<n>`` (one line, "0" or "1"), and a pin starts from the last
level there. Only the hardware is replaced; avid's own code runs unchanged.

Run avid with this factory behind ``lock.pin_factory: mock``::

    AVID_TEST_GPIO_DIR=/tmp/gpio python tests/gpio_line.py run --config door.yaml
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from gpiozero.pins.mock import MockFactory, MockPin

GPIO_DIR_ENV = "AVID_TEST_GPIO_DIR"


def line_file(directory: Path, pin: int) -> Path:
    """The file recording the levels of BCM ``pin``."""
    return Path(directory) / f"GPIO{pin}"


def levels(directory: Path, pin: int) -> list[int]:
    """Every level the line was driven to, oldest first (empty if never changed)."""
    path = line_file(directory, pin)
    if not path.exists():
        return []
    return [int(line) for line in path.read_text().split() if line in ("0", "1")]


class LinePin(MockPin):
    """A mock pin whose level is kept in a file, across processes."""

    def __init__(self, factory, info):
        super().__init__(factory, info)
        self._file = line_file(Path(os.environ[GPIO_DIR_ENV]), int(info.name.removeprefix("GPIO")))
        history = levels(self._file.parent, int(info.name.removeprefix("GPIO")))
        if history:
            self._state = bool(history[-1])

    def _change_state(self, value):
        changed = super()._change_state(value)
        if changed:
            # One small O_APPEND write: a kill can never leave half a line.
            fd = os.open(self._file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, b"1\n" if value else b"0\n")
            finally:
                os.close(fd)
        return changed

    def _set_function(self, value):
        # Releasing a real line (gpiozero resets it to an input) does not change the level a relay
        # board sees while it has a pull-down; the mock would drive it to its pull, so keep the level
        # a dead process leaves unless something drives it.
        self._function = value


class LineFactory(MockFactory):
    """MockFactory whose pins are :class:`LinePin`."""

    def __init__(self):
        super().__init__(pin_class=LinePin)


def main(argv: list[str]) -> int:
    from daemon import cli
    from daemon.actuate import lock

    lock._FACTORIES["mock"] = (__name__ if __name__ != "__main__" else "gpio_line", "LineFactory")
    return cli.main(argv)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main(sys.argv[1:]))
