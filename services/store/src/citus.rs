//! Distribution on a Citus cluster (docs/schema.md, "Distribution (Citus)").
//!
//! On a database with the `citus` extension, [`crate::migrate::run`] calls [`distribute`]
//! after the migrations, under the same advisory lock: every table that is not distributed yet
//! is distributed on `conv_key`, co-located with `conversations`, so that everything one
//! conversation owns lives on one shard and a statement that names the conversation is a
//! single-shard (router) query. It is idempotent: a table already distributed is left alone,
//! so every replica can run it at start. On plain PostgreSQL it does nothing.
//!
//! [`create_database`] makes a missing database a database of the whole cluster when the
//! maintenance database it is created through is a Citus coordinator (`db::ensure_database`
//! calls it, as `roaming serve` and `roaming migrate` do at start).

use crate::db::{DbConfig, connect, quote_ident};
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

/// The nodes of the Citus cluster whose coordinator `admin` is connected to: the coordinator's
/// `(host, port)` and the primary workers', from the maintenance database's metadata; `None`
/// without the extension or without a coordinator in the metadata.
pub async fn cluster(admin: &Client) -> Result<Option<((String, u16), Vec<(String, u16)>)>> {
    if !is_citus(admin).await? {
        return Ok(None);
    }
    let nodes = admin
        .query(
            "SELECT groupid, nodename, nodeport FROM pg_dist_node
             WHERE noderole = 'primary' AND isactive ORDER BY groupid, nodeid",
            &[],
        )
        .await?;
    let node = |r: &tokio_postgres::Row| (r.get::<_, String>(1), r.get::<_, i32>(2) as u16);
    let Some(coordinator) = nodes.iter().find(|r| r.get::<_, i32>(0) == 0).map(node) else {
        return Ok(None);
    };
    let workers = nodes
        .iter()
        .filter(|r| r.get::<_, i32>(0) != 0)
        .map(node)
        .collect();
    Ok(Some((coordinator, workers)))
}

/// Creates database `name` through `admin`, a connection to the maintenance database of
/// `admin_config`. On a Citus coordinator (see [`cluster`]) the database is made one of the
/// cluster: created on every node (`citus.enable_create_database_propagation`), the extension
/// created in it on every worker and then on the coordinator, the coordinator and the workers
/// registered in it (what [`distribute`] then needs). Workers are reached with the
/// maintenance URL's user, password and TLS. Needs the rights these statements need
/// (creating a database and the extension: a superuser on Citus).
pub async fn create_database(admin: &Client, admin_config: &DbConfig, name: &str) -> Result<()> {
    let create = format!("CREATE DATABASE {}", quote_ident(name));
    // duplicate_database, or the unique index on pg_database when two creators race: the
    // other one creates it (on Citus, start one replica first: the others could otherwise
    // migrate the database before the other creator has made it a Citus database).
    let raced = |e: &tokio_postgres::Error| {
        matches!(e.code().map(|c| c.code()), Some("42P04") | Some("23505"))
    };
    let Some(((host, port), workers)) = cluster(admin).await? else {
        return match admin.batch_execute(&create).await {
            Err(e) if raced(&e) => Ok(()),
            other => Ok(other?),
        };
    };
    // CREATE DATABASE must be a statement of its own (no implicit transaction around it).
    admin
        .batch_execute("SET citus.enable_create_database_propagation = on")
        .await?;
    match admin.batch_execute(&create).await {
        Err(e) if raced(&e) => return Ok(()),
        other => other?,
    }
    let on = |host: &str, port: u16| {
        let mut config = admin_config.clone();
        // The driver's Config adds hosts; a fresh one keeps only this node.
        let mut pg = tokio_postgres::Config::new();
        if let Some(user) = config.pg.get_user() {
            pg.user(user);
        }
        if let Some(password) = config.pg.get_password() {
            pg.password(password);
        }
        if let Some(timeout) = config.pg.get_connect_timeout() {
            pg.connect_timeout(*timeout);
        }
        pg.ssl_mode(config.pg.get_ssl_mode());
        pg.host(host).port(port).dbname(name);
        config.pg = pg;
        config
    };
    // The coordinator checks each worker's extension when the worker is added.
    for (worker, worker_port) in &workers {
        connect(&on(worker, *worker_port))
            .await?
            .batch_execute("CREATE EXTENSION IF NOT EXISTS citus")
            .await?;
    }
    let coordinator = connect(&on(&host, port)).await?;
    coordinator
        .batch_execute("CREATE EXTENSION IF NOT EXISTS citus")
        .await?;
    coordinator
        .execute(
            "SELECT citus_set_coordinator_host($1, $2)",
            &[&host, &i32::from(port)],
        )
        .await?;
    for (worker, worker_port) in &workers {
        coordinator
            .execute(
                "SELECT citus_add_node($1, $2)",
                &[worker, &i32::from(*worker_port)],
            )
            .await?;
    }
    tracing::info!(
        database = name,
        workers = workers.len(),
        "created database on the Citus cluster"
    );
    Ok(())
}

/// Drops database `name` through `admin` (a connection to the maintenance database),
/// disconnecting its sessions; on a Citus coordinator on every node. For test and bench
/// databases: the service never drops one.
pub async fn drop_database(admin: &Client, name: &str) -> Result<()> {
    if is_citus(admin).await? {
        admin
            .batch_execute("SET citus.enable_create_database_propagation = on")
            .await?;
    }
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quote_ident(name)
        ))
        .await?;
    Ok(())
}
