"""The one strict schema of ``config.yaml``.

Every section is a pydantic model with ``extra="forbid"``, bounds on every number, units in the
names and a description on every field. :func:`load_config` reports *all* problems of a file at once,
each with its key path, the offending value, a plain message and, where the YAML parser knows it, the
line number; unknown keys get a "did you mean" hint. A door controller with a bad config must not run,
so there is no fallback: callers exit with :data:`EX_CONFIG`.
"""

from __future__ import annotations

import difflib
import os
import reprlib
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationError,
                      ValidationInfo, field_validator)

from daemon.errors import AvidError, ConfigError

#: Conventional exit status for a configuration error (sysexits.h EX_CONFIG).
EX_CONFIG = 78

#: Environment variable that overrides ``state.directory``.
STATE_DIR_ENV = "AVID_STATE_DIR"

#: The largest config file read; the commented example is 3 kB.
MAX_CONFIG_BYTES = 256 * 1024
#: YAML nodes a config may expand to, counting every use of an alias in full (a "billion
#: laughs" file is a few hundred bytes that expand to 10^9 nodes); a complete config has about 80.
MAX_CONFIG_NODES = 5000


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    # pydantic's lax mode reads true as 1, and YAML reads yes/no/on/off as booleans, so
    # "relay_pin: yes" would silently mean GPIO1; only yes/no settings take yes/no values.
    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        annotation = cls.model_fields[info.field_name].annotation
        is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        if isinstance(value, bool) and annotation is not bool and not is_section:
            raise ValueError("true/false (also yes/no, on/off in YAML) is not a valid value here")
        return value


Seconds = Annotated[float, Field(gt=0)]


class ModelsConfig(_Section):
    """Where the TFLite models live and how they run."""

    directory: Path | None = Field(
        None, description="Folder holding the .tflite files and manifest.json; "
                          "empty means the models/ folder shipped with the package.")
    num_threads: int = Field(1, ge=1, le=8, description="CPU threads per model inference.")


class StateConfig(_Section):
    """Where templates, calibration and counters are kept."""

    directory: Path = Field(
        Path("/var/lib/avid"),
        description=f"State folder (templates, lockout counter, calibration); "
                    f"the environment variable {STATE_DIR_ENV} overrides it.")
    key_file: Path | None = Field(
        None, description="File with the 32-byte device key that encrypts templates; empty means "
                          "the systemd credential $CREDENTIALS_DIRECTORY/avid-key, else "
                          "<state directory>/device.key (created on first enrolment).")


# --- hardware backends -------------------------------------------------------------------------
# As Frigate keys its detectors: each backend's settings are a model of their own, tagged by
# ``backend``, so that a replay camera cannot carry a device index. Adding a backend is one model
# here, one source class in daemon/capture/ and one line in its registry (daemon/capture/sources.py).

def _backend_tag(default: str):
    """A discriminator reading ``backend``, so that a section without it gets ``default``."""
    def tag(value: Any) -> str:
        if isinstance(value, BaseModel):
            return getattr(value, "backend", default)
        if not isinstance(value, dict):
            return default  # the default backend's model reports "should be a mapping"
        backend = value.get("backend", default)
        return backend if isinstance(backend, str) else repr(backend)
    tag.__name__ = f"backend (default {default!r})"
    return tag


def _not_empty(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        raise ValueError("empty: give a file or folder")
    return value


ReplayPath = Annotated[Path, BeforeValidator(_not_empty)]


class _Backend(_Section):
    def with_base(self, base: Path) -> "_Backend":
        """This backend's settings with relative file paths made relative to ``base``."""
        return self


class OpenCVCameraConfig(_Backend):
    """A camera read with OpenCV (V4L2 index or device path)."""

    backend: Literal["opencv"] = Field("opencv", description="A camera read with OpenCV.")
    device: int | str = Field(0, description="OpenCV camera index (0) or device path (/dev/video0).")
    width_px: int = Field(640, ge=64, le=4096, description="Requested frame width in pixels.")
    height_px: int = Field(480, ge=48, le=4096, description="Requested frame height in pixels.")
    fps: float = Field(15.0, gt=0, le=60, description="Frames per second to process.")
    read_timeout_seconds: float = Field(
        2.0, gt=0, le=30, description="A read that gives no frame for this long counts as a fault.")


class ReplayCameraConfig(_Backend):
    """A video file or a folder of images replayed as a camera."""

    backend: Literal["replay"] = Field(description="A video file or a folder of images.")
    path: ReplayPath = Field(description="A video file or a folder of images (a relative path "
                                         "starts at the config file's folder).")
    fps: float = Field(15.0, gt=0, le=60, description="Frames per second to replay.")
    read_timeout_seconds: float = Field(
        2.0, gt=0, le=30, description="A read that gives no frame for this long counts as a fault.")
    realtime: bool = Field(True, description="Pace frames at fps (false: as fast as possible).")
    loop: bool = Field(False, description="Start again at the end instead of stopping.")

    def with_base(self, base: Path) -> "ReplayCameraConfig":
        return self.model_copy(update={"path": _under(base, self.path)})


class SoundDeviceMicrophoneConfig(_Backend):
    """A PortAudio input read with sounddevice."""

    backend: Literal["sounddevice"] = Field("sounddevice", description="A PortAudio input.")
    device: int | str | None = Field(
        None, description="sounddevice input device name or index; empty means the default input.")
    sample_rate_hz: Literal[8000, 16000, 32000, 48000] = Field(
        16000, description="Capture sample rate; the encoders run at 16000 Hz (others are resampled).")
    block_ms: Literal[10, 20, 30] = Field(
        30, description="Audio block length, also the VAD frame length (webrtcvad allows 10/20/30).")
    read_timeout_seconds: float = Field(
        2.0, gt=0, le=30, description="A read that gives no audio for this long counts as a fault.")


class ReplayMicrophoneConfig(_Backend):
    """WAV files replayed as a microphone."""

    backend: Literal["replay"] = Field(description="WAV files played one after another.")
    paths: list[ReplayPath] = Field(
        min_length=1, description="One or more WAV files (PCM) played one after another (a relative "
                                  "path starts at the config file's folder).")
    block_ms: Literal[10, 20, 30] = Field(
        30, description="Audio block length, also the VAD frame length (webrtcvad allows 10/20/30).")
    read_timeout_seconds: float = Field(
        2.0, gt=0, le=30, description="A read that gives no audio for this long counts as a fault.")
    realtime: bool = Field(True, description="Pace audio in real time (false: as fast as possible).")
    gap_seconds: float = Field(0.0, ge=0, le=60, description="Silence (room tone) inserted before, "
                                                             "between and after the files.")

    def with_base(self, base: Path) -> "ReplayMicrophoneConfig":
        return self.model_copy(update={"paths": [_under(base, p) for p in self.paths]})


def _under(base: Path, path: Path) -> Path:
    return path if path.is_absolute() else base / path


#: The ``camera`` section: one of the camera backends, chosen by ``backend`` (default 'opencv').
CameraConfig = Annotated[
    Annotated[OpenCVCameraConfig, Tag("opencv")] | Annotated[ReplayCameraConfig, Tag("replay")],
    Discriminator(_backend_tag("opencv"))]

#: The ``microphone`` section: one of the microphone backends (default 'sounddevice').
MicrophoneConfig = Annotated[
    Annotated[SoundDeviceMicrophoneConfig, Tag("sounddevice")]
    | Annotated[ReplayMicrophoneConfig, Tag("replay")],
    Discriminator(_backend_tag("sounddevice"))]


def backend_models(annotation: Any) -> dict[str, type[BaseModel]]:
    """The models of a backend-keyed section by backend name (empty for an ordinary section)."""
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    models = {}
    for member in get_args(annotation):
        if get_origin(member) is Annotated:
            model, *metadata = get_args(member)
            for tag in metadata:
                if isinstance(tag, Tag):
                    models[tag.tag] = model
    return models


class VadConfig(_Section):
    """Speech segmentation with webrtcvad and hysteresis."""

    aggressiveness: int = Field(
        3, ge=0, le=3, description="webrtcvad aggressiveness, 0 (least) to 3; 3 keeps door-side "
                                   "background noise out of the utterance.")
    start_frames: int = Field(
        4, ge=1, le=100, description="Voiced frames in a row that start an utterance.")
    end_frames: int = Field(
        20, ge=1, le=200, description="Unvoiced frames in a row that end an utterance.")


class AttemptConfig(_Section):
    """One attempt: from the first face or speech to the end of the utterance."""

    timeout_seconds: float = Field(
        8.0, gt=0, le=60, description="An attempt that has not ended by then is decided on what it has.")
    min_speech_seconds: float = Field(
        1.0, gt=0, le=10, description="Less voiced audio than this is rejected as speech_too_short.")
    max_speech_seconds: float = Field(
        6.0, gt=0, le=30, description="Voiced audio beyond this is not embedded.")
    best_faces: int = Field(3, ge=1, le=10, description="Face frames kept (the best by quality).")
    min_face_score: float = Field(
        0.72, ge=0.5, le=1.0, description="BlazeFace confidence below which a detection is ignored "
                                          "(random noise scores up to about 0.67; real faces 0.74+).")
    min_face_width_px: int = Field(
        60, ge=16, le=2000, description="Faces narrower than this are rejected as face_too_small.")
    min_brightness: float = Field(
        40.0, ge=0, le=255, description="Mean face luminance below this is rejected as too_dark.")
    cooldown_seconds: float = Field(
        2.0, ge=0, le=60, description="Pause after a decision before a new attempt may start.")


class DecisionConfig(_Section):
    """Score fusion and the open-set decision."""

    face_weight: float = Field(1.0, ge=0, le=10, description="Weight of the face log-likelihood ratio.")
    voice_weight: float = Field(1.0, ge=0, le=10, description="Weight of the voice log-likelihood ratio.")
    threshold: float | None = Field(
        None, ge=-50, le=100, description="Fused LLR needed to accept; empty means the calibration "
                                          "file's value, else the built-in default.")
    margin: float | None = Field(
        None, ge=0, le=100, description="Fused LLR by which the best person must beat the runner-up; "
                                        "empty means the calibration file's value or the default.")
    min_modality_llr: float = Field(
        0.0, ge=-20, le=20, description="LLR each modality must reach on its own when both are used "
                                        "(0: each must at least favour the person), so a strong face "
                                        "cannot carry a voice that points elsewhere.")
    early_accept: bool = Field(
        True, description="Accept before the end of the utterance (while the person speaks or in the "
                          "first part of the pause) when the evidence so far clears the threshold by "
                          "early_margin; denials always wait for the whole utterance.")
    early_margin: float = Field(
        2.0, ge=0, le=50, description="LLR above the threshold an early accept needs (the evidence "
                                      "is partial; e^2 = 7 times stricter by default).")
    early_min_speech_seconds: float = Field(
        1.0, gt=0, le=10, description="Speech an early accept needs at least.")
    missing_modality: Literal["deny", "face_only", "voice_only"] = Field(
        "deny", description="With one modality missing: deny, or allow face-only / voice-only "
                            "decisions against single_modality_threshold.")
    single_modality_threshold: float = Field(
        12.0, ge=-50, le=100, description="LLR a lone modality must reach when missing_modality allows it.")
    calibration_file: Path | None = Field(
        None, description="Calibration written by 'avid calibrate'; empty means "
                          "<state directory>/calibration.json.")


class LivenessConfig(_Section):
    """Audio-visual liveness: the voice must come from the moving face in front of the camera."""

    required: bool = Field(True, description="Deny every attempt whose liveness check fails or cannot run.")
    min_sync_correlation: float | None = Field(
        None, ge=-1, le=1, description="Mouth-motion/speech-envelope correlation needed; empty "
                                       "means the calibrated default.")
    max_lag_ms: int = Field(200, ge=0, le=1000, description="Largest audio-video lag searched.")


class SpeakerPromptConfig(_Section):
    """Digits spoken through a loudspeaker (sounddevice); WAVs rendered once with espeak-ng."""

    device: int | str | None = Field(
        None, description="sounddevice output device name or index; empty means the default output.")
    voice: str = Field("en", min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_+-]+$",
                       description="espeak-ng voice the prompts are rendered with.")
    sounds_directory: Path | None = Field(
        None, description="Folder with 0.wav ... 9.wav; missing files are rendered with espeak-ng; "
                          "empty means <state directory>/prompts.")


class DisplayPromptConfig(_Section):
    """Digits drawn on a small I2C OLED display through luma.oled (pip extra 'display')."""

    driver: Literal["ssd1306", "sh1106", "dummy"] = Field(
        "ssd1306", description="luma.oled driver; 'dummy' draws into memory (tests, the demo).")
    i2c_port: int = Field(1, ge=0, le=20, description="I2C bus number (/dev/i2c-N).")
    i2c_address: int = Field(0x3C, ge=0x03, le=0x77, description="I2C address of the display.")
    width_px: int = Field(128, ge=32, le=512, description="Display width in pixels.")
    height_px: int = Field(64, ge=16, le=512, description="Display height in pixels.")


class PromptConfig(_Section):
    """The prompt device for the random challenge; its options go in the section named after it."""

    backend: Literal["none", "log", "speaker", "display"] = Field(
        "none", description="'none': no challenge (a replayed video of a resident is then NOT "
                            "stopped); 'log': prompts in the log only (tests, demo); 'speaker': "
                            "spoken digits; 'display': digits on a small OLED display.")
    speaker: SpeakerPromptConfig = Field(default_factory=SpeakerPromptConfig,
                                         description=SpeakerPromptConfig.__doc__)
    display: DisplayPromptConfig = Field(default_factory=DisplayPromptConfig,
                                         description=DisplayPromptConfig.__doc__)

    @property
    def challenge_on(self) -> bool:
        """Whether the door asks the random challenge (any prompt device but ``none``): then every
        attempt must answer it, and a person enrolled without digit recordings is refused."""
        return self.backend != "none"


class ChallengeConfig(_Section):
    """The random challenge asked through the prompt device (daemon/challenge/)."""

    digits: int = Field(4, ge=1, le=8, description="Digits prompted per attempt, one at a time.")
    min_correct: int = Field(
        3, ge=1, le=8, description="Answers that must be timed, right and spoken by an opening mouth.")
    max_answer_delay_seconds: float = Field(
        1.4, gt=0.2, le=5, description="An answer must start within this long after its prompt ends.")


class LockConfig(_Section):
    """The lock relay."""

    backend: Literal["gpiozero"] = Field("gpiozero", description="Relay driver (gpiozero OutputDevice).")
    pin_factory: Literal["lgpio", "rpigpio", "pigpio", "native", "mock"] = Field(
        "lgpio", description="gpiozero pin factory; 'mock' drives no hardware (demo and tests). "
                             "No fallback: if this factory cannot start, avid refuses to run.")
    relay_pin: int = Field(17, ge=0, le=53, description="BCM number of the relay's GPIO pin.")
    active_high: bool = Field(True, description="True if driving the pin high energises the relay.")
    unlock_seconds: float = Field(5.0, gt=0, le=60, description="How long the relay stays energised.")


class DoorConfig(_Section):
    """Optional door contact and exit button."""

    contact_pin: int | None = Field(None, ge=0, le=53, description="BCM pin of the door contact (closed = low).")
    exit_button_pin: int | None = Field(None, ge=0, le=53, description="BCM pin of the request-to-exit button.")
    held_open_seconds: float = Field(
        30.0, gt=0, le=3600, description="A door open longer than this raises door_held_open.")


class LockoutConfig(_Section):
    """Refuse attempts after repeated failures (NIST SP 800-63B-4)."""

    max_consecutive_failures: int = Field(5, ge=1, le=100, description="Denied attempts before lockout.")
    initial_delay_seconds: float = Field(30.0, ge=1, le=86400, description="First lockout delay.")
    max_delay_seconds: float = Field(900.0, ge=1, le=86400, description="Longest lockout delay (doubling stops here).")


class WatchdogConfig(_Section):
    """Health judged by staleness."""

    max_frame_age_seconds: float = Field(
        3.0, gt=0, le=60, description="No fresh frame for this long stops feeding the systemd watchdog.")
    max_inference_age_seconds: float = Field(
        10.0, gt=0, le=600, description="No successful inference for this long stops feeding it too.")


class LoggingConfig(_Section):
    """Log verbosity (the -v/-q flags override it)."""

    level: Literal["debug", "info", "warning", "error"] = Field("info", description="Log level.")


# --- MQTT (Home Assistant) ------------------------------------------------------------------------
#: Host names and addresses that mqtt:// (no TLS) may reach: the machine itself.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    import ipaddress

    if host.lower() in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class MqttConfig(_Section):
    """Optional reporting to Home Assistant over MQTT (off while ``url`` is empty)."""

    url: str | None = Field(
        None, description="Broker: 'unix:///run/mosquitto/mosquitto.sock', 'mqtt://127.0.0.1:1883' "
                          "(no TLS: loopback only) or 'mqtts://host:8883' (TLS, needs ca_file); "
                          "empty means MQTT is off.")
    door_id: str | None = Field(
        None, pattern=r"^[a-zA-Z0-9_-]{1,64}$",
        description="This door's id in topics and entity ids (letters, digits, _ and -); by "
                    "convention also its broker user name.")
    name: str | None = Field(None, max_length=64, description="Display name in Home Assistant; "
                                                              "empty means the door_id.")
    base_topic: str = Field("avid", pattern=r"^[a-zA-Z0-9_-]+(/[a-zA-Z0-9_-]+)*$",
                            description="Topics are <base_topic>/<door_id>/...")
    discovery_prefix: str = Field("homeassistant", pattern=r"^[a-zA-Z0-9_-]+(/[a-zA-Z0-9_-]+)*$",
                                  description="Home Assistant's MQTT discovery prefix.")
    username: str | None = Field(None, max_length=128, description="Broker user; empty means the door_id.")
    password_file: Path | None = Field(
        None, description="File holding the broker password; empty means the systemd credential "
                          "$CREDENTIALS_DIRECTORY/avid-mqtt-password if there is one, else no password.")
    ca_file: Path | None = Field(None, description="mqtts: CA certificate(s) that signed the broker's certificate.")
    cert_file: Path | None = Field(None, description="mqtts: optional client certificate (PEM).")
    key_file: Path | None = Field(None, description="mqtts: the client certificate's private key (PEM).")
    keepalive_seconds: int = Field(
        30, ge=5, le=3600, description="MQTT keepalive; the broker publishes 'offline' (the last will) "
                                       "about 1.5 times this long after avid vanishes without a word.")
    remote_unlock: bool = Field(
        False, description="Accept OPEN/UNLOCK/LOCK on <base>/<door_id>/lock/set. Off: the lock is "
                           "reported as a read-only sensor and no command is read.")
    remote_unlock_code_hash: str | None = Field(
        None, pattern=r"^scrypt\$[0-9]+\$[0-9]+\$[0-9]+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$",
        description="Optional: remote unlocks must carry the code whose hash this is "
                    "(make it with 'python -m daemon.publish hash-code').")
    remote_unlock_per_minute: int = Field(
        3, ge=1, le=60, description="Remote unlocks accepted per minute (refused codes count too).")

    @property
    def enabled(self) -> bool:
        """True when a broker is configured."""
        return bool(self.url)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        problem = mqtt_url_problem(value) if value else None
        if problem:
            raise ValueError(problem)
        return value or None


def mqtt_url_problem(url: str) -> str | None:
    """Why ``url`` is not an acceptable broker address, or None."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL: {exc}"
    if parts.scheme == "unix":
        if parts.netloc or not parts.path.startswith("/"):
            return "a Unix socket URL is unix:///absolute/path"
        return None
    if parts.scheme not in ("mqtt", "mqtts"):
        return "the scheme must be unix://, mqtt:// (loopback only) or mqtts://"
    if not parts.hostname:
        return "the URL names no host"
    if parts.path not in ("", "/") or parts.query or parts.username or parts.password:
        return "no path, query or credentials in the URL (use username and password_file)"
    if port == 0:
        return "port 0 is not a broker port"
    if parts.scheme == "mqtt" and not is_loopback(parts.hostname):
        return ("mqtt:// is unencrypted and only allowed to loopback; use mqtts:// with ca_file "
                "for another host")
    return None


def mqtt_problems(mqtt: dict) -> list[tuple[str, str]]:
    """Rules of the ``mqtt`` section that involve several keys, as (key path, message)."""
    from urllib.parse import urlsplit

    url = mqtt.get("url")
    if not isinstance(url, str) or not url:
        return []
    problems = []
    if not mqtt.get("door_id"):
        problems.append(("mqtt.door_id", "MQTT needs a door_id (letters, digits, _ and -)"))
    try:
        parts = urlsplit(url)
    except ValueError:
        return problems
    if parts.scheme == "mqtts" and not mqtt.get("ca_file"):
        problems.append(("mqtt.ca_file", "mqtts:// needs ca_file (the CA that signed the broker's certificate)"))
    if parts.scheme != "mqtts" and any(mqtt.get(k) for k in ("ca_file", "cert_file", "key_file")):
        problems.append(("mqtt.url", "ca_file, cert_file and key_file need an mqtts:// URL"))
    if bool(mqtt.get("cert_file")) != bool(mqtt.get("key_file")):
        problems.append(("mqtt.cert_file", "a client certificate needs both cert_file and key_file"))
    if mqtt.get("remote_unlock") is True and parts.scheme == "mqtt" \
            and not is_loopback(parts.hostname or ""):
        problems.append(("mqtt.remote_unlock", "remote unlock is refused over an unencrypted connection "
                                               "to anything but loopback (use mqtts:// or unix://)"))
    if mqtt.get("remote_unlock_code_hash") and mqtt.get("remote_unlock") is not True:
        problems.append(("mqtt.remote_unlock_code_hash", "a code is only used with remote_unlock: true"))
    return problems
class ControlConfig(_Section):
    """The local control socket: ``avid status/enroll/delete/list/lockout`` ask the running door."""

    enabled: bool = Field(True, description="Serve the control socket while the door runs.")
    socket_path: Path = Field(
        Path("/run/avid/control.sock"),
        description="The AF_UNIX socket, in the unit's RuntimeDirectory; never on the network. The "
                    "CLI finds the running daemon here.")
    admin_group: str = Field(
        "avid-admin", pattern=r"^[a-z_][a-z0-9_-]{0,31}$",
        description="Members of this group may administer through the socket, besides root and "
                    "the daemon's own user.")
    max_clients: int = Field(4, ge=1, le=32, description="Connections served at once; more are told busy.")
    read_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="Time allowed for one request to arrive; an idle or slow "
                                        "client is answered 'timeout' and disconnected.")
    live_enrolment_timeout_seconds: float = Field(
        300.0, ge=10, le=3600, description="Longest live enrolment; then it is cancelled and the "
                                           "door resumes.")

    @field_validator("socket_path")
    @classmethod
    def _absolute_short_path(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError("must be an absolute path")
        if len(os.fsencode(value)) > 107:
            raise ValueError("longer than the 107 bytes an AF_UNIX socket address holds")
        return value


class WebConfig(_Section):
    """The installer's web page (``avid web``), a client of the control socket."""

    host: str = Field(
        "127.0.0.1", min_length=1, max_length=253,
        description="Address to listen on. Loopback (the default) is reached with 'ssh -L'; any "
                    "other address needs tls_cert_file and tls_key_file.")
    port: int = Field(8080, ge=1, le=65535, description="TCP port.")
    tls_cert_file: Path | None = Field(None, description="TLS certificate chain (PEM); empty means plain HTTP.")
    tls_key_file: Path | None = Field(None, description="The certificate's private key (PEM).")
    allowed_hosts: list[str] = Field(
        [], max_length=16,
        description="Host names the browser may use besides loopback and 'host' (the name in a "
                    "certificate, say); other Host headers are refused (DNS rebinding).")
    password_file: Path = Field(
        Path("/var/lib/avid-web/passwords"),
        description="Users and their scrypt password hashes, written by 'avid web-passwd'.")
    session_idle_minutes: float = Field(30.0, ge=1, le=1440,
                                        description="A session unused this long is logged out.")
    session_max_hours: float = Field(12.0, ge=0.1, le=168,
                                     description="A session ends this long after login whatever its use.")
    poll_seconds: float = Field(1.0, ge=0.2, le=10,
                                description="How often the page's live view asks the daemon for its status.")
    report_dir: Path | None = Field(
        None, description="An evaluation report folder (tools/evaluate.py --out: metrics.json, "
                          "det.png) shown on the calibration page; empty means none.")


def web_problems(web: dict) -> list[tuple[str, str]]:
    """Rules of the ``web`` section that involve several keys, as (key path, message)."""
    problems = []
    cert, key = web.get("tls_cert_file"), web.get("tls_key_file")
    if bool(cert) != bool(key):
        problems.append(("web.tls_cert_file", "TLS needs both tls_cert_file and tls_key_file"))
    host = web.get("host", "127.0.0.1")
    if isinstance(host, str) and not is_loopback(host) and not (cert and key):
        problems.append(("web.host", f"listening on {host!r} (not loopback) needs TLS: set tls_cert_file "
                                     "and tls_key_file (tools/install.sh --web-bind makes a "
                                     "self-signed pair), or keep 127.0.0.1 and use ssh -L"))
    return problems


class Config(_Section):
    """The whole configuration of one door."""

    models: ModelsConfig = Field(default_factory=ModelsConfig, description=ModelsConfig.__doc__)
    state: StateConfig = Field(default_factory=StateConfig, description=StateConfig.__doc__)
    camera: CameraConfig = Field(
        default_factory=OpenCVCameraConfig,
        description="The frame source; 'backend' chooses it: 'opencv' (default) or 'replay'.")
    microphone: MicrophoneConfig = Field(
        default_factory=SoundDeviceMicrophoneConfig,
        description="The audio source; 'backend' chooses it: 'sounddevice' (default) or 'replay'.")
    vad: VadConfig = Field(default_factory=VadConfig, description=VadConfig.__doc__)
    attempt: AttemptConfig = Field(default_factory=AttemptConfig, description=AttemptConfig.__doc__)
    decision: DecisionConfig = Field(default_factory=DecisionConfig, description=DecisionConfig.__doc__)
    liveness: LivenessConfig = Field(default_factory=LivenessConfig, description=LivenessConfig.__doc__)
    prompt: PromptConfig = Field(default_factory=PromptConfig, description=PromptConfig.__doc__)
    challenge: ChallengeConfig = Field(default_factory=ChallengeConfig, description=ChallengeConfig.__doc__)
    lock: LockConfig = Field(default_factory=LockConfig, description=LockConfig.__doc__)
    door: DoorConfig = Field(default_factory=DoorConfig, description=DoorConfig.__doc__)
    lockout: LockoutConfig = Field(default_factory=LockoutConfig, description=LockoutConfig.__doc__)
    watchdog: WatchdogConfig = Field(default_factory=WatchdogConfig, description=WatchdogConfig.__doc__)
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description=LoggingConfig.__doc__)
    mqtt: MqttConfig = Field(default_factory=MqttConfig, description=MqttConfig.__doc__)
    control: ControlConfig = Field(default_factory=ControlConfig, description=ControlConfig.__doc__)
    web: WebConfig = Field(default_factory=WebConfig, description=WebConfig.__doc__)

    @property
    def state_dir(self) -> Path:
        """The state folder, with ``AVID_STATE_DIR`` taking precedence."""
        override = os.environ.get(STATE_DIR_ENV)
        return Path(override) if override else self.state.directory

    @property
    def calibration_path(self) -> Path:
        """Where the calibration file is read from and written to."""
        return self.decision.calibration_file or self.state_dir / "calibration.json"


@dataclass(frozen=True)
class ConfigProblem:
    """One problem found in a config file."""

    path: str
    message: str
    value: Any = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        shown = "" if self.value is None else f" (got {_short_repr(self.value)})"
        return f"{where}{_printable(self.path) or '<top level>'}: {_printable(self.message)}{shown}"


_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlist, _REPR.maxdict, _REPR.maxlevel = 200, 200, 4, 4, 2


def _short_repr(value: Any) -> str:
    """A bounded repr: a report line never grows with the size of the offending value."""
    return _REPR.repr(value)


def _code_point(character: int | str) -> int:
    return character if isinstance(character, int) else ord(character[:1] or "\0")


def _printable(text: str) -> str:
    """``text`` with control characters escaped, so that each problem stays on one report line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class InvalidConfig(ConfigError):
    """A config file with one or more problems; ``problems`` lists all of them."""

    def __init__(self, source: str, problems: list[ConfigProblem]):
        self.source = source
        self.problems = problems
        super().__init__(self.report())

    def report(self) -> str:
        """A human report: one line per problem."""
        lines = [f"{self.source}: {len(self.problems)} error(s) in the configuration:"]
        lines += [f"  - {p}" for p in self.problems]
        lines.append("avid will not start with this configuration (the door stays locked).")
        return "\n".join(lines)


def _line_index(text: str) -> dict[tuple, int]:
    """Map key paths to 1-based line numbers by walking the YAML node tree."""
    index: dict[tuple, int] = {}
    entered: set[int] = set()

    def walk(node, path):
        # An alias can make the node graph cyclic ("a: &x [*x]"): enter each node once.
        if id(node) in entered:
            return
        entered.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                child = path + (str(key_node.value),)
                index[child] = key_node.start_mark.line + 1
                walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                index[path + (i,)] = item.start_mark.line + 1
                walk(item, path + (i,))

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        if root is not None:
            walk(root, ())
    except (yaml.YAMLError, RecursionError):
        pass
    return index


def _walk(loc: tuple) -> tuple[tuple, type[BaseModel]]:
    """The key path as the user wrote it for a pydantic error location, and the model holding its
    last key.

    pydantic adds steps that are not in the file: the backend after a backend-keyed section
    (``camera.replay.fps``) and the union branch after a field (``camera.opencv.device.int``).
    """
    model, path, i = Config, (), 0
    holder: type[BaseModel] = Config
    while i < len(loc):
        part = loc[i]
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return path + loc[i:], model  # an unknown key or a bad mapping key: already the user's
        holder, path, i = model, path + (part,), i + 1
        branches = backend_models(field.annotation)
        if branches:
            if i < len(loc) and loc[i] in branches:
                model, i = branches[loc[i]], i + 1
                continue
            return path, holder  # the section as a whole (e.g. an unknown backend)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            model = field.annotation
            continue
        return path + tuple(p for p in loc[i:] if isinstance(p, int)), holder
    return path, holder


def _merge_union_errors(errors: list[dict]) -> list[dict]:
    """One error per key: a value that fits no branch of ``int | str`` is one mistake, not two."""
    merged: dict[tuple, dict] = {}
    for error in errors:
        loc, holder = _walk(tuple(error["loc"]))
        if loc in merged and loc != tuple(error["loc"]):
            first = merged[loc]
            extra = error["msg"].removeprefix("Input should be ")
            first["msg"] = f"{first['msg']} or {extra}"
            continue
        merged.setdefault(loc, dict(error, loc=loc, model=holder))
    return list(merged.values())


def _backend_of(model: type[BaseModel] | None) -> str | None:
    """The backend name a backend's model is tagged with, ``None`` for an ordinary section."""
    field = (model.model_fields if model else {}).get("backend")
    names = get_args(field.annotation) if field is not None else ()
    return names[0] if len(names) == 1 else None


def _unknown_key_message(loc: tuple, model: type[BaseModel] | None) -> str:
    key, known = str(loc[-1]), list(model.model_fields) if model else []
    backend = _backend_of(model)
    if backend is not None and len(loc) == 2:
        # A key of another backend of the same section is a backend mix-up, not a typo.
        owners = [name for name, other in backend_models(Config.model_fields[loc[0]].annotation).items()
                  if name != backend and key in other.model_fields]
        if owners:
            return (f"not a setting of the '{backend}' {loc[0]} backend (it belongs to "
                    f"{' and '.join(repr(o) for o in owners)})")
    guess = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    return "unknown key" + (f"; did you mean '{guess[0]}'?" if guess else
                            f"; known keys here: {', '.join(known)}" if known else "")


def _problem_from(error: dict, lines: dict[tuple, int]) -> ConfigProblem:
    loc = tuple(error["loc"])
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    value = error.get("input")
    model = error.get("model")
    if error["type"] == "extra_forbidden":
        message = _unknown_key_message(loc, model)
    elif error["type"] == "union_tag_invalid":
        # An unknown backend: reported at the 'backend' key, worded like any other choice.
        loc += ("backend",)
        expected = error["ctx"]["expected_tags"].rsplit(", ", 1)
        message = "Input should be " + " or ".join(expected)
        value = value.get("backend") if isinstance(value, dict) else None
    elif error["type"] == "model_type":
        # pydantic names the model class (OpenCVCameraConfig), which is not in the file.
        message = "should be a mapping of settings (key: value lines below the section name)"
    elif error["type"] == "missing":
        value = None
        backend = _backend_of(model)
        field = model.model_fields.get(str(loc[-1])) if model else None
        if backend is not None and field is not None:
            what = field.description or ""
            message = f"missing: the '{backend}' {loc[0]} backend needs it; {what[:1].lower()}{what[1:]}"
    if isinstance(value, dict):
        value = None  # a whole section is noise in a one-line report
    line = None
    for end in range(len(loc), 0, -1):
        line = lines.get(loc[:end])
        if line:
            break
    return ConfigProblem(".".join(str(p) for p in loc), message, value, line)


class _TooLarge(Exception):
    pass


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that stops composing after :data:`MAX_CONFIG_NODES` distinct nodes, so that a
    long flat list costs no more time than a real config (the pure-Python parser is slow)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._composed = 0

    def compose_node(self, parent, index):
        self._composed += 1
        if self._composed > MAX_CONFIG_NODES:
            raise _TooLarge
        return super().compose_node(parent, index)


class _SelfReference(Exception):
    pass


def _expanded_nodes(root: yaml.Node, limit: int) -> int:
    """How many nodes ``root`` stands for with every alias expanded, counted up to ``limit + 1``.

    Each distinct node is visited once (aliases share node objects), so a file that would expand
    to billions of nodes is measured in the time it takes to read it.
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise _SelfReference
        active.add(key)
        total = 1
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = []
        for child in children:
            total += size(child)
            if total > limit:
                total = limit + 1
                break
        active.discard(key)
        sizes[key] = total
        return total

    return size(root)


def _duplicate_keys(root: yaml.Node) -> list[ConfigProblem]:
    """A problem for every key that appears twice in one mapping (YAML keeps only the last)."""
    problems, entered = [], set()

    def walk(node, path):
        if id(node) in entered:
            return
        entered.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple, int] = {}
            for key_node, value_node in node.value:
                child = path + (str(key_node.value),)
                if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                    identity = (key_node.tag, key_node.value)
                    line = key_node.start_mark.line + 1
                    if identity in seen:
                        problems.append(ConfigProblem(
                            ".".join(child), f"duplicate key (first given on line {seen[identity]}); "
                                             "YAML would silently keep only the last one", None, line))
                    else:
                        seen[identity] = line
                walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (str(i),))

    walk(root, ())
    return problems


def load_yaml(text: str, source: str) -> tuple[Any, list[ConfigProblem]]:
    """Parse YAML text, refusing alias bombs and self-references before anything is built.

    Returns the data and the duplicate-key problems (reported with every other problem).
    """
    too_many = InvalidConfig(source, [ConfigProblem(
        "", f"the document expands to more than {MAX_CONFIG_NODES} values (YAML aliases used over "
            "and over, or a huge list?); a configuration has fewer than 100")])
    loader = _BoundedLoader(text)
    try:
        try:
            root = loader.get_single_node()
        except _TooLarge:
            raise too_many from None
        if root is None:
            return None, []
        try:
            nodes = _expanded_nodes(root, MAX_CONFIG_NODES)
        except _SelfReference:
            raise InvalidConfig(source, [ConfigProblem(
                "", "a value refers to itself (recursive YAML alias)")]) from None
        if nodes > MAX_CONFIG_NODES:
            raise too_many
        duplicates = _duplicate_keys(root)
        return loader.construct_document(root), duplicates
    finally:
        loader.dispose()


def parse_config(text: str, source: str = "<config>") -> Config:
    """Validate YAML text and return the :class:`Config`, or raise :class:`InvalidConfig`.

    Every problem is reported: unknown and duplicate keys, out-of-range values, cross-field
    conflicts. A text that expands to more than :data:`MAX_CONFIG_NODES` values is refused at once.
    """
    try:
        data, duplicates = load_yaml(text, source)
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1 if isinstance(exc.position, int) else None
        raise InvalidConfig(source, [ConfigProblem(
            "", f"not valid YAML: {exc.reason} (character U+{_code_point(exc.character):04X})",
            None, line)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidConfig(source, [ConfigProblem(
            "", f"not valid YAML: {problem}", None, mark.line + 1 if mark else None)]) from None
    except RecursionError:
        raise InvalidConfig(source, [ConfigProblem("", "not valid YAML: nested too deeply")]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidConfig(source, [ConfigProblem(
            "", "the file must be a mapping of sections (camera:, microphone:, lock:, ...)",
            type(data).__name__, 1)])
    non_string = [k for k in data if not isinstance(k, str)]
    if non_string:
        raise InvalidConfig(source, [ConfigProblem("", "section names must be text", k) for k in non_string])
    cross_field = _cross_field_problems(data)
    errors, recursive, config = [], False, None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        errors = _merge_union_errors(exc.errors(include_url=False))
    except RecursionError:
        recursive = True
    if config is not None and not cross_field and not duplicates:
        return config
    # Only a file with problems is parsed a second time, for the line numbers.
    lines = _line_index(text)
    problems = [ConfigProblem(path, message, None, lines.get(tuple(path.split("."))))
                for path, message in cross_field]
    problems += [_problem_from(e, lines) for e in errors]
    problems += duplicates
    if recursive:
        # Aliases can build a self-containing value ("path: &x [*x]"); no setting is like that.
        problems.append(ConfigProblem("", "a value refers to itself (recursive YAML alias)"))
    problems.sort(key=lambda p: (p.line or 0, p.path))
    raise InvalidConfig(source, problems)


# Checks that involve several keys run on the raw data, so that they are reported together with
# every field error instead of only once the fields are valid.
def _cross_field_problems(data: dict) -> list[tuple[str, str]]:
    def section(name):
        value = data.get(name)
        return value if isinstance(value, dict) else {}

    problems = []
    prompt = section("prompt")
    for backend in ("speaker", "display"):
        if backend in prompt and prompt.get("backend") != backend:
            problems.append((f"prompt.{backend}", f"options for the {backend} backend, but "
                                                  f"backend is {prompt.get('backend', 'none')!r}"))
    challenge = section("challenge")
    digits, correct = challenge.get("digits", 4), challenge.get("min_correct", 3)
    if isinstance(digits, int) and isinstance(correct, int) and correct > digits:
        problems.append(("challenge.min_correct", f"{correct} is more than the {digits} digits asked"))
    decision = section("decision")
    if decision.get("face_weight") == 0 and decision.get("voice_weight") == 0:
        problems.append(("decision", "face_weight and voice_weight cannot both be 0"))
    problems += mqtt_problems(section("mqtt"))
    problems += web_problems(section("web"))
    problems += _shared_pin_problems(section("lock"), section("door"))
    return problems


def _shared_pin_problems(lock: dict, door: dict) -> list[tuple[str, str]]:
    """The relay, the door contact and the exit button each need a GPIO line of their own: gpiozero
    refuses a second device on a pin only at start-up, on the door."""
    relay = lock.get("relay_pin", LockConfig.model_fields["relay_pin"].default)
    pins = [("lock.relay_pin", relay), ("door.contact_pin", door.get("contact_pin")),
            ("door.exit_button_pin", door.get("exit_button_pin"))]
    problems, first_user = [], {}
    for key, pin in pins:
        if not isinstance(pin, int) or isinstance(pin, bool):
            continue
        if pin in first_user:
            problems.append((key, f"GPIO{pin} is already used by {first_user[pin]}; "
                                  "every device needs its own pin"))
        else:
            first_user[pin] = key
    return problems


def load_config(path: str | os.PathLike | None) -> Config:
    """Load and validate a config file; ``None`` gives the built-in defaults.

    Only a regular file of at most :data:`MAX_CONFIG_BYTES` is read. Relative paths in it (state,
    key, calibration, models, replay media) are taken relative to the file's folder.

    Raises :class:`InvalidConfig` (a :class:`ConfigError`) listing every problem.
    """
    from daemon.files import read_regular_file

    if path is None:
        return Config()
    path = Path(path)
    try:
        text = read_regular_file(path, MAX_CONFIG_BYTES).decode("utf-8")
    except AvidError as exc:
        raise InvalidConfig(str(path), [ConfigProblem("", f"cannot read the file: {exc}")]) from None
    except UnicodeDecodeError as exc:
        raise InvalidConfig(str(path), [ConfigProblem("", f"cannot read the file: not UTF-8 text ({exc.reason} "
                                                          f"at byte {exc.start})")]) from None
    config = parse_config(text, str(path))
    return _resolve_relative_paths(config, path.absolute().parent)


def _resolve_relative_paths(config: Config, base: Path) -> Config:
    """Make every path in the file relative to the config file's folder, as installers expect
    (a service's working directory is nobody's choice: /run/avid under systemd)."""
    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else (base / p)

    models = config.models.model_copy(update={"directory": fix(config.models.directory)})
    state = config.state.model_copy(update={"directory": fix(config.state.directory),
                                            "key_file": fix(config.state.key_file)})
    decision = config.decision.model_copy(update={"calibration_file": fix(config.decision.calibration_file)})
    speaker = config.prompt.speaker.model_copy(update={"sounds_directory": fix(config.prompt.speaker.sounds_directory)})
    prompt = config.prompt.model_copy(update={"speaker": speaker})
    return config.model_copy(update={"camera": config.camera.with_base(base),
                                     "microphone": config.microphone.with_base(base), "models": models,
                                     "state": state, "decision": decision, "prompt": prompt})


def environment_problems(config: Config) -> list[ConfigProblem]:
    """What ``avid run`` would fail on that can be checked without hardware.

    The state folder exists, is a folder and is writable by nobody but its owner; the key file,
    calibration file, models folder and replay media named in the config exist and are regular
    files (the models are checked against their manifest). Camera, microphone and GPIO are not
    opened.
    """
    problems: list[ConfigProblem] = []
    state_key = "state.directory" if not os.environ.get(STATE_DIR_ENV) else f"${STATE_DIR_ENV}"
    state_dir = config.state_dir
    problem = _folder_problem(state_dir)
    if problem:
        problems.append(ConfigProblem(state_key, problem, str(state_dir)))
    key_file = config.state.key_file
    if key_file is not None:
        problem = _regular_file_problem(key_file)
        if problem:
            problems.append(ConfigProblem("state.key_file", problem, str(key_file)))
    calibration = config.decision.calibration_file
    if calibration is not None:
        problem = _regular_file_problem(calibration)
        if problem:
            problems.append(ConfigProblem("decision.calibration_file", problem, str(calibration)))
    problems += _models_problems(config.models.directory)
    if config.camera.backend == "replay" and config.camera.path is not None \
            and not config.camera.path.is_dir():
        problem = _regular_file_problem(config.camera.path)
        if problem:
            problems.append(ConfigProblem("camera.path", problem, str(config.camera.path)))
    if config.microphone.backend == "replay":
        problems += _replay_audio_problems(config.microphone.paths)
    return problems


def check_environment(config: Config, source: str = "<config>") -> None:
    """Raise :class:`InvalidConfig` listing every :func:`environment_problems` (``avid check-config``
    exits 78 on it)."""
    problems = environment_problems(config)
    if problems:
        raise InvalidConfig(source, problems)


def _folder_problem(path: Path) -> str | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "the folder does not exist (create it, owned by the service user, mode 0700)"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if not stat.S_ISDIR(info.st_mode):
        return "is not a folder"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"is writable by others (mode {stat.S_IMODE(info.st_mode):04o}); "
                "templates and counters need a private folder (chmod 0700)")
    return None


def _regular_file_problem(path: Path) -> str | None:
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "the file does not exist"
    except OSError as exc:
        return f"cannot be read: {exc.strerror or exc}"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    return None


def _models_problems(directory: Path | None) -> list[ConfigProblem]:
    from daemon.inference.tflite import read_manifest, sha256_of

    if directory is None:
        return []
    folder = _folder_problem(directory)
    if folder and "writable by others" not in folder:
        return [ConfigProblem("models.directory", folder, str(directory))]
    try:
        models = read_manifest(directory)["models"]
    except (AvidError, OSError, TypeError) as exc:
        return [ConfigProblem("models.directory", f"cannot read manifest.json: {exc}", str(directory))]
    if not isinstance(models, dict):
        return [ConfigProblem("models.directory", "manifest.json has no table of models", str(directory))]
    problems = []
    for name, entry in sorted(models.items()):
        if not isinstance(entry, dict) or "file" not in entry:
            problems.append(ConfigProblem("models.directory", f"model {name}: no file in manifest.json"))
            continue
        model = directory / str(entry["file"])
        problem = _regular_file_problem(model)
        try:
            if problem is None and entry.get("sha256") and sha256_of(model) != entry["sha256"]:
                problem = "does not match the sha256 in manifest.json"
        except OSError as exc:
            problem = f"cannot be read: {exc.strerror or exc}"
        if problem:
            problems.append(ConfigProblem("models.directory", f"model {name}: {problem}", str(model)))
    return problems


def _replay_audio_problems(paths: list[Path]) -> list[ConfigProblem]:
    from daemon.capture.audio import wav_seconds

    problems = []
    for i, path in enumerate(paths):
        try:
            wav_seconds(path)
        except AvidError as exc:
            problems.append(ConfigProblem(f"microphone.paths.{i}", str(exc)))
    return problems


def summary(config: Config) -> str:
    """One line describing a valid configuration."""
    return (f"config OK: camera={config.camera.backend} microphone={config.microphone.backend} "
            f"lock={config.lock.pin_factory}:GPIO{config.lock.relay_pin} "
            f"unlock={config.lock.unlock_seconds:g}s liveness={'required' if config.liveness.required else 'off'} "
            f"missing_modality={config.decision.missing_modality} state={config.state_dir}"
            + (f" prompt={config.prompt.backend} challenge={config.challenge.digits}_digits"
               if config.prompt.challenge_on else
               " prompt=none (WARNING: no challenge: a replayed video of a resident is not stopped)"))


def exit_status(command, log) -> int:
    """Run ``command()`` and return its exit status, turning avid's errors into the statuses every
    entry point uses: an invalid config lists its problems and gives :data:`EX_CONFIG` (so does any
    other :class:`ConfigError`, e.g. an invalid calibration file), another :class:`AvidError` is
    logged and gives 1, an interrupt 130."""
    import sys

    try:
        return command()
    except InvalidConfig as exc:
        print(exc.report(), file=sys.stderr)
        return EX_CONFIG
    except ConfigError as exc:
        log.error("%s", exc)
        return EX_CONFIG
    except AvidError as exc:
        log.error("%s", exc)
        return 1
    except KeyboardInterrupt:
        return 130
