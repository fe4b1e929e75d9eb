"""The sd_notify client against a real AF_UNIX datagram socket standing in for systemd's."""

from __future__ import annotations

import logging
import os
import socket
import uuid

import pytest

from daemon.service.sdnotify import Notifier, watchdog_interval_s


@pytest.fixture
def systemd_socket(tmp_path):
    """A bound datagram socket in tmp_path, like /run/systemd/notify; yields (socket, its path)."""
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2.0)
    yield sock, str(path)
    sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode("utf-8")


def test_state_messages_reach_the_socket(systemd_socket):
    sock, path = systemd_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    assert notifier.ready()
    assert received(sock) == "READY=1"
    assert notifier.status("loading models")
    assert received(sock) == "STATUS=loading models"
    assert notifier.watchdog()
    assert received(sock) == "WATCHDOG=1"
    assert notifier.stopping()
    assert received(sock) == "STOPPING=1"


def test_status_is_kept_on_one_line(systemd_socket):
    sock, path = systemd_socket
    Notifier({"NOTIFY_SOCKET": path}).status("camera lost\nretrying")
    assert received(sock) == "STATUS=camera lost retrying"


def test_abstract_socket_name():
    name = f"avid-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2.0)
    try:
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert notifier.ready()
        assert received(sock) == "READY=1"
    finally:
        sock.close()


def test_no_notify_socket_is_a_silent_no_op(caplog):
    notifier = Notifier({})
    with caplog.at_level(logging.WARNING):
        assert not notifier.enabled
        assert notifier.ready() is False
        assert notifier.watchdog() is False
        assert notifier.status("x") is False
        assert notifier.stopping() is False
        assert notifier.watchdog_interval_s() is None
        notifier.close()
    assert caplog.records == []


def test_send_failure_never_raises_and_warns_once(tmp_path, caplog):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with caplog.at_level(logging.DEBUG, logger="daemon.service.sdnotify"):
        assert notifier.ready() is False
        assert notifier.watchdog() is False
        assert notifier.watchdog() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "nobody-listens" in warnings[0].getMessage()


def test_close_is_idempotent_and_silences_the_notifier(systemd_socket):
    sock, path = systemd_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.watchdog()
    assert received(sock) == "WATCHDOG=1"
    notifier.close()
    notifier.close()
    assert not notifier.enabled
    assert notifier.watchdog() is False
    sock.settimeout(0.1)
    with pytest.raises(socket.timeout):
        sock.recv(4096)


def test_context_manager_closes(systemd_socket):
    _, path = systemd_socket
    with Notifier({"NOTIFY_SOCKET": path}) as notifier:
        assert notifier.enabled
    assert not notifier.enabled


def test_watchdog_interval_from_environment():
    own_pid = str(os.getpid())
    assert watchdog_interval_s({"WATCHDOG_USEC": "10000000"}) == 10.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "2500000", "WATCHDOG_PID": own_pid}) == 2.5
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None


def test_watchdog_meant_for_another_process_is_ignored():
    other_pid = str(os.getpid() + 1)
    assert watchdog_interval_s({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": other_pid}) is None


def test_notifier_reports_the_interval_only_under_systemd(systemd_socket):
    _, path = systemd_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "8000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(env).watchdog_interval_s() == 8.0
    assert Notifier({"WATCHDOG_USEC": "8000000"}).watchdog_interval_s() is None


def test_reads_os_environ_by_default(systemd_socket, monkeypatch):
    sock, path = systemd_socket
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    notifier = Notifier()
    assert notifier.watchdog_interval_s() == 4.0
    assert notifier.ready()
    assert received(sock) == "READY=1"


def test_unencodable_status_text_is_sent_not_raised(systemd_socket):
    sock, path = systemd_socket
    assert Notifier({"NOTIFY_SOCKET": path}).status("camera \udcff lost")
    assert received(sock) == "STATUS=camera ? lost"
