"""The exceptions of the protocol layer.

    ProtocolError                 base class, never raised itself
    ├── LocalProtocolError        the caller misused the API (a bug on our side)
    └── RemoteProtocolError       the peer sent something invalid

Every decoder and state machine in `omnirelay.protocol` raises only `RemoteProtocolError` for
arbitrary input from the network; the property tests in tests/protocol hold it to that. The
`code` is short, stable and safe to show to the peer (it never contains the offending input);
`str(exc)` is a human sentence that may quote a bounded prefix of it.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """A violation of one of the wire protocols; use one of the two subclasses."""

    code: str

    def __init__(self, message: str, *, code: str = "protocol_error") -> None:
        if type(self) is ProtocolError:
            raise TypeError(
                "ProtocolError is abstract: raise LocalProtocolError or RemoteProtocolError"
            )
        super().__init__(message)
        self.code = code


class LocalProtocolError(ProtocolError):
    """We asked a protocol object to do something its state does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol; the connection should be closed."""
