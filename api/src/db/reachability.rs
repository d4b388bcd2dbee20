//! Failing fast while Postgres is down. sqlx's pool retries a refused connect until the
//! pool timeout (2 s), so without this every request that needs the database would wait
//! that long and pile up while Postgres is stopped. Instead, the server is checked when
//! an acquire is slow or a statement's connection is lost: a TCP connect, then a startup
//! packet, which a server that is shutting down or starting up refuses at once (SQLSTATE
//! 57P03, which sqlx's pool would also retry for 2 s). If not, the database is marked
//! unreachable, the requests waiting on the pool are woken, and requests answer 503 at
//! once, except one every [`RETRY_EVERY`] that tries again and so notices its return.
//!
//! A fast shutdown tells the sessions running a statement at once (57P01), but idle
//! connections in the pool see their sockets close only when the postmaster exits, after
//! the shutdown checkpoint (100–700 ms later in fault case 4), and in its last phase the
//! postmaster takes no connections: they wait in the listen queue, so neither the pool
//! nor a check gets an answer. So each instance keeps one session running a statement
//! (the [`sentinel`]), and a session the server ends marks the database down at once.

use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use sqlx::ConnectOptions as _;
use sqlx::postgres::PgConnectOptions;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// How long an acquire may take before the server is checked.
pub const CHECK_AFTER: Duration = Duration::from_millis(100);
/// How long the TCP connect may take: a server that does not accept in that time is down.
const CHECK_TIMEOUT: Duration = Duration::from_millis(250);
/// SQLSTATE `cannot_connect_now`: the server is shutting down, starting up or in
/// recovery and takes no session.
const CANNOT_CONNECT_NOW: &[u8] = b"57P03";
/// While down, one request this often goes through to try the database again.
const RETRY_EVERY: Duration = Duration::from_millis(250);

/// What a request that needs the database should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Use the pool.
    Up,
    /// Answer 503 without trying.
    Down,
    /// Down, and it is this request's turn to try again.
    Retry,
}

/// Whether the database is known to be unreachable.
#[derive(Debug)]
pub struct Reachability {
    host: String,
    port: u16,
    /// The startup packet the check sends.
    startup: Vec<u8>,
    /// False when there is nothing to check (a Unix socket): never marked down.
    tcp: bool,
    origin: Instant,
    /// Milliseconds since `origin` of the last failed check or try, plus one; 0 when up.
    down_at: AtomicU64,
    /// Milliseconds since `origin` of the last check that found the server up, plus one;
    /// 0 before any. Requests waiting at once share it for [`CHECK_AFTER`].
    up_at: AtomicU64,
    /// Wakes the requests waiting on the pool when the database is marked down.
    went_down: Notify,
    /// Each marking down, for the on-call (`db_unreachable_total`).
    marked_down: Counter,
    /// Held by the one check in flight.
    asking: tokio::sync::Mutex<()>,
}

impl Reachability {
    /// `user` and `database` go into the check's startup packet; `marked_down` counts
    /// each time the database is marked down.
    pub fn new(
        host: &str,
        port: u16,
        tcp: bool,
        user: &str,
        database: &str,
        marked_down: Counter,
    ) -> Self {
        Self {
            host: host.to_owned(),
            port,
            startup: startup_packet(user, database),
            tcp,
            origin: Instant::now(),
            down_at: AtomicU64::new(0),
            up_at: AtomicU64::new(0),
            went_down: Notify::new(),
            marked_down,
            asking: tokio::sync::Mutex::new(()),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX) + 1
    }

    /// What this request should do. While the database is down, one request every
    /// [`RETRY_EVERY`] gets [`State::Retry`]; the others fail fast.
    pub fn state(&self) -> State {
        let down_at = self.down_at.load(Ordering::Acquire);
        if down_at == 0 {
            return State::Up;
        }
        let now = self.now();
        let retry_ms = u64::try_from(RETRY_EVERY.as_millis()).unwrap_or(u64::MAX);
        if now.saturating_sub(down_at) < retry_ms {
            return State::Down;
        }
        // One caller wins the retry; the others keep failing fast.
        match self
            .down_at
            .compare_exchange(down_at, now, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => State::Retry,
            Err(_) => State::Down,
        }
    }

    /// Whether the database is marked down.
    pub fn is_down(&self) -> bool {
        self.down_at.load(Ordering::Acquire) != 0
    }

    /// An acquire succeeded.
    pub fn up(&self) {
        self.down_at.store(0, Ordering::Release);
    }

    fn down(&self) {
        self.down_at.store(self.now(), Ordering::Release);
        self.marked_down.inc();
        self.went_down.notify_waiters();
    }

    /// Completes when the database is next marked down (by any request's check). A
    /// waiter must take this before it looks at [`Self::is_down`], or it may miss it.
    pub fn went_down(&self) -> tokio::sync::futures::Notified<'_> {
        self.went_down.notified()
    }

    /// Whether the server takes a session now; marks it down if not. A refused or
    /// timed-out connect, a connection closed before an answer, or an answer of 57P03,
    /// is a no: a slow answer or any other (authentication, TLS required) is left to the
    /// pool. Requests waiting at once share a yes for [`CHECK_AFTER`].
    ///
    /// One check at a time: the others wait for its answer. Under overload every acquire
    /// is slow, and each check costs Postgres a backend fork; hundreds at once overflowed
    /// its listen queue, so that checks timed out and marked a busy database down.
    pub async fn check(&self) -> bool {
        if !self.tcp || self.freshly_up() {
            return true;
        }
        let since = self.now();
        let _asking = self.asking.lock().await;
        // The check this one waited for may have answered.
        if self.down_at.load(Ordering::Acquire) > since {
            return false;
        }
        if self.freshly_up() {
            return true;
        }
        self.ask().await
    }

    /// Whether a check found the server up within [`CHECK_AFTER`].
    fn freshly_up(&self) -> bool {
        let up_at = self.up_at.load(Ordering::Acquire);
        let fresh = u64::try_from(CHECK_AFTER.as_millis()).unwrap_or(u64::MAX);
        up_at != 0 && self.now().saturating_sub(up_at) < fresh
    }

    /// A connection was lost: down at once if the server said it is shutting down (or
    /// crashed), else checked without the shared yes (the loss is news).
    pub async fn lost(&self, error: &sqlx::Error) {
        if sqlstate(error).is_some_and(|code| SHUTTING_DOWN.contains(&code.as_ref())) {
            self.down();
        } else {
            self.ask().await;
        }
    }

    async fn ask(&self) -> bool {
        let connect = TcpStream::connect((self.host.as_str(), self.port));
        let why_down: Option<String> = match tokio::time::timeout(CHECK_TIMEOUT, connect).await {
            Ok(Ok(stream)) => {
                match tokio::time::timeout(CHECK_TIMEOUT, self.refusal(stream)).await {
                    Ok(Ok(true)) => Some("it takes no sessions now (57P03)".into()),
                    Ok(Ok(false)) => None,
                    Ok(Err(error)) => Some(format!("it closed the connection: {error}")),
                    // Busy, or shutting down: the pool will tell.
                    Err(_slow) => None,
                }
            }
            Ok(Err(error)) => Some(format!("connecting failed: {error}")),
            Err(_) => Some(format!("no connection within {CHECK_TIMEOUT:?}")),
        };
        match why_down {
            None => {
                self.up_at.store(self.now(), Ordering::Release);
                true
            }
            Some(why) => {
                tracing::warn!(%why, "the database is unreachable");
                self.down();
                false
            }
        }
    }

    /// Sends the startup packet; true if the server answers with an ErrorResponse of
    /// SQLSTATE 57P03. The connection is dropped either way, before authenticating.
    async fn refusal(&self, mut stream: TcpStream) -> std::io::Result<bool> {
        stream.write_all(&self.startup).await?;
        let mut head = [0u8; 5];
        stream.read_exact(&mut head).await?;
        if head[0] != b'E' {
            return Ok(false);
        }
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut fields = vec![0u8; len.saturating_sub(4).min(4096)];
        stream.read_exact(&mut fields).await?;
        // Fields: a type byte and a NUL-terminated value each; 'C' is the SQLSTATE.
        Ok(fields
            .split(|&b| b == 0)
            .any(|field| field.strip_prefix(b"C") == Some(CANNOT_CONNECT_NOW)))
    }

    /// The error a request gets while the database is down (a 503).
    pub fn error() -> sqlx::Error {
        sqlx::Error::Io(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "the database is unreachable",
        ))
    }
}

/// Keeps one session running a statement for as long as `reach` lives, and reports its
/// loss (see the module's documentation).
pub async fn sentinel(reach: Weak<Reachability>, options: PgConnectOptions) {
    // Its sleeps are not slow statements to warn of.
    let options = options
        .application_name("courser-api reachability sentinel")
        .disable_statement_logging();
    while reach.strong_count() > 0 {
        if let Ok(mut session) = options.connect().await {
            // Each sleep is well inside any statement timeout; one that fails for any
            // reason other than a lost session (a cancel, say) starts again shortly.
            let lost = loop {
                let slept = sqlx::query("SELECT pg_sleep(1)")
                    .execute(&mut session)
                    .await;
                match slept {
                    Err(error) if lost_connection(&error) => break error,
                    _ if reach.strong_count() == 0 => return,
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(RETRY_EVERY).await,
                }
            };
            let Some(reach) = reach.upgrade() else { return };
            reach.lost(&lost).await;
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
}

/// Whether a statement failed because its connection or the server went away: the
/// connection closed or reset, or the server said so (SQLSTATE class 08, connection
/// exception, or 57P, operator intervention, as in a shutdown).
pub fn lost_connection(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Io(_))
        || sqlstate(error).is_some_and(|code| code.starts_with("08") || code.starts_with("57P"))
}

/// SQLSTATEs `admin_shutdown` and `crash_shutdown`: the server is terminating every
/// session (or an operator terminated this one: then the next retry finds it up).
const SHUTTING_DOWN: [&str; 2] = ["57P01", "57P02"];

fn sqlstate(error: &sqlx::Error) -> Option<std::borrow::Cow<'_, str>> {
    match error {
        sqlx::Error::Database(error) => error.code(),
        _ => None,
    }
}

/// A protocol 3.0 StartupMessage for `user` and `database`.
fn startup_packet(user: &str, database: &str) -> Vec<u8> {
    let mut body = 196_608u32.to_be_bytes().to_vec();
    for (key, value) in [("user", user), ("database", database)] {
        for text in [key, value] {
            body.extend_from_slice(text.as_bytes());
            body.push(0);
        }
    }
    body.push(0);
    let len = u32::try_from(body.len() + 4).unwrap_or(u32::MAX);
    let mut packet = len.to_be_bytes().to_vec();
    packet.extend(body);
    packet
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::{Reachability, State};

    #[test]
    fn while_down_one_caller_retries_and_the_others_fail_fast() {
        let marked_down = Counter::default();
        let reach = Reachability::new("127.0.0.1", 1, true, "u", "d", marked_down.clone());
        assert_eq!(reach.state(), State::Up);
        reach.down();
        assert_eq!(marked_down.get(), 1);
        assert_eq!(reach.state(), State::Down, "just marked down: fail fast");
        std::thread::sleep(super::RETRY_EVERY);
        assert_eq!(reach.state(), State::Retry, "one caller tries again");
        assert_eq!(reach.state(), State::Down, "and the next fails fast");
        reach.up();
        assert_eq!(reach.state(), State::Up);
    }

    /// A server that answers the startup packet with `answer` and then hangs up.
    async fn answering(answer: Vec<u8>) -> u16 {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut startup = [0u8; 8];
            socket.read_exact(&mut startup).await.unwrap();
            socket.write_all(&answer).await.unwrap();
        });
        port
    }

    /// An ErrorResponse as Postgres sends it, with these fields.
    fn error_response(fields: &[(u8, &str)]) -> Vec<u8> {
        let mut body = Vec::new();
        for (kind, value) in fields {
            body.push(*kind);
            body.extend_from_slice(value.as_bytes());
            body.push(0);
        }
        body.push(0);
        let mut frame = vec![b'E'];
        frame.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
        frame.extend(body);
        frame
    }

    #[tokio::test]
    async fn a_server_shutting_down_is_unreachable_and_other_refusals_are_left_to_the_pool() {
        let shutting_down = error_response(&[
            (b'S', "FATAL"),
            (b'C', "57P03"),
            (b'M', "the database system is shutting down"),
        ]);
        let reach = Reachability::new(
            "127.0.0.1",
            answering(shutting_down).await,
            true,
            "u",
            "d",
            Counter::default(),
        );
        assert!(!reach.check().await, "57P03 takes no session");
        assert_eq!(reach.state(), State::Down);

        let no_hba = error_response(&[
            (b'S', "FATAL"),
            (b'C', "28000"),
            (b'M', "no pg_hba.conf entry"),
        ]);
        let reach = Reachability::new(
            "127.0.0.1",
            answering(no_hba).await,
            true,
            "u",
            "d",
            Counter::default(),
        );
        assert!(
            reach.check().await,
            "a configuration error is the pool's to report"
        );

        // AuthenticationOk.
        let auth_ok = vec![b'R', 0, 0, 0, 8, 0, 0, 0, 0];
        let reach = Reachability::new(
            "127.0.0.1",
            answering(auth_ok).await,
            true,
            "u",
            "d",
            Counter::default(),
        );
        assert!(reach.check().await);
        assert_eq!(reach.state(), State::Up);
    }

    #[test]
    fn the_startup_packet_is_a_protocol_3_startup_message() {
        let packet = super::startup_packet("courser", "reviews");
        assert_eq!(
            &packet[..4],
            &u32::try_from(packet.len()).unwrap().to_be_bytes()
        );
        assert_eq!(&packet[4..8], &[0, 3, 0, 0]);
        assert_eq!(&packet[8..], b"user\0courser\0database\0reviews\0\0");
    }

    #[tokio::test]
    async fn requests_checking_at_once_share_one_check() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};
        // A server that takes connections and never answers: each check takes its
        // whole timeout and finds the server busy, not down.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&accepted);
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        let reach = Arc::new(Reachability::new(
            "127.0.0.1",
            port,
            true,
            "u",
            "d",
            Counter::default(),
        ));
        let checks: Vec<_> = (0..50)
            .map(|_| {
                let reach = Arc::clone(&reach);
                tokio::spawn(async move { reach.check().await })
            })
            .collect();
        for check in checks {
            assert!(check.await.unwrap(), "a busy server is not down");
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection for 50 checks"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let reach = Reachability::new("127.0.0.1", port, true, "u", "d", Counter::default());
        assert!(reach.check().await);
        drop(listener);
        assert!(
            reach.check().await,
            "a check that passed is shared for CHECK_AFTER"
        );
        tokio::time::sleep(super::CHECK_AFTER).await;
        assert!(!reach.check().await);
        assert_eq!(reach.state(), State::Down);
        assert!(reach.is_down());
    }
}
