"""One verifying TLS context per process, for every HTTP client clerksync makes.

httpx builds a new one for each client it makes, loading the CA bundle each time: about
30 ms of CPU, twice per Clerk SDK object (its sync and async clients), once per ``send``.
The context is the one httpx would build (certifi's bundle, or ``SSL_CERT_FILE`` /
``SSL_CERT_DIR`` as set when it is first asked for), and is safe to share across threads.
"""

from __future__ import annotations

import functools
import ssl


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The process's TLS context, built on first use (an http:// URL never needs one)."""
    import httpx

    return httpx.create_ssl_context()
