"""One verifying TLS context per process, for every HTTP client clerksync makes.

httpx builds a new one for each client it makes, loading the CA bundle each time: about
30 ms of CPU, twice per Clerk SDK object (its sync and async clients), once per ``send``.
The context is the one httpx would build (certifi's bundle, or ``SSL_CERT_FILE`` /
``SSL_CERT_DIR`` as set when it is first asked for). Shared across threads by HTTP/1.1
clients only, as all of clerksync's are: httpcore sets ALPN on it for each connection.
"""

from __future__ import annotations

import functools
import ssl


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's TLS context, built on the first call."""
    import httpx

    return httpx.create_ssl_context()
