"""The control server: a Unix socket in the runtime directory, authorised from SO_PEERCRED.

One *accept* thread (``avid-control``) authorises every connection from the kernel's record of the
peer (uid, gid and supplementary groups at ``connect()``) before it reads a single byte: root, the
daemon's own user and members of the admin group may administer; anyone else gets one
``unauthorised`` line and is disconnected. Each admitted connection has its own thread, at most
``max_clients`` at once, reading newline-delimited requests with a deadline per line and a size
limit, and calling the :class:`~daemon.control.api.DoorAdmin` from that thread, never from the
capture loop's. Every administrative request is logged with the caller's user name and outcome.

The socket file is mode 0666: who may administer is decided from the credentials, not the file mode,
so that a refusal is answered and logged rather than silently denied by the kernel.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import select
import socket
import stat
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from daemon.control import protocol
from daemon.control.protocol import (ControlError, ControlTimeout, ProtocolError, error_reply,
                                     ok_reply, parse_request, progress_event)
from daemon.errors import AvidError, EnrolmentError, StoreError

log = logging.getLogger(__name__)

#: ``SO_PEERGROUPS`` (Linux 4.13); Python names it only on some builds.
SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
#: CPython's getsockopt() reads at most 1024 bytes: 256 groups.
_MAX_PEER_GROUPS_BYTES = 1024
#: Longest path an AF_UNIX address holds (sun_path is 108 bytes with its NUL).
MAX_SOCKET_PATH_BYTES = 107
WRITE_TIMEOUT_SECONDS = 5.0
_ACCEPT_POLL_SECONDS = 0.2
_RECV_BYTES = 1 << 20


@dataclass(frozen=True)
class Peer:
    """Who is at the other end of a connection, as the kernel recorded it at ``connect()``.

    ``groups`` are the supplementary group ids from ``SO_PEERGROUPS``, or None if the kernel did
    not give them.
    """

    pid: int
    uid: int
    gid: int
    groups: tuple[int, ...] | None
    user: str


def peer_of(conn: socket.socket) -> Peer:
    """The credentials of a connected AF_UNIX peer (``SO_PEERCRED``, ``SO_PEERGROUPS``)."""
    pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                        struct.calcsize("3i")))
    try:
        raw = conn.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, _MAX_PEER_GROUPS_BYTES)
        groups = tuple(struct.unpack(f"{len(raw) // 4}I", raw[:len(raw) // 4 * 4]))
    except OSError:  # ERANGE (more than 256 groups) or an old kernel: fall back to the group file
        groups = None
    return Peer(pid, uid, gid, groups, user_name(uid))


def user_name(uid: int) -> str:
    """The login name of ``uid``, or the number when it has none."""
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return str(uid)


def _overflow_uid() -> int:
    try:
        return int(Path("/proc/sys/kernel/overflowuid").read_text())
    except (OSError, ValueError):
        return 65534


class Authoriser:
    """Decides from a :class:`Peer` whether it may administer the door.

    Allowed: uid 0, the daemon's own uid, and members of ``admin_group`` (primary group, or
    supplementary groups as the kernel recorded them, else as ``/etc/group`` lists them). A peer
    whose uid is the kernel's *overflow* uid is someone the daemon's user namespace does not map
    (systemd's ``PrivateUsers=yes``): its real identity is unknown here, so it is refused.
    """

    def __init__(self, admin_group: str, own_uid: int | None = None):
        self.admin_group = admin_group
        self.own_uid = os.geteuid() if own_uid is None else own_uid
        self.overflow_uid = _overflow_uid()

    def refusal(self, peer: Peer) -> str | None:
        """None if ``peer`` may administer, else the reason it may not."""
        if peer.uid == 0:
            return None
        if peer.uid == self.overflow_uid:
            return ("the caller's user is not mapped in the daemon's user namespace "
                    "(PrivateUsers=yes in the unit): run the command with sudo")
        if peer.uid == self.own_uid:
            return None
        try:
            admin_gid = grp.getgrnam(self.admin_group).gr_gid  # looked up each time: groupadd after start
        except KeyError:
            return f"not root, and the admin group {self.admin_group!r} does not exist"
        groups = peer.groups
        if groups is None:
            try:
                groups = tuple(os.getgrouplist(pwd.getpwuid(peer.uid).pw_name, peer.gid))
            except (KeyError, OSError):
                groups = ()
        if admin_gid == peer.gid or admin_gid in groups:
            return None
        return f"not root and not a member of the group {self.admin_group!r}"


class _LineReader:
    """Reads newline-terminated lines from a socket with a deadline per line and a size limit."""

    def __init__(self, conn: socket.socket, max_bytes: int, clock: Callable[[], float]):
        self._conn, self._max, self._clock = conn, max_bytes, clock
        self._buffer = bytearray()

    def read_line(self, timeout_s: float) -> bytes | None:
        """The next line without its newline; None when the peer closed the connection."""
        deadline = self._clock() + timeout_s
        scanned = 0
        while True:
            end = self._buffer.find(b"\n", scanned)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[:end + 1]
                return line
            scanned = len(self._buffer)  # only new bytes are searched: a 12 MB line stays linear
            if scanned > self._max:
                raise ProtocolError(f"request longer than {self._max} bytes", "too_large")
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ControlTimeout(f"no complete request within {timeout_s:g} s")
            self._conn.settimeout(remaining)
            try:
                chunk = self._conn.recv(_RECV_BYTES)
            except socket.timeout:
                raise ControlTimeout(f"no complete request within {timeout_s:g} s") from None
            if not chunk:
                return None
            self._buffer += chunk


class ControlServer:
    """Serves the control protocol for ``admin`` on the AF_UNIX socket ``path``.

    :param admin: the door (:class:`~daemon.control.api.DoorAdmin`)
    :param path: the socket file; its folder must exist (systemd's ``RuntimeDirectory=``)
    :param admin_group: members of this group may administer, besides root and the daemon's user
    :param max_clients: connections served at once; more are answered ``busy``
    :param read_timeout_s: time allowed for each request line to arrive (and for an idle client)
    :param live_timeout_s: longest live enrolment; then it is cancelled and answered ``timeout``
    :param authoriser: replaces the credential check (tests use it to play another user)
    """

    def __init__(self, admin, path: str | os.PathLike, admin_group: str = "avid-admin",
                 max_clients: int = 4, read_timeout_s: float = 10.0, live_timeout_s: float = 300.0,
                 max_line_bytes: int = protocol.MAX_LINE_BYTES, authoriser: Authoriser | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.admin = admin
        self.path = Path(path)
        if len(os.fsencode(self.path)) > MAX_SOCKET_PATH_BYTES:
            raise ControlError(f"control socket path {self.path} is longer than "
                               f"{MAX_SOCKET_PATH_BYTES} bytes")
        self.authoriser = authoriser or Authoriser(admin_group)
        self.read_timeout_s, self.live_timeout_s = read_timeout_s, live_timeout_s
        self._max_line = max_line_bytes
        self._clock = clock
        self._slots = threading.BoundedSemaphore(max_clients)
        self._closing = threading.Event()
        self._listener: socket.socket | None = None
        self._inode: tuple[int, int] | None = None
        self._accept_thread: threading.Thread | None = None
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._guard = threading.Lock()
        self._closed = False

    # --- life cycle ----------------------------------------------------------------------------
    def start(self) -> "ControlServer":
        """Bind the socket (replacing a stale one) and start accepting; returns self.

        :raises ControlError: if another daemon listens there, or the socket cannot be made
        """
        self._remove_stale_socket()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            listener.bind(str(self.path))
            # Permissions are decided per connection from its credentials (see the module doc).
            os.chmod(self.path, 0o666)
            info = os.stat(self.path)
            listener.listen(16)
            listener.settimeout(_ACCEPT_POLL_SECONDS)
        except OSError as exc:
            listener.close()
            raise ControlError(f"cannot listen on the control socket {self.path}: {exc}") from exc
        self._listener, self._inode = listener, (info.st_dev, info.st_ino)
        self._accept_thread = threading.Thread(target=self._accept_loop, name="avid-control", daemon=True)
        self._accept_thread.start()
        log.info("control socket listening on %s (admin group %s)", self.path, self.authoriser.admin_group)
        return self

    def _remove_stale_socket(self) -> None:
        try:
            info = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(info.st_mode):
            raise ControlError(f"{self.path} exists and is not a socket; not replacing it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(self.path)  # left by a daemon that died
            return
        except OSError as exc:
            raise ControlError(f"cannot check the existing control socket {self.path}: {exc}") from exc
        finally:
            probe.close()
        raise ControlError(f"another daemon is listening on {self.path}: is avid already running?")

    def close(self) -> None:
        """Stop accepting, disconnect every client (cancelling a live enrolment), remove the
        socket file; idempotent."""
        with self._guard:
            if self._closed:
                return
            self._closed = True
            self._closing.set()
            connections = list(self._connections.items())
        for conn, _ in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=2.0)
        for _, thread in connections:
            thread.join(timeout=2.0)
        if self._listener is not None:
            self._listener.close()
            try:
                info = os.stat(self.path)
                if (info.st_dev, info.st_ino) == self._inode:  # never remove a successor's socket
                    os.unlink(self.path)
            except OSError:
                pass

    @property
    def client_count(self) -> int:
        """How many clients are connected and hold a slot now."""
        with self._guard:
            return len(self._connections)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # --- connections ---------------------------------------------------------------------------
    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError as exc:
                if self._closing.is_set():
                    return
                log.error("control socket: accept failed: %s", exc)
                self._closing.wait(0.5)  # bounded back-off (e.g. out of file descriptors)
                continue
            try:
                self._admit(conn)
            except Exception:  # one bad connection must not stop the server
                log.exception("control socket: cannot admit a connection")
                conn.close()

    def _admit(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        peer = peer_of(conn)
        why = self.authoriser.refusal(peer)
        if why is not None:
            log.warning("control: user=%s uid=%d pid=%d refused: %s", peer.user, peer.uid, peer.pid, why)
            self._send_and_close(conn, error_reply(None, "unauthorised", f"not authorised: {why}"))
            return
        if not self._slots.acquire(blocking=False):
            log.warning("control: user=%s refused: busy (all client slots taken)", peer.user)
            self._send_and_close(conn, error_reply(None, "busy", "too many control clients; try again"))
            return
        thread = threading.Thread(target=self._serve, args=(conn, peer), name="avid-control-client",
                                  daemon=True)
        with self._guard:
            if self._closed:
                self._slots.release()
                conn.close()
                return
            self._connections[conn] = thread
        thread.start()

    def _send_and_close(self, conn: socket.socket, data: bytes) -> None:
        try:
            conn.settimeout(0.5)
            conn.sendall(data)
        except OSError:
            pass
        finally:
            conn.close()

    def _serve(self, conn: socket.socket, peer: Peer) -> None:
        reader = _LineReader(conn, self._max_line, self._clock)
        try:
            while not self._closing.is_set():
                try:
                    line = reader.read_line(self.read_timeout_s)
                except ControlError as exc:  # too long, or too slow: the framing is lost
                    log.warning("control: user=%s request dropped: %s", peer.user, exc)
                    self._send(conn, error_reply(None, exc.code, str(exc)))
                    return
                except OSError:
                    return
                if line is None or not self._handle(conn, peer, line):
                    return
        finally:
            conn.close()
            with self._guard:  # one step, so client_count never counts a freed slot as taken
                self._connections.pop(conn, None)
                self._slots.release()

    def _send(self, conn: socket.socket, data: bytes) -> bool:
        try:
            conn.settimeout(WRITE_TIMEOUT_SECONDS)
            conn.sendall(data)
            return True
        except OSError:
            return False

    def _handle(self, conn: socket.socket, peer: Peer, line: bytes) -> bool:
        """Answer one request line; False when the connection should close."""
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            log.warning("control: user=%s op=- outcome=%s (%s)", peer.user, exc.code, exc)
            return self._send(conn, error_reply(exc.request_id, exc.code, str(exc)))
        name = request.args.get("name", "-")
        started = self._clock()
        try:
            if request.op == "enrol_live":
                result = self._enrol_live(conn, request)
            else:
                result = self._call(request)
            reply = ok_reply(request.id, result)
            outcome, level = "ok", logging.INFO
        except ControlError as exc:
            reply, outcome, level = error_reply(request.id, exc.code, str(exc)), exc.code, logging.WARNING
        except (EnrolmentError, StoreError) as exc:
            reply, outcome, level = error_reply(request.id, "refused", str(exc)), "refused", logging.WARNING
        except AvidError as exc:
            reply, outcome, level = error_reply(request.id, "failed", str(exc)), "failed", logging.ERROR
        except Exception:
            log.exception("control: op=%s failed unexpectedly", request.op)
            reply, outcome, level = (error_reply(request.id, "internal", "internal error (see the journal)"),
                                     "internal", logging.ERROR)
        if request.op not in protocol.MUTATING_OPS and outcome == "ok":
            level = logging.DEBUG
        log.log(level, "control: user=%s uid=%d op=%s name=%s outcome=%s duration_ms=%.0f",
                peer.user, peer.uid, request.op, name, outcome, (self._clock() - started) * 1000)
        return self._send(conn, reply)

    def _call(self, request: protocol.Request):
        args, admin = request.args, self.admin
        if request.op == "status":
            result = admin.status()
        elif request.op == "list":
            result = {"people": admin.list_people()}
        elif request.op == "delete":
            result = {"deleted": bool(admin.delete_person(args["name"]))}
        elif request.op == "enrol_files":
            result = admin.enrol_files(args["name"], args["faces"], args["voices"], args["replace"], args["digits"])
        elif request.op == "lockout":
            result = admin.lockout()
        elif request.op == "clear_lockout":
            admin.clear_lockout()
            result = {"cleared": True}
        else:  # parse_request admits only the ops above
            raise ProtocolError(f"unknown op {request.op}")
        return result

    def _enrol_live(self, conn: socket.socket, request: protocol.Request):
        """Run a live enrolment, streaming progress; the client leaving or writing cancels it."""
        cancelled, done = threading.Event(), threading.Event()
        timed_out = threading.Event()
        send_lock = threading.Lock()

        def progress(event: dict) -> None:
            if cancelled.is_set():
                return
            try:
                line = progress_event(request.id, dict(event))
            except (TypeError, ValueError):
                log.error("control: progress event is not JSON-safe; dropped")
                return
            with send_lock:
                if not self._send(conn, line):
                    cancelled.set()

        def watch() -> None:
            deadline = self._clock() + self.live_timeout_s
            poller = select.poll()
            poller.register(conn.fileno(), select.POLLIN | select.POLLHUP | select.POLLERR)
            while not done.is_set():
                if self._closing.is_set():
                    cancelled.set()
                    return
                if self._clock() >= deadline:
                    timed_out.set()
                    cancelled.set()
                    return
                try:
                    if poller.poll(200):  # the client closed the connection or wrote: cancel
                        cancelled.set()
                        return
                except (OSError, ValueError):
                    cancelled.set()
                    return

        watcher = threading.Thread(target=watch, name="avid-control-watch", daemon=True)
        watcher.start()
        args = request.args
        try:
            return self.admin.enrol_live(args["name"], args["samples"], args["replace"], progress, cancelled,
                                         args["live_digits"])
        except ControlError:
            if timed_out.is_set():
                raise ControlTimeout(f"live enrolment ran longer than {self.live_timeout_s:g} s") from None
            raise
        finally:
            done.set()
            watcher.join(timeout=1.0)


def start_control_server(control, admin) -> ControlServer | None:
    """Start the server the ``control:`` config section describes, for ``admin``.

    Returns None (and logs why) when it is disabled, or when the socket's folder does not exist:
    under systemd ``RuntimeDirectory=avid`` creates ``/run/avid``; a door started by hand without
    it keeps working, and the CLI then works on the state directory.

    :raises ControlError: another daemon listens on the socket, or it cannot be created
    """
    if not control.enabled:
        log.info("control socket disabled in the config")
        return None
    if not control.socket_path.parent.is_dir():
        log.warning("control socket disabled: %s does not exist (systemd creates it with "
                    "RuntimeDirectory=avid)", control.socket_path.parent)
        return None
    return ControlServer(admin, control.socket_path, control.admin_group, control.max_clients,
                         control.read_timeout_seconds, control.live_enrolment_timeout_seconds).start()
