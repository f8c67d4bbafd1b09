-- The change feed's fence on a Citus cluster (docs/schema.md, "Distribution (Citus)"): a
-- transaction that writes conversations on several workers commits in two phases, on the
-- coordinator first and on the workers after; a feed read taking its snapshot in between would
-- record the transaction as seen without seeing its rows. Such writers lock this table in SHARE
-- mode, feed reads in ROW EXCLUSIVE mode before their snapshot: the two conflict, so a snapshot
-- is never taken while a two-phase writer is between its phases. It has no rows, is never
-- distributed, and plain PostgreSQL (one commit, no phases) never locks it.
CREATE TABLE IF NOT EXISTS feed_fence ();
