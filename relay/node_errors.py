"""NODE_ERROR aggregation: several node failures in a short window become one NodeStatusEvent.

Upstream's relay holds a NODE_ERROR for an aggregation window (10 s by default) and appends the
names of other nodes that fail with the same message meanwhile, so a client sees one
``NODE_ERROR [a, b, c]: <message>`` instead of one line per node when, say, a rollout restarts
every node. Here errors are grouped by message during the window opened by the first one; when the
window closes each distinct message is sent once with the names of its nodes (in the order they
failed, each name once). Nothing is dropped: a different message gets its own event.

The relay flushes what is held early, before it sends any other node status event (so a
NODE_CONNECTED of a returning node never overtakes its NODE_ERROR), and at the end of a stream.
A window of 0 sends every error at once.
"""

from __future__ import annotations


class ErrorAggregator:
    """Holds node errors until the window started by the first one closes."""

    def __init__(self, window_s: float) -> None:
        self.window_s = max(0.0, window_s)
        self._by_message: dict[str, list[str]] = {}
        self._deadline: float | None = None

    def __bool__(self) -> bool:
        return bool(self._by_message)

    def add(self, node_name: str, message: str, now: float) -> None:
        """Hold the failure of ``node_name``; opens the window when nothing is held."""
        names = self._by_message.setdefault(message, [])
        if node_name not in names:
            names.append(node_name)
        if self._deadline is None:
            self._deadline = now + self.window_s

    def due(self, now: float) -> bool:
        """True when errors are held and their window has closed."""
        return self._deadline is not None and now >= self._deadline

    def take(self) -> list[tuple[list[str], str]]:
        """Everything held as (node names, message) pairs, first message first; empties the holder."""
        out = [(names, message) for message, names in self._by_message.items()]
        self._by_message = {}
        self._deadline = None
        return out
