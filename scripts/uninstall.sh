#!/usr/bin/env bash
# Remove the picam-api service installed by install.sh. Photos, the database and
# the config are kept unless --purge. The system user picam is kept, as Debian
# keeps system users: files anywhere may still carry its uid, which a user made
# later would otherwise inherit.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=scripts/_system.sh
source "$here/_system.sh"

usage() {
    cat <<'USAGE'
Usage: sudo scripts/uninstall.sh [--purge]

Stops and removes the picam-api service, its program files and the picam-api
command. Keeps /var/lib/picam-api (photos, users) and /etc/picam-api.

  --purge            delete /var/lib/picam-api and /etc/picam-api too
  --root DIR         uninstall from under DIR instead of / (as install.sh --root)
  --skip-systemctl   neither need nor touch systemd
  -h, --help         show this help
USAGE
}

purge=0
root=/
skip_systemctl=0
while [ $# -gt 0 ]; do
    case $1 in
        --purge) purge=1 ;;
        --root) root=$(root_dir "${2:-}"); shift ;;
        --skip-systemctl) skip_systemctl=1 ;;
        -h | --help) usage; exit 0 ;;
        *) usage >&2; die "unknown option: $1" ;;
    esac
    shift
done
set_paths "$root"
require_root

if [ "$skip_systemctl" = 0 ] && systemd_running; then
    say "Stopping and disabling $service"
    systemctl disable --now --quiet "$service" 2>/dev/null || true
fi
say "Removing $unit, $app_dir and $command_wrapper"
rm -f "$unit" "$command_wrapper" "$memory_dropin"
# The drop-in directory goes only if nothing but install.sh's file was in it.
rmdir --ignore-fail-on-non-empty "$(dirname "$memory_dropin")" 2>/dev/null || true
rm -rf "$app_dir"
if [ "$skip_systemctl" = 0 ] && systemd_running; then
    systemctl daemon-reload
    systemctl reset-failed "$service" 2>/dev/null || true
fi

if [ "$purge" = 1 ]; then
    say "Deleting $state_dir and $config_dir (--purge)"
    rm -rf "$state_dir" "$config_dir"
else
    say "Kept $state_dir (photos, users) and $config_dir; --purge deletes them"
fi
