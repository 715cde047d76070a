"""What a node needs to know of queries before it opens one: the default number of
results a `swim.runtime.queries.QueryStream` buffers, and the names the runtime keeps
for its own queries (`swim.runtime.keyops`).

A module of its own so that a node checks every received query's name without
importing the streams, which load on its first query.
"""

from __future__ import annotations

from typing import Final

#: Default number of results a `QueryStream` buffers for its consumer.
DEFAULT_QUERY_BUFFER: Final = 1024
#: Queries whose names start with this are the runtime's own (the key commands of
#: `swim.runtime.keyops`): answered by the node itself, never by an application.
INTERNAL_PREFIX: Final = "_swim_"


def is_internal(query_name: str) -> bool:
    """Whether a query of this name is the runtime's own."""
    return query_name.startswith(INTERNAL_PREFIX)
