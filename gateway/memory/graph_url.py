"""A Neo4j server's URL as the driver takes it (apart from graph.py, which imports Kuzu, so that the
settings can check the URL at start without loading a database)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

SCHEMES = ("bolt", "bolt+s", "bolt+ssc", "neo4j", "neo4j+s", "neo4j+ssc")


def neo4j_target(url: str) -> tuple[str, tuple[str, str] | None, str | None]:
    """The driver's URI (no credentials, no path), its basic auth and the database of `url`."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        # The URL itself is never in the message: it may carry a password.
        raise ValueError(f"a Neo4j URL is bolt:// or neo4j:// (+s, +ssc), not {parts.scheme or 'schemeless'}")
    if not parts.hostname:
        raise ValueError("a Neo4j URL names its host")
    host = parts.netloc.rpartition("@")[2]  # host and port as written (an IPv6 host keeps its brackets)
    auth = (unquote(parts.username or ""), unquote(parts.password or "")) if parts.username else None
    database = parts.path.strip("/") or None
    return urlunsplit((parts.scheme, host, "", parts.query, "")), auth, database
