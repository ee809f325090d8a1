"""SRTP with AES-GCM for the fast path: the outbound session key and salt the C stream
protects RTP with.

libsrtp spent about a quarter of the fast path's CPU at 1,000 listeners (perf, see
docs/decisions/005-srtp-in-the-stream.md), most of it not in AES: finding the stream of
a session by its SSRC, the replay window, re-initialising the cipher through libsrtp's
layers, and cache misses over each listener's 19 KB session. For the AEAD profiles (RFC 7714; aiortc
offers AES-256-GCM first) the C stream protects the RTP itself with one OpenSSL cipher
context per listener, keyed once (transport/native/srtp.c): the IV from SSRC, rollover
counter and sequence number, the header as associated data, the tag appended. libsrtp
keeps the rest (RTCP both ways, the receiving side, AES-CM peers).

The master key and salt are the ones aiortc's DTLS transport gave libsrtp, exported
again from the same DTLS session the same way (RFC 5764 4.2); the session key and salt
come from them by SRTP's key derivation (RFC 3711 4.3.1, the AES-CM PRF, key
derivation rate 0), as RFC 7714 11 prescribes for AES-GCM.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from pylibsrtp import Policy

from . import aiortc_seams

# RFC 3711 4.3.1 labels.
LABEL_ENCRYPTION = 0x00
LABEL_SALT = 0x02
SESSION_SALT_SIZE = 12
GCM_PROFILES = {Policy.SRTP_PROFILE_AEAD_AES_128_GCM, Policy.SRTP_PROFILE_AEAD_AES_256_GCM}


def derive(master_key: bytes, master_salt: bytes, label: int, size: int) -> bytes:
    """RFC 3711 4.3.1 with a key derivation rate of 0: AES-CM keyed with the master key,
    from x * 2^16, where x is the master salt (padded to 112 bits, as for a 96-bit GCM
    salt) with the label XORed into its eighth byte."""
    x = bytearray(master_salt.ljust(14, b"\x00"))
    x[7] ^= label
    encryptor = Cipher(algorithms.AES(master_key), modes.CTR(bytes(x) + b"\x00\x00")).encryptor()
    return encryptor.update(bytes(size)) + encryptor.finalize()


def session_keys(master_key: bytes, master_salt: bytes) -> tuple[bytes, bytes]:
    """(session key, session salt) for SRTP's RTP with AES-GCM."""
    return (
        derive(master_key, master_salt, LABEL_ENCRYPTION, len(master_key)),
        derive(master_key, master_salt, LABEL_SALT, SESSION_SALT_SIZE),
    )


def outbound_keys(transport: Any) -> tuple[bytes, bytes] | None:
    """The session key and salt of what aiortc's DTLS `transport` sends, when it
    negotiated an AES-GCM profile; None otherwise (libsrtp protects then).

    Mirrors what aiortc's DTLS transport does to key libsrtp: the profile the handshake
    selected, the keying material exported under RFC 5764's label, and the client's
    half or the server's by the transport's role.
    """
    ssl, profiles, server = aiortc_seams.srtp_keying(transport)
    if ssl is None:  # no handshake yet
        return None
    selected = ssl.get_selected_srtp_profile()
    profile = next((p for p in profiles if p.openssl_profile == selected), None)
    if profile is None or profile.libsrtp_profile not in GCM_PROFILES:
        return None
    material = ssl.export_keying_material(
        b"EXTRACTOR-dtls_srtp", 2 * (profile.key_length + profile.salt_length)
    )
    master = profile.get_key_and_salt(material, 1 if server else 0)
    return session_keys(master[: profile.key_length], master[profile.key_length :])
