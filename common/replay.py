"""The replay protocol: a subscriber asks a sampler for ticks it missed, by sequence number.

Each sampler binds a ROUTER socket beside its PUB socket, at `replay_endpoint(pub_endpoint)`:
the PUB port + 1 for tcp, the PUB path + ".replay" for ipc. A subscriber's DEALER sends

    frame 0: REQUEST_TOPIC    b"pcw.replay?"
    frame 1: payload          msgpack of ReplayRequest

and the sampler answers with every tick it still holds in [from_seq, to_seq] (each in the tick's
own three frames, see common.messages), then one closing message

    frame 0: END_TOPIC        b"pcw.replay."
    frame 1: payload          msgpack of ReplayEnd

which says what the sampler held, so the subscriber can tell a filled gap from a lost one.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

REQUEST_TOPIC = b"pcw.replay?"
END_TOPIC = b"pcw.replay."
MAX_TICKS_PER_REPLY = 2000

Seq = Annotated[int, msgspec.Meta(ge=0)]
SamplerId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class ReplayError(ValueError):
    """A replay message that is not valid; the text says why."""


class ReplayRequest(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Ask for the ticks with from_seq <= seq <= to_seq of one sampler run."""

    sampler_id: SamplerId
    from_seq: Seq
    to_seq: Seq

    def to_frames(self) -> list[bytes]:
        """Encode as [REQUEST_TOPIC, payload]."""
        return [REQUEST_TOPIC, msgspec.msgpack.encode(self)]


class ReplayEnd(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Close a reply to `request`: how many ticks were sent, and what this sampler run held.

    sampler_id is the answering sampler's current run; when it differs from the request's,
    that run is over and none of its ticks can be replayed any more.
    """

    request: ReplayRequest
    sampler_id: SamplerId
    sent: Seq
    held_from_seq: Seq | None
    held_to_seq: Seq | None

    def to_frames(self) -> list[bytes]:
        """Encode as [END_TOPIC, payload]."""
        return [END_TOPIC, msgspec.msgpack.encode(self)]


def decode_request(frames: list[bytes]) -> ReplayRequest:
    """Decode a request, or raise ReplayError."""
    return _decode(frames, REQUEST_TOPIC, _REQUEST_DECODER)


def decode_end(frames: list[bytes]) -> ReplayEnd:
    """Decode the closing message of a reply, or raise ReplayError."""
    return _decode(frames, END_TOPIC, _END_DECODER)


def _decode(frames: list[bytes], topic: bytes, decoder: msgspec.msgpack.Decoder) -> object:
    if len(frames) != 2 or frames[0] != topic:
        raise ReplayError(f"not a {topic!r} message ({len(frames)} frames)")
    try:
        return decoder.decode(frames[1])
    # msgspec raises UnicodeDecodeError, not DecodeError, for a map key that is not UTF-8
    except (msgspec.DecodeError, UnicodeDecodeError) as error:
        raise ReplayError(f"bad replay payload: {error}") from None


_REQUEST_DECODER = msgspec.msgpack.Decoder(ReplayRequest)
_END_DECODER = msgspec.msgpack.Decoder(ReplayEnd)


def replay_endpoint(pub_endpoint: str) -> str:
    """Return the sampler's replay endpoint for its publishing endpoint."""
    if pub_endpoint.startswith("tcp://"):
        address, _, port = pub_endpoint.rpartition(":")
        if port.isdigit():
            return f"{address}:{int(port) + 1}"
        raise ValueError(f"a tcp endpoint needs a numeric port: {pub_endpoint}")
    return pub_endpoint + ".replay"
