#!/usr/bin/env bash
# Install picam-api on a Raspberry Pi as the hardened systemd service picam-api,
# or upgrade an install in place: photos, users and the config are kept.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/_system.sh
source "$here/_system.sh"

usage() {
    cat <<'USAGE'
Usage: sudo scripts/install.sh [OPTIONS]

Installs picam-api as the systemd service picam-api, or upgrades it in place:
photos, users and /etc/picam-api/config.toml are kept.

  --port N                    the port of a new config (default 8000)
  --mock                      a new config uses the mock camera (a Pi without one)
  --no-start                  install and enable the service, but do not (re)start it
  --admin-password-file FILE  the admin password of a first install, from FILE
                              (default: ask on a terminal, else make one and print it)
  -h, --help                  show this help

For trying it out off a Pi:
  --root DIR                  install under DIR instead of / (the picam user is real)
  --source DIR                the picam-api checkout to install (default: this one)
  --skip-apt                  install no apt packages
  --skip-systemctl            neither need nor touch systemd
  --meminfo FILE              size MemoryMax= from FILE instead of /proc/meminfo
USAGE
}

# The system Python: apt's picamera2 and libcamera bindings are built for it.
python=/usr/bin/python3
port=8000
port_given=0
mock=0
start=1
password_file=
root=/
source_dir=$(cd "$here/.." && pwd)
skip_apt=0
skip_systemctl=0
meminfo=/proc/meminfo
build_dir=
trap 'rm -rf "$build_dir"' EXIT

# The value of option $1, which must be there.
value() {
    [ $# -ge 2 ] || die "$1 needs a value"
    printf '%s' "$2"
}

while [ $# -gt 0 ]; do
    case $1 in
        --port) port=$(value "$@"); port_given=1; shift ;;
        --mock) mock=1 ;;
        --no-start) start=0 ;;
        --admin-password-file) password_file=$(value "$@"); shift ;;
        --root) root=$(root_dir "${2:-}"); shift ;;
        --source) source_dir=$(value "$@"); shift ;;
        --skip-apt) skip_apt=1 ;;
        --skip-systemctl) skip_systemctl=1 ;;
        --meminfo) meminfo=$(value "$@"); shift ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done
if ! [[ $port =~ ^[0-9]{1,5}$ ]] || [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
    die "--port needs a number from 1 to 65535"
fi
set_paths "$root"

# The path a file under $root has on the installed system (what the unit and
# the command wrapper must name).
system_path() {
    printf '%s' "${1#"${root%/}"}"
}

check_system() {
    require_root
    grep -Eqs '^ID(_LIKE)?=.*debian' /etc/os-release ||
        die "this installer is for Raspberry Pi OS and other Debian-based systems; this is not one"
    if [ "$skip_systemctl" = 0 ] && ! systemd_running; then
        die "systemd is not running on this system, and picam-api runs as a systemd service"
    fi
    if [ ! -f "$source_dir/setup.cfg" ] || [ ! -f "$source_dir/systemd/$service.service" ]; then
        die "$source_dir is not a picam-api checkout"
    fi
    # Refuse an old system before apt changes anything; check again after apt.
    [ ! -x "$python" ] || check_python
}

check_python() {
    [ -x "$python" ] || die "$python is missing (apt install python3-venv brings it)"
    "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "picam-api needs Python 3.11 or newer (Raspberry Pi OS Bookworm or later); $python is $("$python" -V 2>&1)"
}

install_packages() {
    if [ "$skip_apt" = 1 ]; then
        say "Skipping apt packages (--skip-apt)"
        return
    fi
    say "Installing apt packages"
    apt-get update -qq
    local packages=(python3-venv) package
    for package in python3-picamera2 python3-lgpio; do
        if apt-cache show "$package" >/dev/null 2>&1; then
            packages+=("$package")
        elif [ "$mock" = 1 ]; then
            note "$package is not in the apt sources (not Raspberry Pi OS?); going on without it"
        else
            die "$package is not in the apt sources: is this Raspberry Pi OS? (--mock installs without a camera)"
        fi
    done
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}"
}

create_user() {
    # Raspberry Pi OS has the gpio group; elsewhere the unit's SupplementaryGroups=
    # needs it to exist or the service does not start.
    getent group gpio >/dev/null || groupadd --system gpio
    if id "$user" >/dev/null 2>&1; then
        say "Using the existing system user $user"
    else
        say "Creating the system user $user"
        useradd --system --user-group --home-dir "/var/lib/$service" --no-create-home \
            --shell /usr/sbin/nologin --comment "picam-api service" "$user"
    fi
    usermod --append --groups video,gpio "$user"
}

make_dirs() {
    install -d -m 0755 "$app_dir" "$config_dir" "$(dirname "$unit")" "$(dirname "$command_wrapper")"
    # systemd's StateDirectory= would make it at start; the admin is set up before.
    install -d -m 0750 -o "$user" -g "$user" "$state_dir"
}

install_app() {
    # Missing, or its Python was replaced by an OS upgrade: start afresh.
    if ! "$venv/bin/python" -c '' 2>/dev/null; then
        say "Creating the virtual environment $venv"
        rm -rf "$venv"
        # --system-site-packages: picamera2, libcamera and lgpio come from apt.
        "$python" -m venv --system-site-packages "$venv"
    fi
    # From a clean copy: setuptools' in-tree build/ could carry modules that an
    # older version had and this one removed back into the venv.
    build_dir=$(mktemp -d)
    cp -r "$source_dir/pyproject.toml" "$source_dir/setup.cfg" "$source_dir/README.md" \
        "$source_dir/picam_api" "$build_dir/"
    local pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
    local needs stamp=$venv/picam-api-requirements.txt
    needs=$(requirements "$build_dir")
    # An upgrade whose requirements are those the last install put in this venv
    # (the usual `git pull`) installs picam-api alone: no dependency resolution
    # against the index, and no isolated build environment, since the venv has
    # the build's setuptools. On a Pi Zero that is most of an upgrade's time.
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$needs" ]; then
        say "Installing picam-api from $source_dir into $venv (its requirements are installed)"
        "${pip[@]}" --no-deps --no-build-isolation "$build_dir"
        return
    fi
    say "Installing picam-api from $source_dir and its requirements into $venv"
    rm -f "$stamp"
    # The build's requirements go into the venv too, for the upgrades above.
    local -a all
    mapfile -t all <<<"$needs"
    "${pip[@]}" "${all[@]}" "$build_dir"
    printf '%s\n' "$needs" >"$stamp"
}

# What installing the checkout in $1 needs, one requirement a line: its
# install_requires (setup.cfg) and its build's (pyproject.toml).
requirements() {
    "$python" - "$1" <<'PY'
import configparser, sys, tomllib
from pathlib import Path
setup = configparser.ConfigParser()
setup.read(Path(sys.argv[1], "setup.cfg"))
runtime = [line.strip() for line in setup["options"]["install_requires"].splitlines()]
build = tomllib.loads(Path(sys.argv[1], "pyproject.toml").read_text())["build-system"]["requires"]
print("\n".join(sorted({r for r in runtime if r and not r.startswith("#")} | set(build))))
PY
}

# picam-api's command line as the service's user, on the service's config and
# data dir, so the files it makes there stay the service's.
as_service() {
    (cd / && runuser -u "$user" -- env STATE_DIRECTORY="$state_dir" \
        "$venv/bin/picam-api" "$@" --config "$config")
}

write_config() {
    if [ -e "$config" ]; then
        say "Keeping $config"
        [ "$port_given$mock" = 00 ] ||
            note "--port and --mock only shape a new config; edit this one to change them"
    else
        say "Writing $config"
        local backend=picamera2
        [ "$mock" = 0 ] || backend=mock
        sed -e "s/^port = .*/port = $port/" -e "s/^backend = .*/backend = \"$backend\"/" \
            "$source_dir/systemd/config.example.toml" >"$config.new"
        chmod 0644 "$config.new"
        mv "$config.new" "$config"
    fi
    as_service config check >/dev/null ||
        die "fix $config (the line above says what is wrong), then run this again"
}

admin_login=

setup_admin() {
    local users
    users=$(as_service user list | cut -f1 | paste -sd ' ')
    if [ -n "$users" ]; then
        say "Keeping the existing users: $users"
        [ -z "$password_file" ] ||
            note "--admin-password-file is for a first install; change a password with: sudo picam-api user passwd admin"
        admin_login="admin (or another user), with the password you set"
        return
    fi
    local password='' again
    if [ -n "$password_file" ]; then
        [ -r "$password_file" ] || die "cannot read $password_file"
        IFS= read -r password <"$password_file" || true # its only line may lack a newline
        [ -n "$password" ] || die "the first line of $password_file is empty"
        admin_login="admin, with the password from $password_file"
    elif [ -t 0 ]; then
        read -rsp "Choose the password of the web login 'admin' (Enter makes one): " password
        echo
        if [ -n "$password" ]; then
            read -rsp "Again: " again
            echo
            [ "$again" = "$password" ] || die "the passwords differ; run this again"
            admin_login="admin, with the password you chose"
        fi
    fi
    if [ -z "$password" ]; then
        password=$("$venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(12))')
        admin_login="admin / $password   (shown only now)"
    fi
    say "Creating the operator 'admin'"
    printf '%s\n' "$password" | as_service user add admin --role operator --password-stdin >/dev/null
}

install_unit() {
    say "Installing $unit and $command_wrapper"
    install -m 0644 "$source_dir/systemd/$service.service" "$unit"
    cat >"$command_wrapper.new" <<WRAPPER
#!/bin/sh
# picam-api's command line as the service runs it (written by picam-api's
# install.sh): as user $user, on its config and data dir, so that the files it
# makes there stay the service's.
if [ "\$(id -u)" -ne 0 ]; then
    echo "$service: run it with sudo; it acts as user $user on $(system_path "$state_dir")" >&2
    exit 1
fi
exec runuser -u $user -- env STATE_DIRECTORY=$(system_path "$state_dir") $(system_path "$venv")/bin/$service "\$@"
WRAPPER
    chmod 0755 "$command_wrapper.new"
    mv "$command_wrapper.new" "$command_wrapper"
}

# The service may use half the RAM before systemd kills and restarts it: enough for a
# 12 MP still decoded twice over, and a leak ends before the Pi swaps. Under 1 GB (a
# Zero 2 W has 512 MB) no limit is set: half would not hold a full-resolution still,
# and the whole RAM is no limit at all, since the kernel's OOM killer acts first.
# Frame buffers are dma-heap memory, which the memory cgroup seems not to charge at all.
# MemTotal of a 1 GB board is about 900 MiB; 768 MiB tells it from a 512 MB one.
MEMORY_LIMIT_FROM_KB=786432

install_memory_limit() {
    local total_kb
    total_kb=$(awk '$1 == "MemTotal:" { print $2 }' "$meminfo" 2>/dev/null || true)
    [[ $total_kb =~ ^[0-9]+$ ]] || die "cannot read MemTotal from $meminfo"
    if [ "$total_kb" -lt "$MEMORY_LIMIT_FROM_KB" ]; then
        say "No MemoryMax= for $((total_kb / 1024)) MiB of RAM (under 1 GB)"
        rm -f "$memory_dropin"
        rmdir --ignore-fail-on-non-empty "$(dirname "$memory_dropin")" 2>/dev/null || true
        return
    fi
    say "Installing $memory_dropin: MemoryMax=$((total_kb / 2048))M, half of the RAM"
    install -d -m 0755 "$(dirname "$memory_dropin")"
    cat >"$memory_dropin.new" <<DROPIN
# Written by picam-api's install.sh from MemTotal ($((total_kb / 1024)) MiB): half the RAM,
# so a runaway (a leak, a huge request) is killed and restarted before the Pi swaps.
# install.sh rewrites it; put changes in another drop-in (sudo systemctl edit picam-api).
[Service]
MemoryMax=$((total_kb / 2048))M
DROPIN
    chmod 0644 "$memory_dropin.new"
    mv "$memory_dropin.new" "$memory_dropin"
}

running=0

start_service() {
    if [ "$skip_systemctl" = 1 ]; then
        say "Not enabling or starting the service (--skip-systemctl)"
        return
    fi
    systemctl daemon-reload
    systemctl enable --quiet "$service"
    if [ "$start" = 0 ]; then
        say "Enabled $service; not started (--no-start)"
        if systemctl is-active --quiet "$service"; then
            note "the running service keeps the old version until: sudo systemctl restart $service"
        fi
        return
    fi
    say "Starting $service"
    systemctl restart "$service"
    wait_for_health
    running=1
}

# A value from the effective config, as the service reads it.
config_value() {
    "$venv/bin/python" -c 'import sys
from picam_api.config import load_config
section, key = sys.argv[2].split(".")
print(load_config(sys.argv[1])[section][key])' "$config" "$1"
}

wait_for_health() {
    local host
    host=$(config_value server.host)
    case $host in
        "" | 0.0.0.0 | ::) host=127.0.0.1 ;;
        *:*) host="[$host]" ;;
    esac
    if ! "$venv/bin/python" - "http://$host:$(config_value server.port)/api/v1/health" <<'PY'; then
import json, sys, time, urllib.error, urllib.request

deadline = time.monotonic() + 120  # a Pi Zero takes a while to import everything
while True:
    try:
        with urllib.request.urlopen(sys.argv[1], timeout=5):
            print("    healthy: the camera works")
            break
    except urllib.error.HTTPError as exc:  # 503: running, but the camera is unusable
        print(f"    running, but the camera is unusable: {json.load(exc)['camera']['error']}")
        print("    see 'Troubleshooting' in README.md")
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit(f"    no answer from {sys.argv[1]}")
        time.sleep(1)
PY
        systemctl --no-pager status "$service" || true
        die "the service did not come up; its log: journalctl -u $service"
    fi
}

summary() {
    local port ip
    port=$(config_value server.port)
    echo
    if [ "$running" = 1 ]; then
        echo "picam-api is running:"
        echo "  http://$(hostname).local:$port/docs"
        for ip in $(hostname -I 2>/dev/null || true); do
            [[ $ip != *:* ]] || ip="[$ip]"
            echo "  http://$ip:$port/docs"
        done
    else
        echo "picam-api is installed; start it with: sudo systemctl start $service"
    fi
    echo "Log in as: $admin_login"
    echo "Config:    $(system_path "$config")   (then: sudo systemctl restart $service)"
    echo "Data:      $(system_path "$state_dir")"
    echo "Log:       journalctl -u $service"
    echo "Users:     sudo picam-api user add NAME --role viewer|operator"
}

check_system
install_packages
check_python
create_user
make_dirs
install_app
write_config
setup_admin
install_unit
install_memory_limit
start_service
summary
