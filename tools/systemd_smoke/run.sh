#!/bin/bash
# Boot the real systemd in a container over a throw-away overlay of this machine's root, install
# avid with tools/install.sh, and run systemd/avid.service through its scenarios (see driver.sh):
# with a stub daemon: READY=1, the watchdog kept fed, a wedge restarted by the watchdog, exit 78 not
# restarted, the sandbox's view (PrivateUsers groups, credential, refusals); then the real `avid run`
# on a replayed GRID clip with a mock relay (ready, fed, clean stop); then every model under the
# sandbox with XNNPACK. Needs root, systemd-container (systemd-nspawn), PyPI for the install, ~3 minutes.
# Nothing on the host changes: all writes go to a tmpfs. The report is printed at the end.
#
#   sudo tools/systemd_smoke/run.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="${1:-/tmp/avid-smoke.log}"
command -v systemd-nspawn >/dev/null || { echo "install systemd-container first" >&2; exit 1; }

inner() {
    local top=/mnt/avid-smoke root=/mnt/avid-smoke/merged
    mkdir -p "$top"
    mount -t tmpfs -o size=6g tmpfs "$top"
    mkdir -p "$top/upper" "$top/work" "$root"
    mount -t overlay overlay -o "lowerdir=/,upperdir=$top/upper,workdir=$top/work" "$root"
    for d in proc sys dev; do mount --rbind "/$d" "$root/$d"; done
    chroot "$root" bash -c "cd '$repo' && bash tools/install.sh --no-start" > "$top/install.log" 2>&1 \
        || { tail -20 "$top/install.log"; exit 1; }
    for d in proc sys dev; do umount -R "$root/$d"; done
    install -m 0644 "$here/stub_daemon.py" "$repo/tests/mdwe_probe.py" "$root/opt/avid/"
    install -m 0755 "$here/driver.sh" "$root/opt/avid/"
    install -D -m 0644 "$repo/daemon/demo_data/s1_bbaf2n/video.mpg" "$root/opt/avid/replay/video.mpg"
    install -D -m 0644 "$repo/daemon/demo_data/s1_bbaf2n/audio_16k.wav" "$root/opt/avid/replay/audio_16k.wav"
    mkdir -p "$root/opt/avid/models-under-test"
    cp "$repo"/models/*.tflite "$root/opt/avid/models-under-test/"
    chmod -R a+rX "$root/opt/avid/models-under-test"
    mkdir -p "$root/etc/systemd/system/avid.service.d"
    printf '[Service]\nExecStart=\nExecStart=/opt/avid/venv/bin/python /opt/avid/stub_daemon.py\n' \
        > "$root/etc/systemd/system/avid.service.d/stub.conf"
    printf '[Unit]\nAfter=multi-user.target\n[Service]\nType=oneshot\nExecStart=/opt/avid/driver.sh\n[Install]\nWantedBy=multi-user.target\n' \
        > "$root/etc/systemd/system/avid-smoke-driver.service"
    ln -sf /etc/systemd/system/avid-smoke-driver.service "$root/etc/systemd/system/multi-user.target.wants/"
    # Only the driver starts avid; host services (databases...) stay off in the container.
    find "$root/etc/systemd/system/multi-user.target.wants" -name '*.service' \
        ! -name avid-smoke-driver.service -delete
    : > "$root/etc/machine-id"
    timeout 420 systemd-nspawn -D "$root" --register=no --keep-unit --link-journal=no \
        --private-network -b --quiet > "$top/boot.log" 2>&1 || true
    cp "$root/var/log/avid-smoke.log" "$out" 2>/dev/null || { tail -30 "$top/boot.log"; exit 1; }
}

if [[ ${AVID_SMOKE_INNER:-0} == 1 ]]; then
    inner
else
    AVID_SMOKE_INNER=1 unshare --mount --propagation private "$0" "$out"
    rmdir /mnt/avid-smoke 2>/dev/null || true
    cat "$out"
fi
