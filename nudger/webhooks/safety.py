"""One HTTP POST to a URL someone typed into the console, without reaching inside the network.

The host is resolved once; every address it resolves to must be public
(not private, loopback, link-local, shared, multicast or reserved) unless
NUDGER_WEBHOOK_ALLOW_PRIVATE=1; the request then goes to the address that was
checked, with the name kept in the Host header and in TLS (SNI and the
certificate check), so a second lookup cannot point it elsewhere (DNS
rebinding). Redirects are not followed: a 3xx is an answer like any other.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass

import httpx

# Bounded: a slow receiver costs one worker this long at most.
TIMEOUT = httpx.Timeout(10.0, connect=5.0)
MAX_ERROR = 300


class Refused(Exception):
    """The URL may not be called (its address is not public, or it cannot be resolved)."""


@dataclass
class Answer:
    """What a POST got: the HTTP status (None: no answer) and what went wrong, in words."""

    status: int | None
    error: str
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def public(address: str) -> bool:
    """Say whether an IP address is on the public internet."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def resolve(host: str, port: int, allow_private: bool) -> str:
    """Return the address to connect to; raise Refused if any address of `host` is not public.

    Every address is checked, not only the first: a name that resolves to a
    public and a private address could be answered with either later.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise Refused(f"cannot resolve {host}: {e}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise Refused(f"cannot resolve {host}")
    if not allow_private:
        blocked = [a for a in addresses if not public(a)]
        if blocked:
            raise Refused(
                f"{host} resolves to {blocked[0]}, a private, loopback or link-local address "
                "(set NUDGER_WEBHOOK_ALLOW_PRIVATE=1 to allow it)"
            )
    return addresses[0]


def check_url(url: str) -> httpx.URL:
    """Return the parsed URL if it is an http(s) URL with a host; raise ValueError otherwise."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as e:
        raise ValueError(f"not a URL: {e}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError("must be an http:// or https:// URL with a host")
    if parsed.userinfo:
        raise ValueError("must not hold a user name or password")
    return parsed


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_private: bool,
    auth: tuple[str, str] | None = None,
) -> Answer:
    """POST `body` to `url` at the address checked by `resolve`; never raises for the network."""
    started = time.perf_counter()

    def took() -> int:
        return int((time.perf_counter() - started) * 1000)

    try:
        parsed = check_url(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        address = resolve(parsed.host, port, allow_private)
    except (ValueError, Refused) as e:
        return Answer(None, str(e)[:MAX_ERROR], took())
    host_header = parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
    if ":" in parsed.host:  # an IPv6 literal keeps its brackets in Host
        host_header = f"[{parsed.host}]" + ("" if parsed.port is None else f":{parsed.port}")
    target = parsed.copy_with(host=address)
    extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
    try:
        with httpx.Client(timeout=TIMEOUT, follow_redirects=False, trust_env=False) as client:
            response = client.post(
                target,
                content=body,
                headers={**headers, "Host": host_header},
                auth=auth,
                extensions=extensions,
            )
    except httpx.TimeoutException:
        return Answer(None, "timed out", took())
    except httpx.HTTPError as e:
        return Answer(None, (f"{type(e).__name__}: {e}")[:MAX_ERROR], took())
    error = "" if 200 <= response.status_code < 300 else response.text[:MAX_ERROR]
    return Answer(response.status_code, error, took())
