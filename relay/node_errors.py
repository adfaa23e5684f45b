"""NODE_ERROR aggregation: node failures within a short window become one NodeStatusEvent.

Upstream's relay holds a NODE_ERROR for an aggregation window (10 s by default) and adds the names
of other nodes that fail meanwhile, so a client sees one ``NODE_ERROR [a, b, c]: <message>``
instead of one line per node when, say, a rollout restarts every node. Upstream merges only errors
whose message is identical; here every error of the window is merged and the event carries the
message of the first one, because nodes dying together rarely fail with the very same words
("Socket closed", "Connection reset by peer", ...). Each node is named once, in the order it
failed. The relay logs every error with its own message, so no message is lost.

The relay flushes what is held early, before it sends any other node status event (so a
NODE_CONNECTED of a returning node never overtakes its NODE_ERROR), and at the end of a stream.
A window of 0 sends every error at once.
"""

from __future__ import annotations


class ErrorAggregator:
    """Holds node errors until the window opened by the first one closes."""

    def __init__(self, window_s: float) -> None:
        self.window_s = max(0.0, window_s)
        self._names: list[str] = []
        self._message = ""
        self._deadline: float | None = None

    def __bool__(self) -> bool:
        return bool(self._names)

    def add(self, node_name: str, message: str, now: float) -> None:
        """Hold the failure of ``node_name``; the first error opens the window and gives the message."""
        if self._deadline is None:
            self._deadline = now + self.window_s
            self._message = message
        if node_name not in self._names:
            self._names.append(node_name)

    def due(self, now: float) -> bool:
        """True when errors are held and their window has closed."""
        return self._deadline is not None and now >= self._deadline

    def take(self) -> tuple[list[str], str] | None:
        """The held (node names, first message), or None; empties the holder."""
        if not self._names:
            return None
        held = (self._names, self._message)
        self._names, self._message, self._deadline = [], "", None
        return held
