-- Roaming's schema. Every key leads with conv_key and no foreign key crosses conversations,
-- so every table can be distributed on conv_key (see docs/schema.md).

-- Globally unique message ids (msg_id). A sequence, not per-conversation state: ids are unique
-- across conversations and replicas without coordination in the service.
CREATE SEQUENCE message_ids AS bigint START WITH 1000001;

-- One row per conversation. Its row lock serialises appends to the conversation, which is
-- what makes seq gapless and assigned in commit order.
CREATE TABLE conversations (
    conv_key            text     PRIMARY KEY,
    kind                smallint NOT NULL,
    last_seq            bigint   NOT NULL DEFAULT 0,
    last_time_ms        bigint   NOT NULL DEFAULT 0,
    -- FOR_EVERYONE with delete_messages: seq <= this is hidden from everybody.
    purged_through_seq  bigint   NOT NULL DEFAULT 0,
    -- FOR_EVERYONE: off every participant's list until a message with a higher seq arrives.
    cleared_through_seq bigint   NOT NULL DEFAULT 0
);

CREATE TABLE messages (
    conv_key       text     NOT NULL,
    seq            bigint   NOT NULL,
    msg_id         bigint   NOT NULL DEFAULT nextval('message_ids'),
    sender         text     NOT NULL,
    recipient      text     NOT NULL,
    msg_type       smallint NOT NULL,
    body           bytea    NOT NULL,
    attributes     jsonb    NOT NULL DEFAULT '{}'::jsonb,
    client_msg_id  text     NOT NULL,
    server_time_ms bigint   NOT NULL,
    -- History pages: keyset on (conv_key, seq) in both directions.
    PRIMARY KEY (conv_key, seq),
    -- Anchors and removals by id.
    UNIQUE (conv_key, msg_id),
    -- Idempotent ingest.
    UNIQUE (conv_key, sender, client_msg_id)
);
-- RemoveMessagesBefore (newest seq at or before a time) and time-filtered pages.
CREATE INDEX messages_by_time ON messages (conv_key, server_time_ms, seq);

-- One row per (conversation, user) who takes part: both peers of a PEER conversation (written
-- once, when it starts) and every GROUP / CHATROOM member (written by AddMembers). It is
-- membership, the user's one-way state, and the index of the user's conversation list.
-- Nothing here is written per message, whatever the size of the group.
CREATE TABLE user_conversations (
    conv_key            text     NOT NULL,
    user_id             text     NOT NULL,
    kind                smallint NOT NULL,
    is_member           boolean  NOT NULL DEFAULT true,
    -- RemoveMessagesBefore / RemoveConversation(delete_messages): seq <= this is hidden.
    hidden_through_seq  bigint   NOT NULL DEFAULT 0,
    -- RemoveConversation(FOR_ME): off the list until a message with a higher seq arrives.
    removed_through_seq bigint   NOT NULL DEFAULT 0,
    PRIMARY KEY (conv_key, user_id)
);
-- ListConversations: the caller's conversations of the requested kinds.
CREATE INDEX user_conversations_by_user ON user_conversations (user_id, kind)
    INCLUDE (conv_key) WHERE is_member;

-- One-way removals by id: the message at (conv_key, seq) is hidden from user_id.
CREATE TABLE tombstones (
    conv_key text   NOT NULL,
    user_id  text   NOT NULL,
    seq      bigint NOT NULL,
    PRIMARY KEY (conv_key, user_id, seq)
);
