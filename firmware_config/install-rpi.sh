#!/usr/bin/env bash
# Install idkiosk on Raspberry Pi OS (Bookworm or later, 64-bit) from this source tree.
#
#   sudo firmware_config/install-rpi.sh [--deploy-user USER] [--desktop-user USER]
#                                       [--public-key FILE]
#
# Idempotent: run it again after `git pull` to upgrade. It
#   1. installs apt packages (Picamera2/libcamera, dlib's landmark model, Chromium, curl, rsync);
#   2. creates the system user `kiosk` (groups kiosk + video) and the group `kiosk-deploy`;
#   3. creates /opt/kiosk/venv with --system-site-packages (Picamera2 and libcamera only come
#      from apt) and pip-installs this project into it;
#   4. writes /etc/kiosk/kiosk.toml on first install only (Pi camera, paths in /var/lib/kiosk);
#   5. installs the first model bundle into /var/lib/kiosk/models (`current` symlink), writable
#      by group kiosk so `make deploy` can add bundles as the deploy user;
#   6. lets group kiosk-deploy restart the service via sudo (nothing else);
#   7. installs the office's bundle signing key (--public-key, from `kiosk bundle keygen`) as
#      /etc/kiosk/models.pub and sets [models] public_key: unsigned bundles are then refused;
#   8. installs and enables kiosk.service and the console user unit (Chromium, kiosk mode);
#   9. adds the camera block to /boot/firmware/config.txt (reboot to apply).
# --deploy-user (default: the sudo caller) joins kiosk + kiosk-deploy for `make deploy` over ssh;
# --desktop-user (default: the sudo caller) gets the console started from its labwc autostart.
# --public-key: without it (and without an earlier one) bundles load unchecked, with a warning.
set -euo pipefail

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PREFIX=/opt/kiosk    # fixed: systemd/kiosk.service runs /opt/kiosk/venv/bin/kiosk
STATE=/var/lib/kiosk # the unit's StateDirectory
CONF=/etc/kiosk      # the unit's ConfigurationDirectory
MARK_BEGIN="# BEGIN idkiosk (firmware_config/rpi-config.txt)"
MARK_END="# END idkiosk"

step() { printf '\n== %s\n' "$*"; }

# set_key FILE SECTION KEY VALUE: set a string key inside one [section] of a TOML file (added
# at the end of the section when an older file lacks it).
set_key() {
    awk -v section="[$2]" -v key="$3" -v value="$4" '
        function add() { if (inside && !done) { print key " = \"" value "\""; done = 1 } }
        /^\[/ { add(); inside = ($0 == section) }
        inside && $1 == key && $2 == "=" { add(); next }
        { print }
        END { add() }
    ' "$1" >"$1.tmp" && mv "$1.tmp" "$1"
}

# pi_config FILE: the project's kiosk.toml with the Raspberry Pi camera and paths.
pi_config() {
    set_key "$1" service source picamera
    set_key "$1" models dir "$STATE/models/current"
    set_key "$1" store dir "$STATE/captures"
    set_key "$1" store key_file "$STATE/capture.key"
}

install_packages() {
    step "apt packages"
    apt-get update
    apt-get install -y --no-install-recommends \
        python3-venv python3-pip python3-picamera2 libdlib-data curl rsync
    # The browser package is chromium-browser on Bookworm and chromium on later releases.
    apt-get install -y --no-install-recommends chromium-browser ||
        apt-get install -y --no-install-recommends chromium
}

create_users() {
    step "users"
    getent group kiosk >/dev/null || groupadd --system kiosk
    getent group kiosk-deploy >/dev/null || groupadd --system kiosk-deploy
    id kiosk >/dev/null 2>&1 ||
        useradd --system --gid kiosk --groups video --home-dir "$STATE" --no-create-home \
            --shell /usr/sbin/nologin kiosk
    if [[ -n $DEPLOY_USER ]]; then
        usermod -aG kiosk,kiosk-deploy "$DEPLOY_USER"
        echo "$DEPLOY_USER may now run \`make deploy\` to this kiosk (log in again for the groups)"
    fi
}

install_venv() {
    step "virtual environment $PREFIX/venv"
    install -d -m 0755 "$PREFIX"
    python3 -m venv --system-site-packages "$PREFIX/venv"
    # numpy<2: apt's Picamera2 stack (simplejpeg, python3-av) is built against numpy 1.x.
    "$PREFIX/venv/bin/pip" install --upgrade "$SRC" "numpy<2"
}

install_config() {
    step "configuration $CONF/kiosk.toml"
    install -d -m 0755 "$CONF"
    if [[ ! -e $CONF/kiosk.toml ]]; then
        install -m 0644 "$SRC/firmware_config/kiosk.toml" "$CONF/kiosk.toml"
        pi_config "$CONF/kiosk.toml"
    else
        echo "keeping the existing $CONF/kiosk.toml"
    fi
    "$PREFIX/venv/bin/kiosk" --config "$CONF/kiosk.toml" --validate-config
}

install_models() {
    step "model bundle in $STATE/models"
    install -d -o kiosk -g kiosk -m 0750 "$STATE"
    install -d -o kiosk -g kiosk -m 2775 "$STATE/models"
    if [[ ! -e $STATE/models/current ]]; then
        # The repo's models/ as the first bundle (unsigned); `make deploy` replaces it.
        first="0-initial-$(date -u +%Y%m%dT%H%M%SZ)"
        install -d "$STATE/models/bundles"
        cp -a "$SRC/models" "$STATE/models/bundles/$first"
        ln -s "bundles/$first" "$STATE/models/current"
    fi
    # Group kiosk (the deploy user) adds and removes bundles; the service only reads them.
    chown -R kiosk:kiosk "$STATE/models"
    chmod -R g+rwX "$STATE/models"
    find "$STATE/models" -type d -exec chmod g+s {} +
    cat >/etc/sudoers.d/kiosk-deploy <<'EOF'
# idkiosk: `make deploy` restarts the kiosk service after switching the model bundle.
%kiosk-deploy ALL=(root) NOPASSWD: /usr/bin/systemctl restart kiosk.service
EOF
    chmod 0440 /etc/sudoers.d/kiosk-deploy
    visudo -cf /etc/sudoers.d/kiosk-deploy
}

# install_public_key: the office's bundle signing key; from then on the kiosk refuses a bundle
# whose manifest.sig it does not verify (make deploy signs every bundle).
install_public_key() {
    step "bundle signing key $CONF/models.pub"
    if [[ -n $PUBLIC_KEY ]]; then
        install -m 0644 "$PUBLIC_KEY" "$CONF/models.pub"
    elif [[ ! -e $CONF/models.pub ]]; then
        echo "no --public-key: model bundles load without a signature check (logged as a warning)"
        return 0
    fi
    set_key "$CONF/kiosk.toml" models public_key "$CONF/models.pub"
    "$PREFIX/venv/bin/kiosk" --config "$CONF/kiosk.toml" bundle verify "$STATE/models/current" ||
        echo "the installed bundle is not signed with this key: run \`make deploy\` (it signs)" \
            "before the kiosk can check photos"
}

install_units() {
    step "systemd units"
    install -m 0644 "$SRC/systemd/kiosk.service" /etc/systemd/system/kiosk.service
    install -m 0644 "$SRC/systemd/kiosk-console.service" /etc/systemd/user/kiosk-console.service
    systemctl daemon-reload
    systemctl enable kiosk.service
    systemctl --global enable kiosk-console.service
    # Raspberry Pi OS's labwc session does not always reach graphical-session.target: start the
    # console from the desktop user's autostart as well (a no-op when it already runs).
    if [[ -n $DESKTOP_USER ]]; then
        local home autostart
        home=$(getent passwd "$DESKTOP_USER" | cut -d: -f6)
        autostart=$home/.config/labwc/autostart
        install -d -o "$DESKTOP_USER" "$home/.config" "$home/.config/labwc"
        if ! grep -qs kiosk-console.service "$autostart"; then
            echo "systemctl --user start kiosk-console.service &" >>"$autostart"
            chown "$DESKTOP_USER" "$autostart"
        fi
    fi
}

# install_firmware_config [CONFIG_TXT]: (re)place the idkiosk block, keeping one backup.
install_firmware_config() {
    local config_txt=${1:-/boot/firmware/config.txt}
    [[ -e $config_txt ]] || config_txt=/boot/config.txt
    step "camera settings in $config_txt"
    [[ -e $config_txt.before-idkiosk ]] || cp "$config_txt" "$config_txt.before-idkiosk"
    sed -i "\|^$MARK_BEGIN\$|,\|^$MARK_END\$|d" "$config_txt"
    {
        echo "$MARK_BEGIN"
        cat "$SRC/firmware_config/rpi-config.txt"
        echo "$MARK_END"
    } >>"$config_txt"
}

main() {
    DEPLOY_USER=${SUDO_USER:-}
    DESKTOP_USER=${SUDO_USER:-}
    PUBLIC_KEY=
    while (($#)); do
        case $1 in
        --deploy-user) DEPLOY_USER=$2 && shift 2 ;;
        --desktop-user) DESKTOP_USER=$2 && shift 2 ;;
        --public-key) PUBLIC_KEY=$2 && shift 2 ;;
        *)
            echo "usage: sudo $0 [--deploy-user USER] [--desktop-user USER] [--public-key FILE]" >&2
            exit 2
            ;;
        esac
    done
    if ((EUID != 0)); then
        echo "run as root: sudo $0" >&2
        exit 1
    fi
    install_packages
    create_users
    install_venv
    install_config
    install_models
    install_public_key
    install_units
    install_firmware_config
    systemctl restart kiosk.service
    step "done"
    echo "kiosk.service: systemctl status kiosk; logs: journalctl -u kiosk -f"
    echo "reboot once so the camera settings in config.txt take effect"
}

# Sourcing the script (tests) defines the functions without installing anything.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
