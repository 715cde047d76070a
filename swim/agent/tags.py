"""The agent's names for the tag and user-event codec, which lives in `swim.core.tags`
(the core filters queries by tags, and applications read tags without the agent)."""

from swim.core.tags import (
    EVENT_MAGIC,
    EVENT_NAME_MAX_BYTES,
    TAGS_MAGIC,
    MalformedTags,
    TagError,
    UserEvent,
    check_key,
    decode_tags_untrusted,
    decode_user_event_untrusted,
    encode_tags,
    encode_user_event,
    parse_tag_assignment,
    tags_of,
)

__all__ = [
    "EVENT_MAGIC",
    "EVENT_NAME_MAX_BYTES",
    "TAGS_MAGIC",
    "MalformedTags",
    "TagError",
    "UserEvent",
    "check_key",
    "decode_tags_untrusted",
    "decode_user_event_untrusted",
    "encode_tags",
    "encode_user_event",
    "parse_tag_assignment",
    "tags_of",
]
