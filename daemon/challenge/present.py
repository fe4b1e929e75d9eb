"""Prompt devices: how the door shows or says each digit of a challenge.

Backends, chosen by ``prompt.backend`` in the config:

- ``none``: no prompt device, so no challenge: the door decides as without one (and says at
  start-up that a replayed video of a resident is then not stopped);
- ``log``: prompts go to the log only (tests, the demo, bench work: nobody at the door sees them);
- ``speaker``: each digit spoken through a loudspeaker (sounddevice); the ten WAVs are rendered
  once with espeak-ng (Debian package ``espeak-ng``) into a folder, at install or first start;
- ``display``: the digit drawn large on a small display through luma (an SSD1306 or SH1106 OLED on
  I2C; ``luma.core``'s ``dummy`` device in tests).

A presenter never blocks the loop: it starts showing or playing and returns.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Callable

import numpy as np

from daemon.challenge.digits import DIGITS
from daemon.errors import AvidError

log = logging.getLogger(__name__)

#: How each digit is said (espeak-ng reads "0" as "zero" too, but a word is unambiguous).
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SAMPLE_RATE_HZ = 16000


class PromptError(AvidError, OSError):
    """A prompt device cannot be set up (missing espeak-ng, no display, unreadable sounds)."""


class Presenter(ABC):
    """A prompt device: shows or says one digit at a time."""

    name = "presenter"

    def prompt_seconds(self, digit: str) -> float:
        """How long presenting ``digit`` takes (0 for a display: it is seen at once)."""
        return 0.0

    @abstractmethod
    def show(self, digit: str, index: int, total: int) -> None:
        """Start presenting prompt ``index`` (0-based) of ``total``; returns at once."""

    def clear(self) -> None:
        """Take the last prompt away (the challenge is over)."""

    def close(self) -> None:
        """Release the device; calling it again does nothing."""


class LogPresenter(Presenter):
    """Prompts in the log only: nobody at a real door sees them."""

    name = "log"

    def show(self, digit: str, index: int, total: int) -> None:
        # A one-time random digit is not a secret once shown, and not biometric.
        log.info("challenge prompt %d/%d: say %s", index + 1, total, digit)


class SpeakerPresenter(Presenter):
    """Says each digit through a loudspeaker.

    ``sounds`` maps each digit to its mono float samples at ``sample_rate_hz``; ``play(samples,
    sample_rate_hz)`` starts playing without blocking (default: ``sounddevice.play`` on ``device``).
    """

    name = "speaker"

    def __init__(self, sounds: dict[str, np.ndarray], sample_rate_hz: int = SAMPLE_RATE_HZ,
                 play: Callable[[np.ndarray, int], None] | None = None, device=None):
        missing = [d for d in DIGITS if d not in sounds or np.asarray(sounds[d]).size == 0]
        if missing:
            raise PromptError(f"no prompt sound for digit(s) {', '.join(missing)}")
        self.sounds = {d: np.asarray(s, np.float32).reshape(-1) for d, s in sounds.items()}
        self.sample_rate_hz = int(sample_rate_hz)
        self._device = device
        self._play = play or self._sounddevice_play
        self._closed = False

    def _sounddevice_play(self, samples: np.ndarray, sample_rate_hz: int) -> None:
        import sounddevice
        sounddevice.play(samples, sample_rate_hz, device=self._device, blocking=False)

    def prompt_seconds(self, digit: str) -> float:
        return self.sounds[digit].size / self.sample_rate_hz

    def show(self, digit: str, index: int, total: int) -> None:
        if not self._closed:
            self._play(self.sounds[digit], self.sample_rate_hz)

    def close(self) -> None:
        self._closed = True


def render_prompts(directory: Path, voice: str = "en", words_per_minute: int = 140,
                   espeak: str = "espeak-ng", timeout_s: float = 20.0) -> list[Path]:
    """Render the ten digit prompts once with espeak-ng into ``directory/<digit>.wav`` (files that
    exist are kept); returns the ten paths. Raises :class:`PromptError` when espeak-ng is missing
    or fails."""
    directory = Path(directory)
    paths = [directory / f"{d}.wav" for d in DIGITS]
    if all(p.is_file() and p.stat().st_size > 44 for p in paths):
        return paths
    program = shutil.which(espeak)
    if program is None:
        raise PromptError(f"{espeak} not found: install the Debian package espeak-ng "
                          "(tools/install.sh does), or render the prompts elsewhere into "
                          f"{directory}/0.wav ... 9.wav")
    directory.mkdir(parents=True, exist_ok=True)
    for digit, path in zip(DIGITS, paths):
        if path.is_file() and path.stat().st_size > 44:
            continue
        partial = path.with_suffix(".tmp.wav")
        try:
            subprocess.run([program, "-v", voice, "-s", str(words_per_minute), "-w", str(partial),
                            WORDS[int(digit)]], check=True, capture_output=True, timeout=timeout_s)
            partial.replace(path)
        except (OSError, subprocess.SubprocessError) as exc:
            partial.unlink(missing_ok=True)
            raise PromptError(f"espeak-ng could not render the prompt for {digit}: {exc}") from exc
    return paths


def load_prompt_sounds(directory: Path) -> dict[str, np.ndarray]:
    """The ten prompt WAVs of ``directory`` as 16 kHz samples, silence trimmed from both ends."""
    from daemon.capture.audio import read_wav
    from daemon.challenge.digits import trim
    sounds = {}
    for digit in DIGITS:
        path = Path(directory) / f"{digit}.wav"
        try:
            sounds[digit] = trim(read_wav(path), 40.0)
        except AvidError as exc:
            raise PromptError(f"prompt sound {path}: {exc}") from exc
    return sounds


class DisplayPresenter(Presenter):
    """Draws each digit large on a small luma display (``device``: any luma.core device)."""

    name = "display"

    def __init__(self, device):
        self.device = device
        self._closed = False

    def show(self, digit: str, index: int, total: int) -> None:
        if self._closed:
            return
        from luma.core.render import canvas
        from PIL import ImageFont
        width, height = self.device.width, self.device.height
        font = ImageFont.load_default(size=max(10, int(height * 0.8)))
        with canvas(self.device) as draw:
            left, top, right, bottom = draw.textbbox((0, 0), digit, font=font)
            draw.text(((width - (right - left)) / 2 - left, (height - (bottom - top)) / 2 - top),
                      digit, font=font, fill="white")
            # Which prompt of how many, as dots along the bottom edge.
            for i in range(total):
                x = 4 + i * 8
                draw.rectangle((x, height - 4, x + 4, height - 1),
                               fill="white" if i <= index else None, outline="white")

    def clear(self) -> None:
        if not self._closed:
            self.device.clear()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self.device.cleanup()
            except Exception as exc:  # a display that is gone cannot be cleared either
                log.warning("prompt display cleanup failed: %s", exc)


def open_display(driver: str, i2c_port: int, i2c_address: int, width_px: int, height_px: int):
    """A luma.oled device on I2C (``driver`` ssd1306 or sh1106), or luma.core's ``dummy``."""
    try:
        if driver == "dummy":
            from luma.core.device import dummy
            return dummy(width=width_px, height=height_px, mode="1")
        from luma.core.interface.serial import i2c
        from luma.oled import device as oled
        return getattr(oled, driver)(i2c(port=i2c_port, address=i2c_address),
                                     width=width_px, height=height_px)
    except ImportError as exc:
        raise PromptError(f"the display backend needs luma.oled: pip install 'avid[display]' "
                          f"({exc})") from exc
    except Exception as exc:  # luma raises its own errors for a missing bus or device
        raise PromptError(f"prompt display {driver} on I2C port {i2c_port} address "
                          f"{i2c_address:#04x}: {exc}") from exc


def make_presenter(prompt_config, state_dir: Path | None = None) -> Presenter | None:
    """The configured prompt device, or None for ``backend: none`` (no challenge).

    Raises :class:`PromptError` when the configured device cannot be set up: a door configured to
    challenge must not quietly run without.
    """
    backend = prompt_config.backend
    if backend == "none":
        return None
    if backend == "log":
        return LogPresenter()
    if backend == "speaker":
        options = prompt_config.speaker
        directory = options.sounds_directory or (Path(state_dir or ".") / "prompts")
        render_prompts(directory, options.voice)
        return SpeakerPresenter(load_prompt_sounds(directory), device=options.device)
    if backend == "display":
        options = prompt_config.display
        return DisplayPresenter(open_display(options.driver, options.i2c_port, options.i2c_address,
                                             options.width_px, options.height_px))
    raise PromptError(f"unknown prompt backend {backend!r}")


def main(argv=None) -> int:
    """``python -m daemon.challenge.present DIR``: render the ten prompts into DIR (tools/install.sh)."""
    import sys
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m daemon.challenge.present DIRECTORY", file=sys.stderr)
        return 2
    try:
        paths = render_prompts(Path(args[0]))
    except PromptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(paths)} prompts in {args[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
