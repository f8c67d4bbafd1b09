//! What the abuse tests share: the server under test in a child process (built and configured
//! as `roaming serve` builds it), and a hand-made HTTP/2 gRPC client whose receive window the
//! test chooses (a tonic channel cannot advertise a window of 0).

use bytes::{BufMut as _, Bytes, BytesMut};
use h2::RecvStream;
use h2::client::SendRequest;
use roaming::config::ServeConfig;
use roaming_runtime::TokenSigner;
use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, watch};
use tonic::Code;

pub use roaming_testkit::SECRET;

/// Set in the child's environment: the ignored test below is the server.
const CHILD_ENV: &str = "ROAMING_ABUSE_SERVER";
/// What the child prints on stdout once it listens: `<READY> <grpc addr> <metrics addr or ->`.
const READY: &str = "abuse-server listening";

/// The server process of the abuse tests: this test binary run again with only this test
/// selected and `ROAMING_ABUSE_SERVER=1`. Like `roaming serve`, it reads every setting from
/// the `ROAMING_*` environment variables (the flags' twins, through `ServeConfig`'s own
/// parser), logs on stderr, runs on a multi-threaded runtime with a worker per core, and
/// serves with `roaming::App` + `roaming::serve` (+ `roaming::serve_metrics` when
/// `ROAMING_METRICS_ADDR` is set) until its stdin closes. Without the variable it does
/// nothing, so `cargo test -- --ignored` passes through it.
#[test]
#[ignore = "the abuse tests' server process: they start it themselves"]
fn server_process() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let command = <ServeConfig as clap::Args>::augment_args(clap::Command::new("serve"));
    let matches = command
        .try_get_matches_from(["serve"])
        .expect("the settings in the environment parse");
    let config = <ServeConfig as clap::FromArgMatches>::from_arg_matches(&matches)
        .expect("the settings in the environment parse");
    roaming_runtime::telemetry::init(config.log_json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen_addr)
            .await
            .unwrap();
        let metrics_addr = config.metrics_addr;
        let app = roaming::App::from_config(config)
            .await
            .expect("the server opens its database");
        let metrics = match metrics_addr {
            Some(addr) => {
                let metrics = tokio::net::TcpListener::bind(addr).await.unwrap();
                let local = metrics.local_addr().unwrap().to_string();
                tokio::spawn(roaming::serve_metrics(
                    metrics,
                    app.store.clone(),
                    std::future::pending(),
                ));
                local
            }
            None => "-".to_owned(),
        };
        println!("{READY} {} {metrics}", listener.local_addr().unwrap());
        let (closed_tx, closed_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::spawn(move || {
            let mut sink = [0u8; 64];
            while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
            let _ = closed_tx.send(());
        });
        roaming::serve(app, listener, async {
            let _ = closed_rx.await;
        })
        .await
        .expect("the server serves until stopped");
    });
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

/// The server under test in its own process, over a fresh database on the shared PostgreSQL.
pub struct ServerProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    /// Its gRPC address.
    pub addr: SocketAddr,
    /// Its metrics address, when `ROAMING_METRICS_ADDR` was given.
    pub metrics: Option<SocketAddr>,
    /// Its process id, for `/proc/<pid>/status`.
    pub pid: u32,
    /// Where its log (stderr) goes.
    pub log: std::path::PathBuf,
    database: String,
    signer: TokenSigner,
}

impl ServerProcess {
    /// Starts the server with `roaming serve`'s defaults and `settings` (`ROAMING_*` pairs)
    /// on 127.0.0.1:0, and waits until it listens.
    pub fn start(name: &str, settings: &[(&str, &str)]) -> ServerProcess {
        let database = format!(
            "roaming_abuse_{}_{}_{}",
            std::process::id(),
            DATABASES.fetch_add(1, Ordering::SeqCst),
            rand::random::<u32>()
        );
        roaming_testkit::database::create_blocking(&database);
        let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("abuse-{name}-{}.log", std::process::id()));
        let mut command = Command::new(std::env::current_exe().expect("the test binary"));
        command.args([
            "abuse::support::server_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ]);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("ROAMING_") {
                command.env_remove(key);
            }
        }
        command
            .env(CHILD_ENV, "1")
            .env("RUST_LOG", "info")
            .env("ROAMING_LISTEN_ADDR", "127.0.0.1:0")
            .env(
                "ROAMING_DATABASE_URL",
                roaming_testkit::database::url(&database),
            )
            .env("ROAMING_JWT_SECRET", SECRET);
        for (key, value) in settings {
            command.env(key, value);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(&log).expect("the server's log file"),
            ))
            .spawn()
            .expect("the server process starts");
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let (line_tx, line_rx) = std::sync::mpsc::channel();
        // Reads the child's stdout to its end, so that it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest prints `test <name> ... ` on the same line first.
                if let Some((_, rest)) = line.split_once(READY) {
                    let _ = line_tx.send(rest.trim().to_owned());
                }
            }
        });
        let ready = line_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the server did not start within 60 s; see {log:?}"));
        let mut parts = ready.split_whitespace();
        let addr = parts.next().unwrap().parse().unwrap();
        let metrics = parts.next().and_then(|m| m.parse().ok());
        ServerProcess {
            pid: child.id(),
            child,
            stdin,
            addr,
            metrics,
            log,
            database,
            signer: TokenSigner::hs256(SECRET),
        }
    }

    /// `http://<addr>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A token for `sub` (a service token when `service`).
    pub fn token(&self, sub: &str, service: bool) -> String {
        self.signer
            .mint(sub, service, roaming_runtime::auth::now_secs(), 3600)
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its resident memory (VmRSS), KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib_of(self.pid)
    }

    /// One `GET /metrics`: the body.
    pub async fn scrape(&self) -> String {
        let addr = self.metrics.expect("the server serves metrics");
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        let text = String::from_utf8_lossy(&out).into_owned();
        assert!(text.starts_with("HTTP/1.1 200"), "a scrape failed: {text}");
        text.split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing stdin is the server's shutdown signal.
        drop(self.stdin.take());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        roaming_testkit::database::drop_blocking(&self.database);
    }
}

/// A process's resident memory (VmRSS), KiB.
pub fn rss_kib_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

/// The sum of a metric's samples whose line contains every one of `labels`.
pub fn metric_sum(scrape: &str, name: &str, labels: &[&str]) -> f64 {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// An HTTP/2 connection of the hand-made client: every stream opened on it advertises
/// `window` bytes of receive window until [`RawConnection::open_window`].
pub struct RawConnection {
    send: SendRequest<Bytes>,
    authority: String,
    window: mpsc::UnboundedSender<u32>,
    closed: watch::Receiver<bool>,
}

/// What the server answered to a call's headers.
pub enum Answer {
    /// A trailers-only answer: the call is over.
    Status(Code, String),
    /// The response began (headers without a status); its body and trailers follow.
    Open(RecvStream),
}

impl RawConnection {
    /// Connects with an HTTP/2 `SETTINGS_INITIAL_WINDOW_SIZE` of `window`.
    pub async fn connect(addr: SocketAddr, window: u32) -> anyhow::Result<Self> {
        let tcp = tokio::net::TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let (send, mut connection) = h2::client::Builder::new()
            .initial_window_size(window)
            .handshake::<_, Bytes>(tcp)
            .await?;
        let (window_tx, mut window_rx) = mpsc::unbounded_channel::<u32>();
        let (closed_tx, closed) = watch::channel(false);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut connection => break,
                    Some(size) = window_rx.recv() => {
                        let _ = connection.set_initial_window_size(size);
                    }
                }
            }
            let _ = closed_tx.send(true);
        });
        // The server's SETTINGS (its stream limit among them) come with its first frames.
        let send = send.ready().await?;
        Ok(Self {
            send,
            authority: addr.to_string(),
            window: window_tx,
            closed,
        })
    }

    /// Advertises a window of `size` for every stream, the open ones included.
    pub fn open_window(&self, size: u32) {
        let _ = self.window.send(size);
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    /// Waits until the connection ends.
    pub async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }

    /// The server's `SETTINGS_MAX_CONCURRENT_STREAMS`.
    pub fn max_streams(&self) -> usize {
        self.send.current_max_send_streams()
    }

    /// One unary-request call of `path` with `message`, as `token` (and acting for `act_as`).
    pub async fn call(
        &self,
        path: &str,
        token: Option<&str>,
        act_as: Option<&str>,
        message: Bytes,
    ) -> Result<Answer, h2::Error> {
        let mut request = http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{path}", self.authority))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        if let Some(user) = act_as {
            request = request.header("x-roaming-user", user);
        }
        let request = request.body(()).expect("a valid request");
        let mut send = self.send.clone().ready().await?;
        let (response, mut body) = send.send_request(request, false)?;
        // The server may answer (and close the stream) on the headers alone, before the
        // message is queued: then sending it fails, and the answer tells what happened.
        let _ = body.send_data(grpc_frame(&message), true);
        let response = response.await?;
        Ok(match status_of(response.headers()) {
            Some((code, message)) => Answer::Status(code, message),
            None => Answer::Open(response.into_body()),
        })
    }
}

/// The gRPC status in `headers` (response headers of a trailers-only answer, or trailers).
pub fn status_of(headers: &http::HeaderMap) -> Option<(Code, String)> {
    let code = headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .parse::<i32>()
        .ok()?;
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some((Code::from_i32(code), message))
}

/// A `grpc-message` as sent (percent-encoded), as text.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = || std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok();
        match (bytes[i], hex().and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `message` as one length-prefixed gRPC message.
pub fn grpc_frame(message: &[u8]) -> Bytes {
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0);
    frame.put_u32(message.len() as u32);
    frame.put_slice(message);
    frame.freeze()
}

/// `message` encoded.
pub fn encode(message: &impl prost::Message) -> Bytes {
    Bytes::from(message.encode_to_vec())
}

/// The gRPC messages in `data`, if it is whole messages and nothing else.
pub fn grpc_messages(data: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let header = data.get(at..at + 5)?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        out.push(data.get(at + 5..at + 5 + len)?);
        at += 5 + len;
    }
    Some(out)
}

/// How a response body ended, read with the window kept open.
pub struct Read {
    pub data: Vec<u8>,
    /// The status in its trailers, if trailers came.
    pub status: Option<(Code, String)>,
    /// The stream or connection failed instead.
    pub error: Option<h2::Error>,
}

/// Reads `body` to its end, giving back the window as it reads (after `pause` per
/// `pause_every` bytes, if given: a slow reader).
pub async fn read_to_end(body: &mut RecvStream, pace: Option<(usize, Duration)>) -> Read {
    let mut data = Vec::new();
    let mut since_pause = 0;
    loop {
        match body.data().await {
            Some(Ok(chunk)) => {
                since_pause += chunk.len();
                if let Some((every, pause)) = pace {
                    if since_pause >= every {
                        tokio::time::sleep(pause).await;
                        since_pause = 0;
                    }
                }
                let _ = body.flow_control().release_capacity(chunk.len());
                data.extend_from_slice(&chunk);
            }
            Some(Err(e)) => {
                return Read {
                    data,
                    status: None,
                    error: Some(e),
                };
            }
            None => break,
        }
    }
    match body.trailers().await {
        Ok(trailers) => Read {
            data,
            status: trailers.as_ref().and_then(status_of),
            error: None,
        },
        Err(e) => Read {
            data,
            status: None,
            error: Some(e),
        },
    }
}

/// The RPC paths the tests call.
pub const LIST: &str = "/roaming.conversation.v1.ConversationService/ListConversations";
pub const FETCH: &str = "/roaming.history.v1.HistoryService/FetchHistory";
