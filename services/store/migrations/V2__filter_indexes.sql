-- Filtered history pages (FetchHistory `types`, `senders`): one ordered seq range per kind, or
-- per (sender, kind) pair, so a page of a rare type costs index work proportional to the page,
-- not to the conversation (see sql.rs, `PageFilter`). Built inside the migration's
-- transaction: on a large existing table, create them CONCURRENTLY by hand first (same
-- names, IF NOT EXISTS makes this a no-op then).
CREATE INDEX IF NOT EXISTS messages_by_kind ON messages (conv_key, msg_type, seq);
CREATE INDEX IF NOT EXISTS messages_by_sender_kind ON messages (conv_key, sender, msg_type, seq);
