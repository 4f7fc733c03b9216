"""systemd's end of $NOTIFY_SOCKET, for tests of what the service tells systemd."""
from __future__ import annotations

import secrets
import socket
import time


class NotifySocket:
    """A datagram socket bound where $NOTIFY_SOCKET points; ``@`` is the abstract namespace."""

    def __init__(self, address: str):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)

    @classmethod
    def abstract(cls) -> "NotifySocket":
        """One in the abstract namespace: any user may send to it, whatever file modes say."""
        return cls(f"@picam-api-test-{secrets.token_hex(8)}")

    def receive(self, within: float) -> list[str]:
        """Every message that arrives within ``within`` seconds."""
        messages = []
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                messages.append(self.sock.recv(4096).decode())
            except socket.timeout:
                break
        return messages

    def close(self) -> None:
        self.sock.close()
