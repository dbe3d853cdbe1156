"""HTTP sessions for the estate: straight to the host, or through the environment's proxy for CRL/AIA downloads.

Devices (WS-MAN, the WebUI) and servers are always reached directly: their traffic, credentials included,
never goes to a proxy. CRL and AIA locations may be public (a commercial CA's provisioning certificate), so
downloads honour ``http_proxy`` / ``https_proxy`` / ``no_proxy``.

Why the sessions do not let requests read the environment itself (``trust_env``): requests iterates
``os.environ`` on every request to find proxies, while pytest sets and removes ``PYTEST_CURRENT_TEST`` in its
main thread as tests run; a prefetch thread iterating at that moment fails (``KeyError: 'PYTEST_CURRENT_TEST'``,
seen at 100 clients). The proxy settings are read once instead, when this module is imported; the plugin
imports it at start-up, in the main thread.
"""
from __future__ import annotations

import urllib.request
from urllib.parse import urlsplit

import requests

PROXIES: dict[str, str] = urllib.request.getproxies_environment()


def direct() -> requests.Session:
    """A session that goes straight to the host, whatever the environment's proxy settings."""
    session = requests.Session()
    session.trust_env = False
    return session


def proxies_for(url: str, proxies: dict[str, str] | None = None) -> dict[str, str]:
    """The proxies a download of ``url`` goes through: the environment's, unless ``no_proxy`` exempts the host."""
    proxies = PROXIES if proxies is None else proxies
    host = urlsplit(url).hostname or ""
    if not proxies or urllib.request.proxy_bypass_environment(host, proxies):
        return {}
    return {scheme: proxy for scheme, proxy in proxies.items() if scheme != "no"}
