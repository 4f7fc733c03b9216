"""tests/vm: the install and the hardened unit under a real systemd, in a QEMU VM."""
