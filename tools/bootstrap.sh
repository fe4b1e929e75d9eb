#!/usr/bin/env bash
# Set up avid on a fresh Debian / Raspberry Pi OS machine (Python >= 3.11) in ./.venv.
#   bash tools/bootstrap.sh          runtime: the package and its dependencies (enough for `avid demo`)
#   bash tools/bootstrap.sh test     also the test extras and the system tools the tests use
# System packages are installed with apt only when missing (as root, or through sudo):
#   libportaudio2  PortAudio, which sounddevice loads when a real microphone is opened
#   python3-venv   to create the virtual environment
#   systemd        (test) systemd-analyze, to verify the unit and its security score offline
#   python3-seccomp (test) libseccomp for /usr/bin/python3: tools/run_sandboxed.py applies the unit's
#                  SystemCallFilter= and MemoryDenyWriteExecute= in tests/test_systemd_unit.py
#   mosquitto      (test) the real MQTT broker that tests/mqtt_broker.py starts for tests/test_mqtt*.py
#   espeak-ng      (test) renders the spoken challenge prompts (prompt.backend: speaker)
#   chromium, chromium-driver (test) Debian's headless browser and its WebDriver, which
#                  tests/test_web_browser.py drives with Selenium (a downloaded browser cannot be fetched)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-runtime}"

python=${PYTHON:-python3}
missing=()
ldconfig -p 2>/dev/null | grep -q 'libportaudio\.so\.2' || missing+=(libportaudio2)
"$python" -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [[ $mode == test ]]; then
    command -v systemd-analyze >/dev/null || missing+=(systemd)
    /usr/bin/python3 -c 'import seccomp' 2>/dev/null || missing+=(python3-seccomp)
    command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]] || missing+=(mosquitto)
    command -v espeak-ng >/dev/null || missing+=(espeak-ng)
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    [[ -x /usr/bin/chromedriver ]] || missing+=(chromium-driver)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
    sudo=""
    [[ $(id -u) -eq 0 ]] || sudo="sudo"
    echo "bootstrap: installing ${missing[*]} with apt"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

[[ -x .venv/bin/python ]] || "$python" -m venv .venv
extras=""
[[ $mode == test ]] && extras="[test]"
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"
echo "bootstrap: ready (.venv, mode $mode)"
