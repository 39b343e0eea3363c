"""Errors the TCP layer raises at its user (never for network input). Imports nothing."""

from __future__ import annotations


class TcpError(Exception):
    """Base of the TCP layer's exceptions."""


class InvalidStateError(TcpError):
    """A user call the current state does not allow (RFC 9293 §3.10, state.USER_CALLS):
    str() is the RFC's error text, such as "connection closing"."""
