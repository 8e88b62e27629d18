//! A TCP proxy between tollgate and PostgreSQL that breaks the database on demand:
//! stops listening (PostgreSQL stopped), drops every connection (a network cut), or
//! drops them all at the worst moment, right after forwarding the ledger's commit, so
//! that the commit happens and tollgate never hears of it.
//!
//! It reads the client's side of PostgreSQL's wire protocol (v3: an untyped startup
//! message, then messages of a type byte and a length) to recognise the ledger's
//! writes: a transaction that locked the `packages` rows (`… FOR UPDATE`) and ends with
//! a simple-query `COMMIT` (the writer's locked path), or the writer's one-statement
//! batch (`WITH claims AS …`, an extended-protocol Parse/Bind/Execute, which commits at
//! its Sync). Statements are remembered by name, since sqlx parses a statement once
//! per connection and then only binds it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// Which ledger write to cut the connections at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// The `COMMIT` of a transaction that locked the channel's packages, forwarded
    /// first: it commits, and its answer is lost.
    AfterLedgerCommit,
    /// The same `COMMIT`, not forwarded: the transaction is rolled back by the server
    /// when it sees the connection go, and tollgate cannot tell that either.
    BeforeLedgerCommit,
    /// The Sync that ends the writer's one-statement batch, forwarded first.
    AfterLedgerBatch,
}

pub struct PgProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    listening: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Shared {
    upstream: SocketAddr,
    /// Bumped to drop every connection open at that moment.
    generation: watch::Sender<u64>,
    armed: Mutex<Option<(Cut, oneshot::Sender<()>)>>,
}

impl PgProxy {
    /// Listens on a port of its own and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> PgProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (generation, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            upstream,
            generation,
            armed: Mutex::new(None),
        });
        let proxy = PgProxy {
            addr,
            shared: shared.clone(),
            listening: Mutex::new(None),
        };
        *proxy.listening.lock().unwrap() = Some(tokio::spawn(accept(listener, shared)));
        proxy
    }

    /// The proxy in front of the test server, as [`crate::helpers::postgres_admin_url`]
    /// names it.
    pub async fn for_test_server() -> PgProxy {
        let admin = crate::helpers::postgres_admin_url();
        let host_port = admin
            .split('@')
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap();
        let upstream = tokio::net::lookup_host(host_port)
            .await
            .unwrap()
            .next()
            .unwrap();
        PgProxy::start(upstream).await
    }

    /// `url` (a `postgres://` URL) through this proxy, without TLS so that the proxy
    /// can read the protocol.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme_user, rest) = url.split_once('@').unwrap();
        let database = rest.split_once('/').map(|(_, db)| db).unwrap_or("");
        let separator = if database.contains('?') { '&' } else { '?' };
        format!(
            "{scheme_user}@{}/{database}{separator}sslmode=disable",
            self.addr
        )
    }

    /// Drops every open connection now (both ends see it closed).
    pub fn drop_connections(&self) {
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// PostgreSQL "stops": every connection is dropped and the port refuses new ones.
    pub fn stop(&self) {
        if let Some(listening) = self.listening.lock().unwrap().take() {
            listening.abort();
        }
        self.drop_connections();
    }

    /// PostgreSQL "starts" again on the same port.
    pub async fn start_again(&self) {
        let mut listener = None;
        for _ in 0..100 {
            match TcpListener::bind(self.addr).await {
                Ok(bound) => {
                    listener = Some(bound);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let listener = listener.expect("the proxy's port is free again");
        *self.listening.lock().unwrap() = Some(tokio::spawn(accept(listener, self.shared.clone())));
    }

    /// Arms a one-time cut of every connection at `cut`; the receiver fires when it
    /// happened.
    pub fn arm(&self, cut: Cut) -> oneshot::Receiver<()> {
        let (done, happened) = oneshot::channel();
        *self.shared.armed.lock().unwrap() = Some((cut, done));
        happened
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(shared.upstream).await else {
                return;
            };
            relay(client, server, shared).await;
        });
    }
}

/// What the proxy knows of one connection's session.
#[derive(Default)]
struct Session {
    started: bool,
    /// Prepared statements' text by name (the unnamed one under "").
    statements: HashMap<String, String>,
    /// The current transaction locked the `packages` rows.
    ledger_transaction: bool,
    /// The writer's batch was bound and executes at the next Sync.
    batch_pending: bool,
}

/// Relays one connection in both directions in a single task, so that when a message
/// triggers a cut nothing the server answers to it can reach the client first.
async fn relay(mut client: TcpStream, mut server: TcpStream, shared: Arc<Shared>) {
    let mut generation = shared.generation.subscribe();
    let mut session = Session::default();
    let mut pending: Vec<u8> = Vec::new();
    let mut from_client = vec![0u8; 64 * 1024];
    let mut from_server = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            read = client.read(&mut from_client) => {
                let Ok(n) = read else { return };
                if n == 0 { return }
                pending.extend_from_slice(&from_client[..n]);
                while let Some(length) = next_message(&pending, session.started) {
                    let message: Vec<u8> = pending.drain(..length).collect();
                    match session.inspect(&message) {
                        Trigger::Pass => {}
                        trigger => {
                            let cut = {
                                let mut armed = shared.armed.lock().unwrap();
                                match armed.as_ref() {
                                    Some((cut, _)) if trigger.matches(*cut) => armed.take(),
                                    _ => None,
                                }
                            };
                            if let Some((cut, done)) = cut {
                                if cut != Cut::BeforeLedgerCommit {
                                    let _ = server.write_all(&message).await;
                                    let _ = server.flush().await;
                                }
                                shared.generation.send_modify(|g| *g += 1);
                                let _ = done.send(());
                                return;
                            }
                        }
                    }
                    if server.write_all(&message).await.is_err() {
                        return;
                    }
                }
            }
            read = server.read(&mut from_server) => {
                let Ok(n) = read else { return };
                if n == 0 { return }
                if client.write_all(&from_server[..n]).await.is_err() {
                    return;
                }
            }
            _ = generation.changed() => return,
        }
    }
}

/// The length of the first complete message in `buffer`, if there is one.
fn next_message(buffer: &[u8], started: bool) -> Option<usize> {
    if !started {
        // Untyped: a 4-byte length that counts itself.
        let length = u32::from_be_bytes(buffer.get(..4)?.try_into().ok()?) as usize;
        return (buffer.len() >= length).then_some(length);
    }
    let length = u32::from_be_bytes(buffer.get(1..5)?.try_into().ok()?) as usize + 1;
    (buffer.len() >= length).then_some(length)
}

/// What a message is, for the cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trigger {
    Pass,
    LedgerCommit,
    LedgerBatch,
}

impl Trigger {
    fn matches(self, cut: Cut) -> bool {
        match cut {
            Cut::AfterLedgerCommit | Cut::BeforeLedgerCommit => self == Trigger::LedgerCommit,
            Cut::AfterLedgerBatch => self == Trigger::LedgerBatch,
        }
    }
}

/// The text up to the first NUL of `bytes`, and what follows it.
fn c_string(bytes: &[u8]) -> (String, &[u8]) {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    let rest = bytes.get(end + 1..).unwrap_or(&[]);
    (String::from_utf8_lossy(&bytes[..end]).into_owned(), rest)
}

fn locks_packages(sql: &str) -> bool {
    sql.contains("FOR UPDATE") && sql.contains("FROM packages")
}

impl Session {
    fn inspect(&mut self, message: &[u8]) -> Trigger {
        if !self.started {
            let code = u32::from_be_bytes(message[4..8].try_into().unwrap());
            // SSLRequest and GSSENCRequest are followed by the real startup message.
            if code != 80_877_103 && code != 80_877_104 {
                self.started = true;
            }
            return Trigger::Pass;
        }
        let body = &message[5..];
        match message[0] {
            b'Q' => {
                let (sql, _) = c_string(body);
                let statement = sql.trim_start().to_ascii_uppercase();
                if statement.starts_with("COMMIT") {
                    let ledger = std::mem::take(&mut self.ledger_transaction);
                    if ledger {
                        return Trigger::LedgerCommit;
                    }
                } else if statement.starts_with("ROLLBACK") {
                    self.ledger_transaction = false;
                } else if locks_packages(&sql) {
                    self.ledger_transaction = true;
                }
                Trigger::Pass
            }
            b'P' => {
                let (name, rest) = c_string(body);
                let (sql, _) = c_string(rest);
                self.statements.insert(name, sql);
                Trigger::Pass
            }
            b'B' => {
                let (_portal, rest) = c_string(body);
                let (name, _) = c_string(rest);
                let sql = self.statements.get(&name).cloned().unwrap_or_default();
                if locks_packages(&sql) {
                    self.ledger_transaction = true;
                }
                if sql.trim_start().starts_with("WITH claims AS") {
                    self.batch_pending = true;
                }
                Trigger::Pass
            }
            b'S' if std::mem::take(&mut self.batch_pending) => Trigger::LedgerBatch,
            _ => Trigger::Pass,
        }
    }
}
