"""Where the broker listens: plain AMQP (5672 by convention) and AMQP over TLS (5671),
any number of each, IPv4 or IPv6, as RabbitMQ's ``listeners.tcp.*`` and
``listeners.ssl.*``. TLS is 1.2 or later, with OpenSSL's secure cipher defaults less
anything without forward secrecy; client certificates are asked for and checked against
the CA when ``verify_peer``, and required with ``fail_if_no_peer_cert``, as RabbitMQ's
``ssl_options``."""

from __future__ import annotations

import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class Listener:
    host: str
    port: int
    tls: ssl.SSLContext | None = None

    @property
    def scheme(self) -> str:
        return "AMQP/TLS" if self.tls is not None else "AMQP"


def format_address(host: str, port: int | str) -> str:
    """``HOST:PORT``, with an IPv6 address in brackets: what ``parse_address`` reads."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``PORT`` (all interfaces, as RabbitMQ's
    ``listeners.tcp.1 = 5672``); ValueError with a precise message otherwise."""
    text = text.strip()
    if text.isdigit():
        return "::", _port(text, text)
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"'{text}' is not HOST:PORT ([ADDRESS]:PORT for IPv6)")
    return host, _port(port, text)


def _port(port: str, text: str) -> int:
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"'{text}': the port must be a number from 0 to 65535")
    return int(port)


def tls_context(
    certfile: str,
    keyfile: str | None = None,
    cacertfile: str | None = None,
    verify_peer: bool = False,
    fail_if_no_peer_cert: bool = False,
) -> ssl.SSLContext:
    """A server context as RabbitMQ's ``ssl_options`` describe it; ValueError with the
    reason when a file cannot be used."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers("ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:!aNULL:!MD5:!DSS")
    context.options |= ssl.OP_NO_COMPRESSION
    try:
        context.load_cert_chain(certfile, keyfile)
        if cacertfile:
            context.load_verify_locations(cacertfile)
    except (OSError, ssl.SSLError) as error:
        raise ValueError(f"TLS: {getattr(error, 'strerror', None) or error}") from None
    if verify_peer:
        if not cacertfile:
            raise ValueError("TLS: verify_peer needs a CA certificate (cacertfile)")
        context.verify_mode = ssl.CERT_REQUIRED if fail_if_no_peer_cert else ssl.CERT_OPTIONAL
    return context


COMMON_NAME = "common_name"
SUBJECT_ALTERNATIVE_NAME = "subject_alternative_name"


def certificate_user(peer_certificate: dict | None, login_from: str = COMMON_NAME) -> str | None:
    """The user name a client certificate logs in as with SASL EXTERNAL: its subject's
    common name, or its first DNS subject alternative name (RabbitMQ's
    ``ssl_cert_login_from`` = ``common_name`` / ``subject_alternative_name`` with
    ``ssl_cert_login_san_type = dns``, index 0)."""
    if not peer_certificate:
        return None
    if login_from == SUBJECT_ALTERNATIVE_NAME:
        alternatives = peer_certificate.get("subjectAltName", ())
        names = [value for kind, value in alternatives if kind == "DNS"]
        return names[0] if names else None
    for rdn in peer_certificate.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return value
    return None
