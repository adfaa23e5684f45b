"""The node's L7 proxy: a transparent HTTP/1.1 policy proxy and its access log.

* :mod:`.http`: the proxy process (asyncio on uvloop, httptools parser), ``python -m hubblepy.proxy http``;
  it and :mod:`.accesslog` load from their compiled build when it is fresh (:mod:`hubblepy.native`);
* :mod:`.state`: the node's endpoints, ipcache, identities and L7 rule table as the proxy loads them;
* :mod:`.accesslog`: Cilium ``LogRecord`` records and their unix-socket transport to the node;
* :mod:`.sockets`: the IP_TRANSPARENT listener and the client-address upstream socket.
"""

from hubblepy import native

native.install()
