# shellcheck shell=bash
# shellcheck disable=SC2034  # the variables are for the scripts that source this
# Sourced by install.sh and uninstall.sh: where the service lives and how the
# scripts talk. Every path is under a root directory, / unless --root DIR says
# otherwise (the tests install into a throwaway tree that way; the picam user,
# being system-wide, is real either way).

service=picam-api
user=picam

# The paths of an install under root directory $1.
set_paths() {
    local r=${1%/}
    app_dir=$r/opt/$service
    venv=$app_dir/venv
    config_dir=$r/etc/$service
    config=$config_dir/config.toml
    state_dir=$r/var/lib/$service
    unit=$r/etc/systemd/system/$service.service
    memory_dropin=$r/etc/systemd/system/$service.service.d/memory.conf
    command_wrapper=$r/usr/local/bin/$service
}

say() { printf '==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }
die() {
    printf '%s: %s\n' "$(basename "$0")" "$*" >&2
    exit 1
}

# A directory given to --root: made absolute, and it must exist.
root_dir() {
    [ -d "${1:-}" ] || die "--root needs an existing directory"
    (cd "$1" && pwd)
}

require_root() {
    [ "$(id -u)" -eq 0 ] || die "it changes the system, so run it as root: sudo $0"
}

# Is systemd running this system (sd_booted(3)), so that systemctl works?
systemd_running() {
    [ -d /run/systemd/system ]
}
