#!/bin/sh
# mmdebstrap's customize hook for the VM image (tests/vm/image.py): $1 is the
# new root file system. It makes a Debian bookworm that boots straight to
# systemd under QEMU and looks, to install.sh, like a fresh Raspberry Pi OS
# Lite: a first user "pi" with password-less sudo, and the checkout in its home.
set -eu
root=$1
here=$(dirname "$0")

echo picam-vm >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tpicam-vm\n' >"$root/etc/hosts"
echo '/dev/vda / ext4 defaults,noatime 0 1' >"$root/etc/fstab"

# QEMU's user network: the guest is always 10.0.2.15. A static address, so that
# no DHCP wait stands between boot and the port forward to the service.
cat >"$root/etc/systemd/network/10-qemu.network" <<'NETWORK'
[Match]
Name=en*

[Network]
Address=10.0.2.15/24
Gateway=10.0.2.2
NETWORK
chroot "$root" systemctl enable --quiet systemd-networkd

# The host's hands in the VM (see agent.py).
install -m 0755 "$here/agent.py" "$root/usr/local/sbin/picam-vm-agent"
cat >"$root/etc/systemd/system/picam-vm-agent.service" <<'UNIT'
[Unit]
Description=tests/vm agent: runs the test host's commands

[Service]
ExecStart=/usr/local/sbin/picam-vm-agent
Restart=always
RestartSec=1s

[Install]
WantedBy=multi-user.target
UNIT
chroot "$root" systemctl enable --quiet picam-vm-agent

# A video4linux device for the unit's DevicePolicy: vivid, the kernel's virtual
# camera, loaded at boot as a camera driver would be.
echo vivid >"$root/etc/modules-load.d/vivid.conf"

# apt's daily timers would take dpkg's lock in the middle of a test.
chroot "$root" systemctl mask --quiet apt-daily.timer apt-daily-upgrade.timer

chroot "$root" useradd --create-home --shell /bin/bash --groups sudo pi
echo 'pi ALL=(ALL) NOPASSWD: ALL' >"$root/etc/sudoers.d/010_pi-nopasswd"
chmod 0440 "$root/etc/sudoers.d/010_pi-nopasswd"

# The VM has no way out (QEMU's restrict=on): apt has no sources, so
# install.sh's apt-get finds its python3-venv already installed, and pip takes
# the wheels that the host fetched from PyPI and put beside the checkout.
rm -f "$root/etc/apt/sources.list" "$root"/etc/apt/sources.list.d/*
cat >"$root/etc/pip.conf" <<'PIP'
[global]
no-index = true
find-links = /var/cache/picam-vm/wheels
PIP
# The build host's resolver, which mmdebstrap copied in, is not the VM's.
rm -f "$root/etc/resolv.conf"
