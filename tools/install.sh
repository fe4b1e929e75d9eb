#!/usr/bin/env bash
# Install (or remove) avid as a systemd service on a Raspberry Pi / Debian machine. Run as root.
#
#   sudo tools/install.sh                 install or upgrade, enable and (re)start avid.service
#   sudo tools/install.sh --no-start      the same, but leave the service stopped (enabled for boot)
#   sudo tools/install.sh --admin USER    also add USER to the avid-admin group (repeatable)
#   sudo tools/install.sh --uninstall     remove the unit and /opt/avid; keep /etc/avid, /var/lib/avid
#   sudo tools/install.sh --uninstall --purge   also remove config, device key, templates and the user
#   tools/install.sh --dry-run [...]      print every step and change nothing (root not needed)
#   sudo tools/install.sh --mqtt-broker ADDRESS   also open the sandbox to an MQTT broker at ADDRESS (IP
#                                         address, for mqtt:// or mqtts://; 'unix' for a Unix socket);
#                                         /etc/avid/mqtt.password, if present, becomes a credential
#   sudo tools/install.sh --web           also the installer's web page (avid-web.service, user avid-web,
#                                         127.0.0.1:8080); set its password with: sudo avid web-passwd
#   sudo tools/install.sh --web-bind ADDRESS   the same, reachable on ADDRESS: makes a self-signed TLS
#                                         certificate in /etc/avid-web and prints its fingerprint
#
# Running it again is safe: existing config, device key, templates and user are left alone.
set -euo pipefail

readonly PREFIX=/opt/avid
readonly VENV="$PREFIX/venv"
# `sudo avid enroll ...` finds it here (sudo's secure_path includes /usr/local/bin).
readonly COMMAND_LINK=/usr/local/bin/avid
readonly CONFIG_DIR=/etc/avid
readonly CONFIG_FILE="$CONFIG_DIR/config.yaml"
readonly KEY_FILE="$CONFIG_DIR/device.key"
readonly STATE_DIR=/var/lib/avid
readonly UNIT_FILE=/etc/systemd/system/avid.service
readonly SYSUSERS_FILE=/etc/sysusers.d/avid.conf
readonly TMPFILES_FILE=/etc/tmpfiles.d/avid.conf
readonly DROPIN_DIR=/etc/systemd/system/avid.service.d
readonly MQTT_DROPIN="$DROPIN_DIR/mqtt.conf"
readonly MQTT_PASSWORD_FILE="$CONFIG_DIR/mqtt.password"
readonly WEB_UNIT_FILE=/etc/systemd/system/avid-web.service
readonly WEB_DROPIN_DIR=/etc/systemd/system/avid-web.service.d
readonly WEB_SYSUSERS_FILE=/etc/sysusers.d/avid-web.conf
readonly WEB_TMPFILES_FILE=/etc/tmpfiles.d/avid-web.conf
readonly WEB_CONFIG_DIR=/etc/avid-web
readonly WEB_STATE_DIR=/var/lib/avid-web
readonly WEB_USER=avid-web
readonly SERVICE_USER=avid
readonly ADMIN_GROUP=avid-admin
readonly KEY_BYTES=32
# Debian's interpreter (python3-venv is for it): the avid user must be able to run the venv's python.
readonly PYTHON="${AVID_PYTHON:-/usr/bin/python3}"

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DRY_RUN=0
START=1
ACTION=install
PURGE=0
MQTT_BROKER=""
WEB=0
WEB_BIND=""
ADMINS=()

usage() {
    sed -n '2,18s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"
}

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Print a command, then run it unless this is a dry run.
run() {
    printf '+ %s\n' "$*"
    if [[ $DRY_RUN == 0 ]]; then
        "$@"
    fi
}

systemd_running() {
    [[ -d /run/systemd/system ]]
}

# systemctl only where systemd is PID 1 (not in a chroot or image build); a dry run shows it anyway.
# 'enable' and 'disable' only edit symlinks, so they run offline too.
run_systemctl() {
    if [[ $DRY_RUN == 1 || $1 == enable || $1 == disable ]] || systemd_running; then
        run systemctl "$@"
    else
        say "systemd is not running here: skipping 'systemctl $*'"
    fi
}

on_raspberry_pi() {
    grep -qs 'Raspberry Pi' /proc/device-tree/model
}

config_template() {
    local candidate
    for candidate in "${AVID_CONFIG_TEMPLATE:-}" "$REPO_DIR/config.yaml" "$REPO_DIR/config.example.yaml"; do
        if [[ -n $candidate && -f $candidate ]]; then
            printf '%s\n' "$candidate"
            return 0
        fi
    done
    return 1
}

install_packages() {
    say "installing system packages"
    # espeak-ng renders the spoken challenge prompts once (prompt.backend: speaker).
    local packages=(python3-venv python3-pip libportaudio2 espeak-ng)
    run apt-get update
    run env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
}

create_user() {
    say "creating system user $SERVICE_USER (groups video, audio, gpio)"
    run install -D -m 0644 "$REPO_DIR/systemd/avid.sysusers.conf" "$SYSUSERS_FILE"
    if command -v systemd-sysusers >/dev/null; then
        run systemd-sysusers "$SYSUSERS_FILE"
        return
    fi
    if ! getent group gpio >/dev/null; then
        run groupadd --system gpio
    fi
    if ! getent passwd "$SERVICE_USER" >/dev/null; then
        run useradd --system --user-group --home-dir "$STATE_DIR" --no-create-home \
            --shell /usr/sbin/nologin --comment "avid door identity daemon" "$SERVICE_USER"
    fi
    run usermod --append --groups video,audio,gpio "$SERVICE_USER"
    if ! getent group "$ADMIN_GROUP" >/dev/null; then
        run groupadd --system "$ADMIN_GROUP"
    fi
}

add_admins() {
    local admin
    for admin in "${ADMINS[@]}"; do
        say "adding $admin to $ADMIN_GROUP (may administer the door through its control socket)"
        if [[ $DRY_RUN == 0 ]] && ! getent passwd "$admin" >/dev/null; then
            die "no such user: $admin"
        fi
        run usermod --append --groups "$ADMIN_GROUP" "$admin"
    done
}

create_directories() {
    say "creating $CONFIG_DIR (0750 root:avid) and $STATE_DIR (0700 avid)"
    run install -D -m 0644 "$REPO_DIR/systemd/avid.tmpfiles.conf" "$TMPFILES_FILE"
    if command -v systemd-tmpfiles >/dev/null; then
        run systemd-tmpfiles --create "$TMPFILES_FILE"
    else
        run install -d -m 0750 -o root -g "$SERVICE_USER" "$CONFIG_DIR"
        run install -d -m 0700 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE_DIR"
    fi
}

install_venv() {
    say "installing avid into the virtual environment $VENV"
    if [[ ! -x $VENV/bin/python ]]; then
        run "$PYTHON" -m venv "$VENV"
    fi
    run "$VENV/bin/pip" install --upgrade "$REPO_DIR"
    if on_raspberry_pi; then
        # gpiozero's default pin factory on Bookworm (setup.py pulls it only on aarch64, not on 32-bit Pi OS).
        run "$VENV/bin/pip" install --upgrade lgpio
    fi
    run install -D -m 0644 "$REPO_DIR/docs/install.md" "$PREFIX/docs/install.md"
    run ln -sfn "$VENV/bin/avid" "$COMMAND_LINK"
}

render_prompts() {
    # Rendered here, not by the sandboxed service: it then never executes another program.
    say "rendering the spoken challenge prompts into $STATE_DIR/prompts"
    run runuser -u "$SERVICE_USER" -- "$VENV/bin/python" -m daemon.challenge.present "$STATE_DIR/prompts"
}

install_config() {
    if [[ -e $CONFIG_FILE ]]; then
        say "keeping the existing $CONFIG_FILE"
        return
    fi
    say "installing the example config as $CONFIG_FILE (0640 root:avid)"
    local template
    if ! template="$(config_template)"; then
        [[ $DRY_RUN == 1 ]] || die "no example config found in $REPO_DIR (set AVID_CONFIG_TEMPLATE)"
        warn "no example config found in $REPO_DIR yet"
        template="$REPO_DIR/config.yaml"
    fi
    run install -m 0640 -o root -g "$SERVICE_USER" "$template" "$CONFIG_FILE"
}

generate_key() {
    if [[ -e $KEY_FILE ]]; then
        say "keeping the existing device key $KEY_FILE"
        return
    fi
    say "generating the template encryption key $KEY_FILE ($KEY_BYTES random bytes, 0600 root)"
    printf '+ head -c %s /dev/urandom > %s  (umask 077, chown root:root)\n' "$KEY_BYTES" "$KEY_FILE"
    if [[ $DRY_RUN == 0 ]]; then
        (umask 077 && head -c "$KEY_BYTES" /dev/urandom > "$KEY_FILE.tmp" \
            && chown root:root "$KEY_FILE.tmp" && chmod 0600 "$KEY_FILE.tmp" \
            && mv "$KEY_FILE.tmp" "$KEY_FILE")
    fi
}

# The unit has no network at all; MQTT over TCP needs the address families and the broker's address.
install_mqtt_dropin() {
    [[ -n $MQTT_BROKER ]] || return 0
    say "opening the sandbox to the MQTT broker ($MQTT_BROKER): $MQTT_DROPIN"
    local text=$'[Service]\n'
    if [[ $MQTT_BROKER == unix ]]; then
        # Mosquitto makes its Unix socket 0770 mosquitto:mosquitto.
        getent group mosquitto >/dev/null || [[ $DRY_RUN == 1 ]] \
            || die "--mqtt-broker unix: no group 'mosquitto' here (install mosquitto first)"
        text+=$'# Mosquitto\'s Unix socket is 0770 mosquitto:mosquitto; nothing else is opened.\n'
        text+=$'SupplementaryGroups=mosquitto\n'
    else
        [[ $MQTT_BROKER =~ ^[0-9A-Fa-f.:/]+$ ]] || die "--mqtt-broker takes an IP address (or 'unix'), not '$MQTT_BROKER'"
        text="$(sed "s|@BROKER@|$MQTT_BROKER|" "$REPO_DIR/systemd/mqtt-tcp.conf")"$'\n'
    fi
    if [[ -e $MQTT_PASSWORD_FILE || $DRY_RUN == 1 ]]; then
        text+=$'# The broker password, readable by the service only as $CREDENTIALS_DIRECTORY/avid-mqtt-password.\n'
        text+="LoadCredential=avid-mqtt-password:$MQTT_PASSWORD_FILE"$'\n'
    fi
    run install -d -m 0755 "$DROPIN_DIR"
    printf '+ write %s\n' "$MQTT_DROPIN"
    if [[ $DRY_RUN == 0 ]]; then
        printf '%s' "$text" > "$MQTT_DROPIN.tmp" && chmod 0644 "$MQTT_DROPIN.tmp" && mv "$MQTT_DROPIN.tmp" "$MQTT_DROPIN"
    else
        printf '%s' "$text"
    fi
}

# The web page: its own user in avid-admin, and avid.service without PrivateUsers= so that the
# daemon sees that group membership (SO_PEERGROUPS shows 65534 for unmapped groups otherwise).
install_web() {
    [[ $WEB == 1 ]] || return 0
    say "installing the web page: user $WEB_USER (in $ADMIN_GROUP), $WEB_UNIT_FILE"
    run install -D -m 0644 "$REPO_DIR/systemd/avid-web.sysusers.conf" "$WEB_SYSUSERS_FILE"
    if command -v systemd-sysusers >/dev/null; then
        run systemd-sysusers "$WEB_SYSUSERS_FILE"
    else
        if ! getent passwd "$WEB_USER" >/dev/null; then
            run useradd --system --user-group --home-dir "$WEB_STATE_DIR" --no-create-home \
                --shell /usr/sbin/nologin --comment "avid web page" "$WEB_USER"
        fi
        run usermod --append --groups "$ADMIN_GROUP" "$WEB_USER"
    fi
    run install -D -m 0644 "$REPO_DIR/systemd/avid-web.tmpfiles.conf" "$WEB_TMPFILES_FILE"
    if command -v systemd-tmpfiles >/dev/null; then
        run systemd-tmpfiles --create "$WEB_TMPFILES_FILE"
    else
        run install -d -m 0750 -o root -g "$WEB_USER" "$WEB_CONFIG_DIR"
        run install -d -m 0700 -o "$WEB_USER" -g "$WEB_USER" "$WEB_STATE_DIR"
    fi
    run "$VENV/bin/pip" install --upgrade "$REPO_DIR[web]"
    run install -D -m 0644 "$REPO_DIR/docs/web.md" "$PREFIX/docs/web.md"
    run install -m 0644 "$REPO_DIR/systemd/avid-web.service" "$WEB_UNIT_FILE"
    write_file "$DROPIN_DIR/web.conf" $'[Service]\n# avid-web is authorised as a member of avid-admin, which the daemon can only see\n# outside a private user namespace (docs/web.md). Exposure 0.4 -> 0.6.\nPrivateUsers=no\n'
    if [[ -n $WEB_BIND ]]; then
        make_web_certificate
        write_file "$WEB_DROPIN_DIR/bind.conf" $'[Service]\n# Reachable on '"$WEB_BIND"$' (TLS): not only loopback.\nIPAddressDeny=\n'
    fi
    if [[ $DRY_RUN == 1 ]] || [[ ! -s $WEB_STATE_DIR/passwords ]]; then
        say "set the web password before logging in: sudo avid web-passwd admin"
    fi
}

make_web_certificate() {
    local crt="$WEB_CONFIG_DIR/tls.crt" key="$WEB_CONFIG_DIR/tls.key" san
    [[ $WEB_BIND =~ ^[0-9.]+$|: ]] && san="IP:$WEB_BIND" || san="DNS:$WEB_BIND"
    if [[ -e $crt ]]; then
        say "keeping the existing web certificate $crt"
    else
        say "making a self-signed web certificate for $WEB_BIND ($crt, 10 years)"
        run openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 3650 \
            -subj "/CN=avid $WEB_BIND" -addext "subjectAltName=$san" -keyout "$key" -out "$crt"
        run chown root:"$WEB_USER" "$key" "$crt"
        run chmod 0640 "$key" "$crt"
    fi
    if [[ $DRY_RUN == 0 ]]; then
        say "check this fingerprint in the browser before typing the password:"
        openssl x509 -in "$crt" -noout -fingerprint -sha256
    fi
    say "in $CONFIG_FILE set: web: {host: $WEB_BIND, tls_cert_file: $crt, tls_key_file: $key}"
}

# Write a small file atomically (0644), or show it in a dry run.
write_file() {
    local path=$1 text=$2
    run install -d -m 0755 "$(dirname "$path")"
    printf '+ write %s\n' "$path"
    if [[ $DRY_RUN == 0 ]]; then
        printf '%s' "$text" > "$path.tmp" && chmod 0644 "$path.tmp" && mv "$path.tmp" "$path"
    else
        printf '%s' "$text"
    fi
}

install_unit() {
    say "installing the systemd unit $UNIT_FILE"
    run install -m 0644 "$REPO_DIR/systemd/avid.service" "$UNIT_FILE"
    install_mqtt_dropin
    install_web
    run_systemctl daemon-reload
    run_systemctl enable avid.service
    if [[ $WEB == 1 ]]; then
        run_systemctl enable avid-web.service
    fi
    if [[ $START == 1 ]]; then
        # restart, not start: a reinstall must run the new code.
        run_systemctl restart avid.service
        if [[ $WEB == 1 ]]; then
            run_systemctl restart avid-web.service
        fi
    else
        say "not starting avid.service (--no-start); start it with: systemctl start avid"
    fi
}

do_install() {
    install_packages
    create_user
    add_admins
    create_directories
    install_venv
    render_prompts
    install_config
    generate_key
    install_unit
    say "done. Check with: systemctl status avid; journalctl -u avid -p warning"
}

do_uninstall() {
    if [[ -e $WEB_UNIT_FILE || $DRY_RUN == 1 ]]; then
        say "removing the avid-web service"
        if systemd_running || [[ $DRY_RUN == 1 ]]; then
            run_systemctl disable --now avid-web.service
        else
            run_systemctl disable avid-web.service
        fi
        run rm -f "$WEB_UNIT_FILE"
        run rm -rf "$WEB_DROPIN_DIR"
    fi
    say "removing the avid service"
    if [[ -e $UNIT_FILE || $DRY_RUN == 1 ]]; then
        if systemd_running || [[ $DRY_RUN == 1 ]]; then
            run_systemctl disable --now avid.service
        else
            run_systemctl disable avid.service
        fi
        run rm -f "$UNIT_FILE"
        run rm -rf "$DROPIN_DIR"
        run_systemctl daemon-reload
        run_systemctl reset-failed avid.service || true
    fi
    run rm -rf "$PREFIX"
    run rm -f "$COMMAND_LINK"
    if [[ $PURGE == 0 ]]; then
        say "kept $CONFIG_DIR (config, device key), $STATE_DIR (templates) and user $SERVICE_USER; --purge removes them"
        return
    fi
    say "purging config, device key, templates and user $SERVICE_USER"
    run rm -rf "$CONFIG_DIR" "$STATE_DIR"
    run rm -f "$SYSUSERS_FILE" "$TMPFILES_FILE" "$WEB_SYSUSERS_FILE" "$WEB_TMPFILES_FILE"
    run rm -rf "$WEB_CONFIG_DIR" "$WEB_STATE_DIR"
    if [[ $DRY_RUN == 1 ]] || getent passwd "$WEB_USER" >/dev/null; then
        run userdel "$WEB_USER"
    fi
    if [[ $DRY_RUN == 1 ]] || getent passwd "$SERVICE_USER" >/dev/null; then
        run userdel "$SERVICE_USER"
    fi
    if [[ $DRY_RUN == 1 ]] || getent group "$ADMIN_GROUP" >/dev/null; then
        run groupdel "$ADMIN_GROUP"
    fi
}

main() {
    while [[ $# -gt 0 ]]; do
        case $1 in
            --dry-run) DRY_RUN=1 ;;
            --no-start) START=0 ;;
            --uninstall) ACTION=uninstall ;;
            --purge) PURGE=1 ;;
            --mqtt-broker) [[ $# -ge 2 ]] || die "--mqtt-broker needs an address"; MQTT_BROKER=$2; shift ;;
            --web) WEB=1 ;;
            --web-bind)
                [[ $# -ge 2 && $2 =~ ^[A-Za-z0-9.:-]+$ ]] || die "--web-bind needs an address or host name"
                WEB=1
                WEB_BIND=$2
                shift
                ;;
            --admin)
                [[ $# -ge 2 && -n $2 && $2 != -* ]] || die "--admin needs a user name"
                ADMINS+=("$2")
                shift
                ;;
            -h|--help) usage; exit 0 ;;
            *) usage >&2; die "unknown option: $1" ;;
        esac
        shift
    done
    if [[ ${#ADMINS[@]} -gt 0 && $ACTION != install ]]; then
        die "--admin only goes with an install"
    fi
    if [[ $PURGE == 1 && $ACTION != uninstall ]]; then
        die "--purge only goes with --uninstall"
    fi
    if [[ $DRY_RUN == 0 && $EUID -ne 0 ]]; then
        die "run as root (sudo $0 $*), or add --dry-run to see the steps"
    fi
    if [[ $DRY_RUN == 1 ]]; then
        say "dry run: nothing will be changed"
    fi
    "do_$ACTION"
}

main "$@"
