-- The change feed (SyncConversations) and checkable completeness (DigestHistory); see
-- docs/schema.md, "The change feed".
--
-- Every row that a change touches carries the id (xid8) of the transaction that last changed
-- it. A sync token holds the snapshot of the previous sync; what changed since is what was
-- written by a transaction that snapshot did not see. Existing rows get 0: older than any
-- token, they appear in snapshots only. The constant default adds the columns without a
-- rewrite; writers stamp pg_current_xact_id() (also the default for new rows).

-- Per-user changes (removals, watermarks, membership) and, for PEER conversations, the
-- conversation's own changes (two rows per message: no fan-out).
ALTER TABLE user_conversations ADD COLUMN change_xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE user_conversations ALTER COLUMN change_xid SET DEFAULT pg_current_xact_id();
CREATE INDEX user_conversations_by_change ON user_conversations (user_id, change_xid);

-- A GROUP's own changes (new message, purge): one row per conversation, whatever its size.
ALTER TABLE conversations ADD COLUMN change_xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE conversations ALTER COLUMN change_xid SET DEFAULT pg_current_xact_id();

-- Which removals by id are new since a token (`removed_msg_ids`).
ALTER TABLE tombstones ADD COLUMN created_xid xid8 NOT NULL DEFAULT '0';
ALTER TABLE tombstones ALTER COLUMN created_xid SET DEFAULT pg_current_xact_id();
CREATE INDEX tombstones_by_change ON tombstones (conv_key, user_id, created_xid);

-- Edits (0 for never); DigestHistory hashes edit_version.
ALTER TABLE messages ADD COLUMN edit_version integer NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN edited_at_ms bigint NOT NULL DEFAULT 0;
