-- Read markers, unread counts, pins and marks (docs/schema.md, "Read state"). All per user, on
-- the user's row of the conversation; nothing is written per member for a message.
ALTER TABLE user_conversations ADD COLUMN read_seq bigint NOT NULL DEFAULT 0;
ALTER TABLE user_conversations ADD COLUMN pinned_at_ms bigint;
ALTER TABLE user_conversations ADD COLUMN marks text[] NOT NULL DEFAULT '{}';

-- One's own messages are read: a sender's marker moves to each message they send. Rows from
-- before this migration start at the sender's newest message.
UPDATE user_conversations uc
SET read_seq = coalesce((SELECT max(m.seq) FROM messages m
                         WHERE m.conv_key = uc.conv_key AND m.sender = uc.user_id), 0);

-- The pinned list (ListConversations pinned_only) and the pin limit.
CREATE INDEX user_conversations_pinned ON user_conversations (user_id, pinned_at_ms, conv_key)
    WHERE pinned_at_ms IS NOT NULL;
