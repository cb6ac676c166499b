"""Outbound traffic of the container: the launcher's allow-list proxy on a Unix socket
(``proxy.py``, ``policy.py``, ``http.py``), the in-container bridge that gives the inner
gateway a loopback HTTP proxy onto that socket (``bridge.py``), their counters and
Prometheus export (``stats.py``, ``metrics.py``), and the event-loop thread and socket
helpers both use (``loop.py``, ``unix_socket.py``). See docs/EGRESS.md.
"""
