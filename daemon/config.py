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
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from daemon.errors import ConfigError

#: Conventional exit status for a configuration error (sysexits.h EX_CONFIG).
EX_CONFIG = 78

#: Environment variable that overrides ``state.directory``.
STATE_DIR_ENV = "AVID_STATE_DIR"


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


class CameraConfig(_Section):
    """The frame source."""

    backend: Literal["opencv", "replay"] = Field(
        "opencv", description="'opencv': a camera by index or device path; "
                              "'replay': a video file or a folder of images.")
    device: int | str = Field(0, description="OpenCV camera index (0) or device path (/dev/video0).")
    path: Path | None = Field(None, description="Replay: a video file or a folder of images.")
    width_px: int = Field(640, ge=64, le=4096, description="Requested frame width in pixels.")
    height_px: int = Field(480, ge=48, le=4096, description="Requested frame height in pixels.")
    fps: float = Field(15.0, gt=0, le=60, description="Frames per second to process.")
    read_timeout_seconds: float = Field(
        2.0, gt=0, le=30, description="A read that gives no frame for this long counts as a fault.")
    realtime: bool = Field(True, description="Replay: pace frames at fps (false: as fast as possible).")
    loop: bool = Field(False, description="Replay: start again at the end instead of stopping.")


class MicrophoneConfig(_Section):
    """The audio source."""

    backend: Literal["sounddevice", "replay"] = Field(
        "sounddevice", description="'sounddevice': a PortAudio input; 'replay': WAV files.")
    device: int | str | None = Field(
        None, description="sounddevice input device name or index; empty means the default input.")
    paths: list[Path] = Field(
        default_factory=list, description="Replay: WAV files (16-bit PCM) played one after another.")
    sample_rate_hz: Literal[8000, 16000, 32000, 48000] = Field(
        16000, description="Capture sample rate; the encoders run at 16000 Hz (others are resampled).")
    block_ms: Literal[10, 20, 30] = Field(
        30, description="Audio block length, also the VAD frame length (webrtcvad allows 10/20/30).")
    read_timeout_seconds: float = Field(
        2.0, gt=0, le=30, description="A read that gives no audio for this long counts as a fault.")
    realtime: bool = Field(True, description="Replay: pace audio in real time (false: as fast as possible).")
    gap_seconds: float = Field(
        0.0, ge=0, le=60, description="Replay: silence inserted between files.")


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
    camera: CameraConfig = Field(default_factory=CameraConfig, description=CameraConfig.__doc__)
    microphone: MicrophoneConfig = Field(default_factory=MicrophoneConfig, description=MicrophoneConfig.__doc__)
    vad: VadConfig = Field(default_factory=VadConfig, description=VadConfig.__doc__)
    attempt: AttemptConfig = Field(default_factory=AttemptConfig, description=AttemptConfig.__doc__)
    decision: DecisionConfig = Field(default_factory=DecisionConfig, description=DecisionConfig.__doc__)
    liveness: LivenessConfig = Field(default_factory=LivenessConfig, description=LivenessConfig.__doc__)
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
        shown = "" if self.value is None else f" (got {self.value!r})"
        return f"{where}{_printable(self.path) or '<top level>'}: {_printable(self.message)}{shown}"


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


def _fields_of(path: tuple) -> list[str]:
    model: type[BaseModel] = Config
    for part in path:
        field = model.model_fields.get(str(part))
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _key_path(loc: tuple) -> tuple:
    """``loc`` without the union-branch tags pydantic appends after a field ('int', 'str', ...)."""
    model: type[BaseModel] | None = Config
    for depth, part in enumerate(loc):
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return loc  # an unknown key or a bad mapping key: the location is already the user's
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
            continue
        return loc[:depth + 1] + tuple(p for p in loc[depth + 1:] if isinstance(p, int))
    return loc


def _merge_union_errors(errors: list[dict]) -> list[dict]:
    """One error per key: a value that fits no branch of ``int | str`` is one mistake, not two."""
    merged: dict[tuple, dict] = {}
    for error in errors:
        loc = _key_path(tuple(error["loc"]))
        if loc in merged and loc != tuple(error["loc"]):
            first = merged[loc]
            extra = error["msg"].removeprefix("Input should be ")
            first["msg"] = f"{first['msg']} or {extra}"
            continue
        merged.setdefault(loc, dict(error, loc=loc))
    return list(merged.values())


def _problem_from(error: dict, lines: dict[tuple, int]) -> ConfigProblem:
    loc = tuple(error["loc"])
    path = ".".join(str(p) for p in loc)
    message = error["msg"]
    if message.startswith("Value error, "):
        message = message[len("Value error, "):]
    value = error.get("input")
    if error["type"] == "extra_forbidden":
        known = _fields_of(loc[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        message = "unknown key" + (f"; did you mean '{guess[0]}'?" if guess else
                                   f"; known keys here: {', '.join(known)}" if known else "")
    elif error["type"] == "missing":
        value = None
    if isinstance(value, dict):
        value = None  # a whole section is noise in a one-line report
    line = None
    for end in range(len(loc), 0, -1):
        line = lines.get(loc[:end])
        if line:
            break
    return ConfigProblem(path, message, value, line)


def parse_config(text: str, source: str = "<config>") -> Config:
    """Validate YAML text and return the :class:`Config`, or raise :class:`InvalidConfig`."""
    try:
        data = yaml.safe_load(text)
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
    if config is not None and not cross_field:
        return config
    # Only a file with problems is parsed a second time, for the line numbers.
    lines = _line_index(text)
    problems = [ConfigProblem(path, message, None, lines.get(tuple(path.split("."))))
                for path, message in cross_field]
    problems += [_problem_from(e, lines) for e in errors]
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
    camera, microphone = section("camera"), section("microphone")
    if camera.get("backend") == "replay" and not camera.get("path"):
        problems.append(("camera", "the replay backend needs 'path' (a video file or a folder of images)"))
    if microphone.get("backend") == "replay" and not microphone.get("paths"):
        problems.append(("microphone", "the replay backend needs 'paths' (one or more WAV files)"))
    decision = section("decision")
    if decision.get("face_weight") == 0 and decision.get("voice_weight") == 0:
        problems.append(("decision", "face_weight and voice_weight cannot both be 0"))
    problems += mqtt_problems(section("mqtt"))
    problems += web_problems(section("web"))
    return problems


def load_config(path: str | os.PathLike | None) -> Config:
    """Load and validate a config file; ``None`` gives the built-in defaults.

    Raises :class:`InvalidConfig` (a :class:`ConfigError`) listing every problem.
    """
    if path is None:
        return Config()
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidConfig(str(path), [ConfigProblem("", f"cannot read the file: {exc}")]) from None
    config = parse_config(text, str(path))
    return _resolve_relative_paths(config, path.parent)


def _resolve_relative_paths(config: Config, base: Path) -> Config:
    """Make replay and model paths relative to the config file's folder, as installers expect."""
    def fix(p: Path | None) -> Path | None:
        return p if p is None or p.is_absolute() else (base / p)

    camera = config.camera.model_copy(update={"path": fix(config.camera.path)})
    microphone = config.microphone.model_copy(update={"paths": [fix(p) for p in config.microphone.paths]})
    models = config.models.model_copy(update={"directory": fix(config.models.directory)})
    return config.model_copy(update={"camera": camera, "microphone": microphone, "models": models})


def summary(config: Config) -> str:
    """One line describing a valid configuration."""
    return (f"config OK: camera={config.camera.backend} microphone={config.microphone.backend} "
            f"lock={config.lock.pin_factory}:GPIO{config.lock.relay_pin} "
            f"unlock={config.lock.unlock_seconds:g}s liveness={'required' if config.liveness.required else 'off'} "
            f"missing_modality={config.decision.missing_modality} state={config.state_dir}")
