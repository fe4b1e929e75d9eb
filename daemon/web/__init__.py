"""``avid web``: the installer's web page, a separate process that is a client of the control socket.

The sub-command handlers (:func:`serve`, :func:`passwd`) are here; the app is :mod:`daemon.web.app`,
passwords and sessions :mod:`daemon.web.auth`, the control-socket side :mod:`daemon.web.doorlink`.
"""

from __future__ import annotations

import getpass
import logging
import os
import sys

from daemon.config import Config, is_loopback
from daemon.errors import AvidError, ConfigError

log = logging.getLogger(__name__)

#: Environment variable from which ``avid web-passwd`` reads the password (scripts, tests).
PASSWORD_ENV = "AVID_WEB_PASSWORD"


def serve(config: Config, args) -> int:
    """``avid web``: serve the page until SIGTERM/SIGINT; 0 on a clean stop."""
    try:
        import uvicorn

        from daemon.web.app import create_app
    except ImportError as exc:
        raise AvidError(f"avid web needs the 'web' extra (pip install 'avid[web]'): {exc}") from None
    from daemon.web.auth import check_password_file

    web = config.web
    # check-config already refuses this; a config built in code must not get around it.
    if not is_loopback(web.host) and not web.tls_cert_file:
        raise ConfigError(f"web.host {web.host!r} is not loopback and no TLS certificate is configured")
    check_password_file(web.password_file)
    for path in (web.tls_cert_file, web.tls_key_file):
        if path is not None and not path.is_file():
            raise ConfigError(f"web: TLS file {path} does not exist")
    scheme = "https" if web.tls_cert_file else "http"
    log.info("web: serving %s://%s:%d/ (control socket %s)", scheme, web.host, web.port,
             config.control.socket_path)
    server = uvicorn.Server(uvicorn.Config(
        create_app(config), host=web.host, port=web.port, log_config=None, access_log=False,
        ssl_certfile=str(web.tls_cert_file) if web.tls_cert_file else None,
        ssl_keyfile=str(web.tls_key_file) if web.tls_key_file else None,
        proxy_headers=False, server_header=False, timeout_graceful_shutdown=3))
    server.run()
    return 0 if server.started else 1


def passwd(config: Config, args) -> int:
    """``avid web-passwd [USER]``: set a web user's password (asked twice, or from $AVID_WEB_PASSWORD)."""
    from daemon.web.auth import set_password

    password = os.environ.get(PASSWORD_ENV)
    if password is None:
        if not sys.stdin.isatty():
            raise AvidError(f"no terminal to ask the password on: set {PASSWORD_ENV}")
        password = getpass.getpass(f"new web password for {args.user}: ")
        if getpass.getpass("again: ") != password:
            print("the passwords differ; nothing changed", file=sys.stderr)
            return 1
    set_password(config.web.password_file, args.user, password)
    log.info("web: password set for user=%s in %s", args.user, config.web.password_file)
    print(f"password set for {args.user} ({config.web.password_file})")
    return 0
