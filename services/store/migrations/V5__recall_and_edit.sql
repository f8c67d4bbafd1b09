-- Recall and edit (docs/schema.md, "Recall and edit"). A recalled message keeps its row (seq
-- stays gapless, the idempotency key survives) without its content; an edit changes the row in
-- place. Both stamp the message with the transaction id, so the change feed finds the messages
-- recalled or edited since a token.
ALTER TABLE messages ADD COLUMN recalled boolean NOT NULL DEFAULT false;
ALTER TABLE messages ADD COLUMN change_xid xid8 NOT NULL DEFAULT '0';
-- recalled_msg_ids / edited_messages of a changed conversation.
CREATE INDEX messages_by_change ON messages (conv_key, change_xid) WHERE change_xid <> '0';
-- Unread counts subtract the recalled messages above a marker (sparse).
CREATE INDEX messages_recalled ON messages (conv_key, seq) WHERE recalled;
