"""``clerksync inspect``: a local web page over the delivery log (the live list, a delivery
with what it changed, replay, the chart, doctor), loopback only unless given a token.
Templates and htmx (0BSD) ship inside the package; nothing is fetched at run time.
"""

from clerksync.devtools.inspector.access import check_bind
from clerksync.devtools.inspector.app import create_inspector

__all__ = ["check_bind", "create_inspector"]
