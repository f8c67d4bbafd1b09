//! Distribution on a Citus cluster (docs/schema.md, "Distribution (Citus)").
//!
//! On a database with the `citus` extension, [`crate::migrate::run`] calls [`distribute`]
//! after the migrations, under the same advisory lock: every table that is not distributed yet
//! is distributed on `conv_key`, co-located with `conversations`, so that everything one
//! conversation owns lives on one shard and a statement that names the conversation is a
//! single-shard (router) query. It is idempotent: a table already distributed is left alone,
//! so every replica can run it at start. On plain PostgreSQL it does nothing.

use crate::error::{Error, Result};
use crate::sql::Layout;
use tokio_postgres::Client;

/// The tables, in the order they are distributed: the first is the co-location group's
/// anchor, the others join its group (same shard count, same hash ranges, same nodes).
pub const TABLES: [&str; 4] = [
    "conversations",
    "messages",
    "user_conversations",
    "tombstones",
];

/// The distribution column of every table.
pub const DISTRIBUTION_COLUMN: &str = "conv_key";

/// Whether `client`'s database has the `citus` extension.
pub async fn is_citus(client: &Client) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
            &[],
        )
        .await?
        .get(0))
}

/// The statement shapes `client`'s database needs: [`Layout::Citus`] with the extension.
pub async fn layout(client: &Client) -> Result<Layout> {
    Ok(if is_citus(client).await? {
        Layout::Citus
    } else {
        Layout::Single
    })
}

/// Distributes the tables of [`TABLES`] that are not distributed yet; returns how many it
/// distributed (0 on plain PostgreSQL and on an already distributed database). Runs with the
/// migration lock held.
pub async fn distribute(client: &Client) -> Result<usize> {
    if !is_citus(client).await? {
        return Ok(0);
    }
    let mut distributed = 0;
    for table in TABLES {
        let done: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_dist_partition
                                WHERE logicalrelid = to_regclass($1))",
                &[&table],
            )
            .await?
            .get(0);
        if done {
            continue;
        }
        let colocate_with = if table == TABLES[0] {
            "default"
        } else {
            TABLES[0]
        };
        client
            .execute(
                "SELECT create_distributed_table($1::text::regclass, $2::text, colocate_with => $3::text)",
                &[&table, &DISTRIBUTION_COLUMN, &colocate_with],
            )
            .await
            .map_err(|e| match Error::from(e) {
                Error::Internal(m) => Error::Internal(format!(
                    "distributing table {table} on {DISTRIBUTION_COLUMN} (Citus): {m}"
                )),
                other => other,
            })?;
        tracing::info!(
            table,
            column = DISTRIBUTION_COLUMN,
            "distributed table (Citus)"
        );
        distributed += 1;
    }
    Ok(distributed)
}
