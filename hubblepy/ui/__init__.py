"""`hubble ui`: a live service map of flows in the browser.

* :mod:`hubblepy.ui.model` turns flows into map nodes and edges (source, destination, port,
  protocol) with verdict counts, and keeps the recent flows of each edge for the flow table;
* :mod:`hubblepy.ui.feed` reads flows from a server or relay (``grpc.aio``) or from a file;
* :mod:`hubblepy.ui.server` is the aiohttp application: the page, its WebSocket of batched edge
  deltas, and the flow-table API;
* :mod:`hubblepy.ui.cli` is the command (``hubble ui``).

The page itself lives in ``static/`` with a vendored, pinned Cytoscape.js (see
``static/vendor/README.md``): nothing is loaded from the network at run time.
"""
