#!/usr/bin/env bash
# Check avid on an emulated Raspberry Pi: an arm64 Debian Bookworm userland run by qemu-user.
#
#   sudo bash tools/arm64_check.sh          (as root; about 30 min from scratch, less when reused)
#   sudo bash tools/arm64_check.sh --setup  only build the rootfs and install avid into it
#
# Builds (or reuses) an arm64 Bookworm root file system under .build/arm64-rootfs, copies this
# checkout into it, installs it as the README says (bash tools/bootstrap.sh test), then under a Pi 4
# (QEMU_CPU=cortex-a72) and a Pi 5 (cortex-a76) CPU model runs: the model tests, `avid check-config`,
# `avid self-test`, enrolment and `avid verify` on the bundled GRID recordings, and `avid demo --fast`
# when the demo has that option. Last, a negative check: under QEMU's default CPU (`max`, which
# advertises SME and makes XNNPACK's int8 kernels compute garbage) `avid self-test` must refuse.
# It prints a table of the steps with their results and durations and exits 0 only when every step
# that ran passed. Mounts are undone on every exit (a trap), including those a killed run left behind.
#
# What emulation cannot show: timing (qemu is ~30x slower than a Pi), the camera, the microphone and
# the GPIO drivers. See docs/install.md.
#
# Environment: AVID_ARM64_ROOTFS (rootfs folder), AVID_ARM64_MIRROR (Debian mirror; default: the one
# apt uses here), AVID_SHARED_DATA (the development data the model tests read; default ../shared/data),
# AVID_ARM64_STEP_TIMEOUT (seconds per guest command, default 3600), AVID_ARM64_CPUS and
# AVID_ARM64_TESTS (below).
set -uo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
ROOTFS=${AVID_ARM64_ROOTFS:-$REPO/.build/arm64-rootfs}
DATA=${AVID_SHARED_DATA:-$REPO/../shared/data}
STEP_TIMEOUT=${AVID_ARM64_STEP_TIMEOUT:-3600}
# Inside the rootfs the checkout sits beside the data, as on the host (tests read ../shared/data).
GUEST_REPO=/srv/avid
GUEST_DATA=/srv/shared/data
PACKAGES=python3,python3-venv,python3-pip,libportaudio2,ca-certificates,systemd,python3-seccomp
# The four model test files, and the self-test's refusal of a model with perturbed weights;
# AVID_ARM64_TESTS replaces them (empty: no test step, e.g. when they passed in an earlier run).
MODEL_TESTS=${AVID_ARM64_TESTS-"tests/test_face_detector.py tests/test_face_encoder.py \
tests/test_face_landmarks.py tests/test_speaker_encoder.py \
tests/test_selftest.py::test_perturbed_weights_with_updated_hashes_are_refused"}
# The CPU models to check under: "pi4 pi5" (AVID_ARM64_CPUS), each with its /proc/cpuinfo.
CPUS=${AVID_ARM64_CPUS:-pi4 pi5}

if [[ $(id -u) -ne 0 ]]; then
    echo "arm64_check: run as root (debootstrap, chroot and mounts need it)" >&2
    exit 2
fi

names=() results=() seconds=()
START=$SECONDS
current_cpuinfo=""

record() {  # name result duration
    names+=("$1") results+=("$2") seconds+=("$3")
    printf '== %-52s %-6s %5ss\n' "$1" "$2" "$3"
}

step() {  # name command... : run a step and record its result (guest commands have a time limit)
    local name=$1; shift
    local t0=$SECONDS rc
    echo "== $name"
    "$@"
    rc=$?
    if [[ $rc -eq 0 ]]; then record "$name" pass $((SECONDS - t0)); else record "$name" "FAIL($rc)" $((SECONDS - t0)); fi
    return $rc
}

guest_mounts() {  # every mount point under the rootfs, deepest first
    [[ -d $ROOTFS ]] || return 0
    awk -v root="$(realpath "$ROOTFS")" '$2 == root || index($2, root "/") == 1 {print $2}' /proc/self/mounts | sort -r
}

unmount_all() {
    local m
    for m in $(guest_mounts); do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || echo "arm64_check: cannot unmount $m" >&2
    done
}

summary() {
    local rc=$? i failed=0
    trap - EXIT INT TERM
    unmount_all
    echo
    echo "arm64 check ($(date -u +%Y-%m-%dT%H:%MZ), rootfs $ROOTFS)"
    printf '%-54s %-8s %8s\n' step result seconds
    printf '%-54s %-8s %8s\n' ---- ------ -------
    for i in "${!names[@]}"; do
        printf '%-54s %-8s %8s\n' "${names[$i]}" "${results[$i]}" "${seconds[$i]}"
        [[ ${results[$i]} == pass || ${results[$i]} == skipped ]] || failed=1
    done
    printf '%-54s %-8s %8s\n' "total" "" $((SECONDS - START))
    [[ $failed -eq 0 && $rc -eq 0 ]] && exit 0
    echo "arm64 check: FAILED" >&2
    exit 1
}
trap summary EXIT
trap 'echo "arm64_check: interrupted" >&2; exit 130' INT TERM

# --- the host: qemu-user with a binfmt handler, debootstrap -------------------------------------
host_tools() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [[ -x /usr/bin/qemu-aarch64-static ]] || missing+=(qemu-user-static)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
    if [[ ${#missing[@]} -gt 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" || return 1
    fi
    if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || return 1
    fi
    [[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || update-binfmts --enable qemu-aarch64 || return 1
    grep -q '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64
}

debian_mirror() {
    if [[ -n ${AVID_ARM64_MIRROR:-} ]]; then echo "$AVID_ARM64_MIRROR"; return; fi
    local uri
    uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
    [[ -n $uri ]] || uri=$(awk '$1 == "deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
    echo "${uri:-http://deb.debian.org/debian}"
}

build_rootfs() {
    if [[ -f $ROOTFS/.avid-rootfs-ready ]]; then
        echo "reusing $ROOTFS"
        return 0
    fi
    unmount_all
    if [[ -n $(guest_mounts) ]]; then
        echo "arm64_check: mounts remain under $ROOTFS; not removing it" >&2
        return 1
    fi
    rm -rf --one-file-system "$ROOTFS"
    mkdir -p "$(dirname "$ROOTFS")"
    debootstrap --arch=arm64 --include="$PACKAGES" bookworm "$ROOTFS" "$(debian_mirror)" || return 1
    # No service may start inside the chroot when packages install later.
    printf '#!/bin/sh\nexit 101\n' > "$ROOTFS/usr/sbin/policy-rc.d"
    chmod +x "$ROOTFS/usr/sbin/policy-rc.d"
    touch "$ROOTFS/.avid-rootfs-ready"
}

# Raspberry Pi /proc/cpuinfo (64-bit Raspberry Pi OS): the runtime's CPU detection reads it, and
# with the host's x86 cpuinfo every model load segfaults under emulation.
write_cpuinfo() {  # file part model features
    local i
    : > "$1"
    for i in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' \
            "$i" "$4" "$5" "$2" "$6" >> "$1"
    done
    printf 'Revision\t: %s\nSerial\t\t: 100000000a5e1d00\nModel\t\t: %s\n' "$7" "$3" >> "$1"
}

mount_guest() {
    unmount_all
    mkdir -p "$ROOTFS/proc" "$ROOTFS/sys" "$ROOTFS/dev" "$ROOTFS$GUEST_DATA" "$ROOTFS/etc/xdg/pip"
    mount -t proc proc "$ROOTFS/proc" &&
        mount --rbind /sys "$ROOTFS/sys" && mount --make-rslave "$ROOTFS/sys" &&
        mount --rbind /dev "$ROOTFS/dev" && mount --make-rslave "$ROOTFS/dev" || return 1
    if [[ -d $DATA ]]; then
        mount --bind "$DATA" "$ROOTFS$GUEST_DATA" && mount -o remount,bind,ro "$ROOTFS$GUEST_DATA" || return 1
    else
        echo "arm64_check: no development data at $DATA (the model tests that read it will fail)" >&2
    fi
    # Name resolution, the CA bundle and the pip settings of this machine (mirrors, certificates).
    cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
    cp -L /etc/ssl/certs/ca-certificates.crt "$ROOTFS/etc/ssl/certs/ca-certificates.crt"
    [[ -f /etc/pip.conf ]] && cp -L /etc/pip.conf "$ROOTFS/etc/pip.conf"
    [[ -d /etc/xdg/pip ]] && cp -rL /etc/xdg/pip/. "$ROOTFS/etc/xdg/pip/"
    write_cpuinfo "$ROOTFS/.cpuinfo-pi4" 0xd08 "Raspberry Pi 4 Model B Rev 1.5" \
        "fp asimd evtstrm crc32 cpuid" 0x0 3 d03115
    write_cpuinfo "$ROOTFS/.cpuinfo-pi5" 0xd0b "Raspberry Pi 5 Model B Rev 1.0" \
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" \
        0x4 1 d04170
    current_cpuinfo=""
}

use_cpuinfo() {  # pi4 | pi5
    [[ $current_cpuinfo == "$1" ]] && return 0
    if [[ -n $current_cpuinfo ]]; then umount "$ROOTFS/proc/cpuinfo" || return 1; fi
    mount --bind "$ROOTFS/.cpuinfo-$1" "$ROOTFS/proc/cpuinfo" && current_cpuinfo=$1
}

copy_checkout() {
    # Tracked and untracked-but-not-ignored files, as a fresh clone with local edits would have;
    # the guest's own .venv is kept so that a rerun only refreshes the install.
    local dest=$ROOTFS$GUEST_REPO
    mkdir -p "$dest"
    find "$dest" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf {} +
    (cd "$REPO" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$dest"
}

guest() {  # QEMU_CPU command... : run a shell command in the rootfs, in the checkout
    local cpu=$1; shift
    timeout --kill-after=30 "$STEP_TIMEOUT" chroot "$ROOTFS" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
        QEMU_CPU="$cpu" PIP_DEFAULT_TIMEOUT=180 PIP_DISABLE_PIP_VERSION_CHECK=1 \
        /bin/bash -c "cd $GUEST_REPO && $*"
}

# Enrol two GRID people from a frame and their voice, then verify a new clip of the first person
# (must be accepted as her) and a stranger (must be denied): the decision path end to end.
E2E='set -e
export AVID_STATE_DIR=$(mktemp -d /tmp/avid-e2e.XXXXXX)
d=daemon/demo_data
.venv/bin/python - "$AVID_STATE_DIR" <<EOF
import sys, cv2
for clip in ("s1_bbaf2n", "gridX_brbk7n_brbk7n", "s1_bbaf4p", "gridX_lwbsza_lwbsza"):
    cap = cv2.VideoCapture(f"daemon/demo_data/{clip}/video.mpg")
    cap.set(cv2.CAP_PROP_POS_MSEC, 1000)
    ok, frame = cap.read()
    assert ok, clip
    cv2.imwrite(f"{sys.argv[1]}/{clip}.png", frame)
EOF
s=$AVID_STATE_DIR
.venv/bin/avid enroll alice --face $s/s1_bbaf2n.png --voice $d/s1_bbaf2n/audio_16k.wav
.venv/bin/avid enroll bob --face $s/gridX_brbk7n_brbk7n.png --voice $d/gridX_brbk7n_brbk7n/audio_16k.wav
.venv/bin/avid verify --json --face $s/s1_bbaf4p.png --voice $d/s1_bbaf4p/audio_16k.wav | tee $s/alice.json
.venv/bin/avid verify --json --face $s/gridX_lwbsza_lwbsza.png --voice $d/gridX_lwbsza_lwbsza/audio_16k.wav | tee $s/stranger.json
.venv/bin/python - "$s" <<EOF
import json, sys
alice = json.load(open(sys.argv[1] + "/alice.json"))
stranger = json.load(open(sys.argv[1] + "/stranger.json"))
assert (alice["decision"], alice["person"]) == ("accept", "alice"), alice
assert stranger["decision"] == "deny", stranger
print("verify: alice accepted, stranger denied")
EOF
rm -rf "$AVID_STATE_DIR"'

demo_fast() {  # QEMU_CPU label
    if guest "$1" ".venv/bin/avid demo --help" 2>/dev/null | grep -q -- '--fast'; then
        step "$2: avid demo --fast" guest "$1" ".venv/bin/avid demo --fast"
    else
        echo "== demo --fast: not available (avid demo has no --fast option yet)"
        record "$2: avid demo --fast: not available" skipped 0
    fi
}

per_cpu() {  # QEMU_CPU label cpuinfo
    local cpu=$1 label=$2
    use_cpuinfo "$3" || { record "$label: Pi cpuinfo mounted" FAIL 0; return; }
    if [[ -n $MODEL_TESTS ]]; then
        step "$label: model tests" guest "$cpu" ".venv/bin/python -m pytest -q -p no:cacheprovider $MODEL_TESTS"
    else
        record "$label: model tests (AVID_ARM64_TESTS empty)" skipped 0
    fi
    # check-config checks the state folder too: make it as the install does (tmpfiles: 0700).
    step "$label: avid check-config config.yaml" guest "$cpu" \
        "install -d -m 0700 /var/lib/avid && .venv/bin/avid check-config config.yaml"
    step "$label: avid self-test" guest "$cpu" ".venv/bin/avid self-test"
    step "$label: enrol 2 + avid verify (accept, deny)" guest "$cpu" "$E2E"
    demo_fast "$cpu" "$label"
}

refuses_under_max() {  # cpuinfo: the self-test must exit 1 under QEMU's default CPU (SME)
    use_cpuinfo "$1" || return 1
    guest max ".venv/bin/avid self-test"
    local rc=$?
    echo "avid self-test under QEMU_CPU=max exited $rc (1 = refused, as it must)"
    [[ $rc -eq 1 ]]
}

main() {
    step "host: qemu-user-static, binfmt, debootstrap" host_tools || exit 1
    step "rootfs: debootstrap arm64 bookworm (or reuse)" build_rootfs || exit 1
    step "rootfs: mounts, certificates, pip config" mount_guest || exit 1
    step "copy the checkout into the rootfs" copy_checkout || exit 1
    use_cpuinfo pi5 || exit 1
    step "install: bash tools/bootstrap.sh test" guest cortex-a76 "bash tools/bootstrap.sh test" || exit 1
    [[ ${1:-} == --setup ]] && exit 0
    local pi
    for pi in $CPUS; do
        case $pi in
            pi4) per_cpu cortex-a72 "Pi 4 (cortex-a72)" pi4 ;;
            pi5) per_cpu cortex-a76 "Pi 5 (cortex-a76)" pi5 ;;
            *) record "unknown CPU model '$pi' (AVID_ARM64_CPUS: pi4, pi5)" FAIL 0 ;;
        esac
    done
    for pi in $CPUS; do
        step "QEMU_CPU=max (SME), ${pi^} cpuinfo: self-test refuses" refuses_under_max "$pi"
    done
}

# Everything above is definitions: bash has read the whole file before anything runs.
main "$@"
