//! TLS to PostgreSQL.
//!
//! Each test starts its own PostgreSQL 15 (`faults/pg.rs`) with `ssl = on`, a server
//! certificate for `localhost` only, signed by a CA the test makes (`roaming_testkit::tls`),
//! and a pg_hba.conf that admits TLS sessions only (`hostssl`): any plaintext session Roaming
//! opened, pooled or direct, would be refused. (Cancel requests are not checked against
//! pg_hba.conf, but with a URL that requires TLS the driver cannot open one without the TLS
//! connector, so the cancel test fails if they are not given it.) The sslmodes are checked
//! through `roaming_store::db`, the code every connection path uses; then the whole server
//! runs over such a database. The tests run one at a time with the fault tests
//! (`support::run`), each bounded in time.

use crate::faults::pg::{OwnPg, Setup};
use crate::faults::support::{CLIENT_DEADLINE, Server, outcome_name, run, server_config, text};
use futures::TryStreamExt as _;
use roaming_client::proto::history::v1 as hpb;
use roaming_client::{Client, ConversationRef, ConversationType, NewMessage};
use roaming_store::db;
use roaming_testkit::peer;
use roaming_testkit::tls::{TempDir, TestCa};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// TLS connections only, from loopback; the Unix socket stays open (nothing uses it).
const HOSTSSL_ONLY: &str = "local all all trust\n\
                            hostssl all all 127.0.0.1/32 trust\n\
                            hostssl all all ::1/128 trust\n";

/// A private PostgreSQL that takes TLS connections only, with the files a client needs.
struct TlsPg {
    pg: OwnPg,
    /// The CA that signed the server's certificate.
    ca: PathBuf,
    /// A CA that did not.
    other_ca: PathBuf,
    _dir: TempDir,
}

impl TlsPg {
    fn start() -> TlsPg {
        let ca = TestCa::new("Roaming test CA");
        let server = ca.server_cert(&["localhost"]);
        let dir = TempDir::new("roaming-tls");
        let ca_path = dir.write("ca.pem", &ca.cert_pem);
        let other_ca = dir.write("other-ca.pem", &TestCa::new("Another CA").cert_pem);
        let pg = OwnPg::start_with(Setup {
            conf: "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'",
            hba: Some(HOSTSSL_ONLY),
            files: &[
                ("server.crt", &server.cert_pem),
                ("server.key", &server.key_pem),
            ],
        });
        TlsPg {
            pg,
            ca: ca_path,
            other_ca,
            _dir: dir,
        }
    }

    /// `postgres://postgres@<host>:<port>/<database>?<params>`.
    fn url(&self, host: &str, database: &str, params: &str) -> String {
        format!(
            "postgres://postgres@{host}:{}/{database}?{params}",
            self.pg.port
        )
    }

    /// verify-full against `localhost`, trusting the test's CA.
    fn verify_full_url(&self, database: &str) -> String {
        self.url(
            "localhost",
            database,
            &format!("sslmode=verify-full&sslrootcert={}", self.ca.display()),
        )
    }
}

/// A direct connection through `roaming_store::db` (parse, connector, connect), or the error
/// as text.
async fn connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let config = db::parse_url(url).map_err(|e| e.to_string())?;
    db::connect(&config).await.map_err(|e| e.to_string())
}

/// Whether this connection is encrypted, as the server sees it.
async fn encrypted(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[track_caller]
fn assert_contains(text: &str, parts: &[&str]) {
    for part in parts {
        assert!(text.contains(part), "{part:?} not in {text:?}");
    }
}

#[test]
fn each_sslmode_connects_or_is_refused_as_libpq_would() {
    run("tls_sslmodes", Duration::from_secs(60), async {
        let tls = TlsPg::start();
        let ca = tls.ca.display().to_string();
        let other = tls.other_ca.display().to_string();

        // require: encrypted, the certificate not checked (nothing says whom to trust).
        let c = connect(&tls.url("127.0.0.1", "postgres", "sslmode=require"))
            .await
            .expect("require");
        assert!(encrypted(&c).await, "require");
        // prefer: the server offers TLS, so it is used.
        let c = connect(&tls.url("127.0.0.1", "postgres", "sslmode=prefer"))
            .await
            .expect("prefer");
        assert!(encrypted(&c).await, "prefer");

        // verify-full with the CA, to the host the certificate names.
        let c = connect(&tls.verify_full_url("postgres"))
            .await
            .expect("verify-full with the CA");
        assert!(encrypted(&c).await, "verify-full");

        // verify-full with another CA: refused, saying why and what to check.
        let e = connect(&tls.url(
            "localhost",
            "postgres",
            &format!("sslmode=verify-full&sslrootcert={other}"),
        ))
        .await
        .expect_err("verify-full with the wrong CA");
        assert_contains(
            &e,
            &[
                "invalid peer certificate",
                "UnknownIssuer",
                "check sslmode and sslrootcert",
            ],
        );
        // verify-full without sslrootcert trusts the Mozilla roots, which did not sign it.
        let e = connect(&tls.url("localhost", "postgres", "sslmode=verify-full"))
            .await
            .expect_err("verify-full with the default roots");
        assert_contains(&e, &["UnknownIssuer"]);

        // verify-ca checks the chain, not the name: 127.0.0.1 is not in the certificate.
        let c = connect(&tls.url(
            "127.0.0.1",
            "postgres",
            &format!("sslmode=verify-ca&sslrootcert={ca}"),
        ))
        .await
        .expect("verify-ca with the CA, another host name");
        assert!(encrypted(&c).await, "verify-ca");
        // verify-ca still checks the chain.
        let e = connect(&tls.url(
            "127.0.0.1",
            "postgres",
            &format!("sslmode=verify-ca&sslrootcert={other}"),
        ))
        .await
        .expect_err("verify-ca with the wrong CA");
        assert_contains(&e, &["UnknownIssuer"]);
        // verify-full checks the name too.
        let e = connect(&tls.url(
            "127.0.0.1",
            "postgres",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ))
        .await
        .expect_err("verify-full, a host the certificate does not name");
        assert_contains(&e, &["invalid peer certificate", "not valid for name"]);

        // require with a root certificate checks the chain, as libpq does.
        let e = connect(&tls.url(
            "127.0.0.1",
            "postgres",
            &format!("sslmode=require&sslrootcert={other}"),
        ))
        .await
        .expect_err("require with the wrong CA");
        assert_contains(&e, &["UnknownIssuer"]);

        // disable: plaintext, which this server's pg_hba.conf refuses.
        let e = connect(&tls.url("127.0.0.1", "postgres", "sslmode=disable"))
            .await
            .expect_err("disable against hostssl only");
        assert_contains(&e, &["no pg_hba.conf entry", "no encryption"]);
        drop(tls);
    });
}

#[test]
fn require_is_refused_by_a_server_without_tls_and_prefer_falls_back_to_plaintext() {
    run("tls_server_without_tls", Duration::from_secs(60), async {
        let pg = OwnPg::start();
        let e = connect(&format!("{}?sslmode=require", pg.url("postgres")))
            .await
            .expect_err("require against ssl = off");
        assert_contains(&e, &["server does not support TLS"]);
        let c = connect(&format!("{}?sslmode=prefer", pg.url("postgres")))
            .await
            .expect("prefer against ssl = off");
        assert!(!encrypted(&c).await, "prefer falls back to plaintext");
        drop(pg);
    });
}

#[test]
fn the_server_runs_over_a_verify_full_database() {
    run("tls_server", Duration::from_secs(60), async {
        let tls = TlsPg::start();
        // App::from_config: creates the `roaming` database through `postgres`, migrates it
        // and opens the pool, all over TLS (the server refuses anything else).
        let url = tls.verify_full_url("roaming");
        let server = Server::start(&url, &server_config()).await;

        let gateway = Client::builder(server.endpoint.clone())
            .token(server.token("gateway", true))
            .connect()
            .await
            .expect("connect to the server");
        let stored = gateway
            .append([NewMessage::new(ConversationType::Peer, "alice", "bob", "c-1").text("hi bob")])
            .await
            .expect("append");
        assert_eq!(stored.len(), 1);
        let alice = Client::builder(server.endpoint.clone())
            .token(server.token("alice", false))
            .connect()
            .await
            .expect("connect to the server");
        let history: Vec<_> = alice
            .fetch_history(ConversationRef::peer("bob"))
            .messages()
            .try_collect()
            .await
            .expect("fetch");
        let bodies: Vec<&[u8]> = history.iter().map(|m| m.body.as_slice()).collect();
        assert_eq!(bodies, [b"hi bob".as_slice()]);

        // Every session Roaming holds is encrypted.
        let sql = connect(&url).await.expect("verify-full");
        let row = sql
            .query_one(
                "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
                 JOIN pg_stat_ssl s USING (pid) WHERE a.application_name = 'roaming'",
                &[],
            )
            .await
            .unwrap();
        let (sessions, encrypted): (i64, i64) = (row.get(0), row.get(1));
        println!("tls_server: sessions={sessions} encrypted={encrypted}");
        assert!(sessions > 0, "the pool holds sessions");
        assert_eq!(sessions, encrypted, "every pooled session is encrypted");
        drop(server);
        drop(tls);
    });
}

#[test]
fn an_abandoned_statement_is_cancelled_over_tls() {
    run("tls_cancel", Duration::from_secs(60), async {
        let tls = TlsPg::start();
        let url = tls.verify_full_url("roaming");
        let mut config = server_config();
        // Far beyond the test: only a cancel request can end the statement in time.
        config.pool.statement_timeout = Duration::from_secs(60).into();
        let server = Server::start(&url, &config).await;
        let mut alice = server.callers("alice");
        alice
            .append(vec![text("alice", "bob", "first", "c-1")], None)
            .await
            .expect("append");

        // Another session holds `messages`, so the next page's statement waits on the lock.
        let locker = connect(&url).await.expect("verify-full");
        locker
            .batch_execute("BEGIN; LOCK TABLE messages IN ACCESS EXCLUSIVE MODE")
            .await
            .unwrap();
        let sql = connect(&url).await.expect("verify-full");
        let deadline = Duration::from_secs(2);
        let call = tokio::spawn(async move {
            alice
                .fetch(
                    hpb::FetchHistoryRequest {
                        conversation: Some(peer("bob")),
                        page_size: 10,
                        ..Default::default()
                    },
                    Some(deadline),
                )
                .await
        });
        let waiting = wait_for(&sql, Duration::from_secs(10), |waiting| waiting == 1).await;
        assert_eq!(waiting, 1, "the page's statement waits on the lock");
        // Ended by its deadline: the server's DEADLINE_EXCEEDED, or the channel's own
        // `grpc-timeout` (whichever came first; either way the server drops the call).
        let outcome = call.await.unwrap();
        let ended = outcome.as_ref().err().map(outcome_name);
        assert!(
            matches!(ended.as_deref(), Some("DeadlineExceeded" | CLIENT_DEADLINE)),
            "{outcome:?}"
        );
        // The server gave up on the call and cancelled its statement. The cancel request is a
        // connection of its own, and the URL requires TLS: without the pool's connector the
        // driver could not open it, and the statement would wait out the lock.
        let started = Instant::now();
        let waiting = wait_for(&sql, Duration::from_secs(5), |waiting| waiting == 0).await;
        println!(
            "tls_cancel: cancelled_within_ms={}",
            started.elapsed().as_millis()
        );
        assert_eq!(waiting, 0, "the statement is still waiting: not cancelled");
        assert!(
            tls.pg
                .log_text()
                .contains("canceling statement due to user request"),
            "PostgreSQL did not log the cancel: {}",
            tls.pg.log_tail()
        );
        locker.batch_execute("ROLLBACK").await.unwrap();
        drop(server);
        drop(tls);
    });
}

/// Polls until `done(n)`, `n` being how many of Roaming's sessions wait on a lock, or until
/// `limit`; the last reading.
async fn wait_for(
    sql: &tokio_postgres::Client,
    limit: Duration,
    done: impl Fn(i64) -> bool,
) -> i64 {
    let started = Instant::now();
    loop {
        let waiting: i64 = sql
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'roaming' \
                 AND wait_event_type = 'Lock'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if done(waiting) || started.elapsed() >= limit {
            return waiting;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_bad_sslmode_or_root_certificate_stops_the_server_naming_the_setting() {
    let mut config = server_config();
    config.database.database_url =
        "postgres://postgres:secret@127.0.0.1:1/roaming?sslmode=verify-everything".into();
    let e = format!(
        "{:#}",
        roaming::App::from_config(config.clone())
            .await
            .expect_err("an unknown sslmode")
    );
    assert_contains(
        &e,
        &[
            "ROAMING_DATABASE_URL",
            "sslmode \"verify-everything\" is unknown",
        ],
    );
    assert!(!e.contains("secret"), "{e}");

    config.database.database_url = "postgres://postgres:secret@127.0.0.1:1/roaming\
         ?sslmode=verify-full&sslrootcert=/nonexistent/roaming-ca.pem"
        .into();
    let e = format!(
        "{:#}",
        roaming::App::from_config(config)
            .await
            .expect_err("an unreadable root certificate")
    );
    assert_contains(
        &e,
        &[
            "ROAMING_DATABASE_URL",
            "sslrootcert /nonexistent/roaming-ca.pem: cannot read it",
        ],
    );
    assert!(!e.contains("secret"), "{e}");
}
