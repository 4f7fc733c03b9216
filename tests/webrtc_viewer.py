"""An aiortc viewer that offers over WHEP and decodes what comes back (tests only)."""
from __future__ import annotations

import asyncio
import contextlib

import aiortc
import requests

from conftest import ADMIN_PASSWORD, basic

ADMIN = basic("admin", ADMIN_PASSWORD)
SDP = {"Content-Type": "application/sdp"}
JSON = {"Content-Type": "application/json"}


async def offer_sdp(pc) -> str:
    pc.addTransceiver("video", direction="recvonly")
    await pc.setLocalDescription(await pc.createOffer())
    return pc.localDescription.sdp


class Viewer:
    """An aiortc peer that sends its offer to the server and decodes what comes back."""

    def __init__(self, url: str, headers: dict | None = None):
        self.url = url
        self.headers = ADMIN if headers is None else headers
        self.pc = aiortc.RTCPeerConnection(aiortc.RTCConfiguration(iceServers=[]))
        self.response: requests.Response | None = None
        self._track = asyncio.get_running_loop().create_future()
        self.pc.on("track", self._track.set_result)

    async def connect(self) -> requests.Response:
        sdp = await offer_sdp(self.pc)
        self.response = await asyncio.to_thread(
            requests.post, self.url, data=sdp, headers={**self.headers, **SDP}, timeout=15)
        if self.response.status_code == 201:
            await self.pc.setRemoteDescription(
                aiortc.RTCSessionDescription(self.response.text, "answer"))
        return self.response

    async def frames(self, count: int) -> list:
        track = await asyncio.wait_for(self._track, 10)
        return [await asyncio.wait_for(track.recv(), 10) for _ in range(count)]

    async def close(self, delete: bool = True) -> None:
        """Close the peer and, as a WHEP client does, DELETE its session (404: ended already)."""
        await self.pc.close()
        if delete and self.response is not None and self.response.status_code == 201:
            location = self.url.split("/api/", 1)[0] + self.response.headers["Location"]
            await asyncio.to_thread(requests.delete, location, headers={**ADMIN, **JSON}, timeout=10)


@contextlib.contextmanager
def received_h264():
    """Every H.264 access unit (Annex B) aiortc's decoders get in this process meanwhile:
    the bytes a viewer received, before they are decoded."""
    from aiortc.codecs import h264

    units: list[bytes] = []
    decode = h264.H264Decoder.decode

    def recorded(self, encoded_frame):
        units.append(bytes(encoded_frame.data))
        return decode(self, encoded_frame)

    h264.H264Decoder.decode = recorded
    try:
        yield units
    finally:
        h264.H264Decoder.decode = decode


def nal_units(annex_b: bytes) -> list[bytes]:
    """The NAL units of an Annex B byte stream, without their start codes."""
    parts = annex_b.replace(b"\x00\x00\x00\x01", b"\x00\x00\x01").split(b"\x00\x00\x01")
    return [part for part in parts if part]


def sps_profile(nal: bytes) -> tuple[int, bool]:
    """(profile_idc, constraint_set1_flag) of a sequence parameter set NAL unit;
    66 with constraint_set1 is constrained baseline."""
    assert nal[0] & 0x1F == 7, "not an SPS"
    return nal[1], bool(nal[2] & 0x40)
