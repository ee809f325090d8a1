"""Types of media_node._fanout (media_node/native/fanout.c)."""

from collections.abc import Callable, Iterable
from typing import Any, Final

from typing_extensions import Buffer

def send(streams: Iterable[Stream], payload: Buffer, pts: int, /) -> int: ...
def upkeep(streams: Iterable[Stream], pts: int, /) -> list[Stream]: ...
def use_srtp(protect: int, protect_rtcp: int, unprotect_rtcp: int, /) -> None: ...
def use_openssl(
    ctx_new: int,
    ctx_free: int,
    encrypt_init: int,
    encrypt_update: int,
    encrypt_final: int,
    ctrl: int,
    aes_128_gcm: int,
    aes_256_gcm: int,
    /,
) -> None: ...
def gcm_engine(name: str | None = None, /) -> str: ...
def send_calls() -> int: ...
def consent_timing(interval: float = 0, timeout: float = 0) -> tuple[float, float]: ...
def hmac_sha1(key: Buffer, data: Buffer, /) -> bytes: ...
def crc32(data: Buffer, /) -> int: ...
def stun_authentic(message: Buffer, key: Buffer, /) -> bool: ...

class Stream:
    ssrc: Final[int]
    sequence: Final[int]
    rollover: Final[int]
    timestamp_origin: Final[int]
    sent: Final[int]
    octets: Final[int]
    dropped: Final[int]
    receiver_reports: Final[int]
    nacks: Final[int]
    packets_lost: Final[int]
    jitter: Final[int]
    consent_checks: Final[int]
    consent_responses: Final[int]
    consent_answers: Final[int]
    @property
    def round_trip_time(self) -> float | None: ...
    @property
    def fraction_lost(self) -> float | None: ...
    @property
    def routed(self) -> bool: ...
    @property
    def consent_age(self) -> float | None: ...
    @property
    def consent_expired(self) -> bool: ...
    def __init__(
        self,
        owner: object,
        session: int,
        ssrc: int,
        sequence: int,
        timestamp_origin: int,
        inbound_owner: object = None,
        inbound_session: int = 0,
    ) -> None: ...
    def configure(self, payload_type: int, extension: Buffer, cname: Buffer) -> None: ...
    def route(self, host: str, port: int, fd: int = -1) -> None: ...
    def ice(
        self,
        local_username: str,
        local_password: str,
        remote_username: str,
        remote_password: str,
        controlling: bool,
        tie_breaker: int,
        priority: int,
    ) -> None: ...
    def close(self) -> None: ...
    def use_gcm(self, key: bytes, salt: bytes) -> None: ...
    def sender_report(self, ntp_time: int, pts: int) -> bytes: ...
    def send_report(self, ntp_time: int, pts: int) -> bool: ...
    def take_rtcp(self, packet: Buffer, /) -> None: ...

class Tap:
    original: Callable[..., Any] | None
    def __init__(
        self, stream: Stream, original: Callable[[bytes, tuple[Any, ...]], None], socket: int = -1
    ) -> None: ...
    def __call__(self, data: bytes, addr: tuple[Any, ...], /) -> None: ...
