#!/bin/bash
# Runs inside the booted container (as avid-smoke-driver.service): the scenarios, then power off.
exec > /var/log/avid-smoke.log 2>&1
show() {
    echo "--- $1:"
    systemctl show avid -p ActiveState -p Result -p NRestarts -p ExecMainStatus -p StatusText | sort | tr '\n' ' '
    echo
}
scenario() {
    echo "$1" > /etc/avid/stub-mode
    systemctl reset-failed avid 2>/dev/null
    systemctl start avid
}

scenario healthy; sleep 22; show "healthy after 22 s (expect active, NRestarts=0)"
journalctl -u avid -o cat --no-pager | grep stub:
systemctl stop avid

scenario wedge; sleep 28; show "wedged frames after 28 s (expect NRestarts>=1, unhealthy)"
journalctl -u avid -o cat --no-pager | grep -E "watchdog|Watchdog|restart"
systemctl stop avid

scenario config; sleep 8; show "exit 78 (expect failed, ExecMainStatus=78, NRestarts=0)"

# The real daemon on replayed camera and microphone with a mock relay.
rm /etc/systemd/system/avid.service.d/stub.conf
systemctl daemon-reload
cat > /etc/avid/config.yaml <<'YAML'
camera: {backend: replay, path: /opt/avid/replay/video.mpg, loop: true}
microphone: {backend: replay, paths: [/opt/avid/replay/audio_16k.wav]}
lock: {pin_factory: mock}
YAML
chown root:avid /etc/avid/config.yaml; chmod 0640 /etc/avid/config.yaml
systemctl reset-failed avid 2>/dev/null
systemctl start avid; echo "start rc=$?"
sleep 25; show "real daemon after 25 s (expect active, NRestarts=0, StatusText=running)"
systemctl stop avid; show "real daemon stopped (expect inactive, Result=success)"
journalctl -u avid -o cat --no-pager | grep -v "^stub:" | tail -25
echo "--- journalctl -u avid -p warning:"
journalctl -u avid -p warning -o cat --no-pager | grep -v "^stub:" | tail -8

cat > /etc/systemd/system/avid.service.d/probe.conf <<'CONF'
[Service]
Type=exec
ExecStart=
ExecStart=/bin/sh -c 'exec /opt/avid/venv/bin/python /opt/avid/mdwe_probe.py --require-xnnpack /opt/avid/models-under-test/*.tflite'
Restart=no
CONF
systemctl daemon-reload
scenario probe; sleep 40; show "models under the sandbox (expect inactive, Result=success)"
journalctl -u avid -o cat --no-pager | grep -E "^ran |MDWE|XNNPACK|Error"
systemd-analyze security avid | tail -1
echo SMOKE-DONE
systemctl poweroff
