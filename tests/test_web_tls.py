"""`avid web` over TLS (a trustme CA): served over https only, HSTS, and the Origin check wants https."""

from __future__ import annotations

import json
import ssl
import urllib.parse

import pytest
import trustme

from web_harness import PASSWORD, WebProcess, free_port, http, set_password


def test_tls_page_logs_in_over_https_and_wants_an_https_origin(tmp_path):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "web.crt"))
    cert.private_key_pem.write_to_path(str(tmp_path / "web.key"))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(f"""
control: {{socket_path: {tmp_path / 'nobody.sock'}}}
web:
  port: {port}
  tls_cert_file: {tmp_path / 'web.crt'}
  tls_key_file: {tmp_path / 'web.key'}
  password_file: {tmp_path / 'passwords'}
""")
    assert set_password(config).returncode == 0
    with WebProcess(config, port, slim=True, scheme="https") as web:
        status, _, headers = http(f"{web.url}/login", context=context)
        assert status == 200 and headers["Strict-Transport-Security"].startswith("max-age=")
        with pytest.raises(Exception):  # noqa: B017 -- plain HTTP to a TLS port fails, whatever the error
            http(f"http://127.0.0.1:{port}/login")
        form = urllib.parse.urlencode({"user": "admin", "password": PASSWORD}).encode()
        status, _, headers = http(f"{web.url}/login", "POST", form, {
            "Origin": web.url, "Content-Type": "application/x-www-form-urlencoded"}, context=context)
        assert status == 303, status
        set_cookie = headers["Set-Cookie"]
        assert all(flag in set_cookie for flag in ("HttpOnly", "Secure", "SameSite=strict")), set_cookie
        session = set_cookie.split(";")[0]
        # The same host and port over http is another origin.
        assert http(f"{web.url}/api/lockout/clear", "POST", b"", {
            "Cookie": session, "Origin": f"http://127.0.0.1:{port}"}, context=context)[0] == 403
        # Past the checks, the missing daemon is reported, not hidden.
        status, body, _ = http(f"{web.url}/api/status", headers={"Cookie": session}, context=context)
        assert status == 502 and "no avid daemon listens" in json.loads(body)["error"]["message"], body
