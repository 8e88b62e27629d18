//! The HTTP edge under clients that misbehave: slow or silent sockets, too many
//! connections, too many sends at once, bodies of the wrong type or arriving too
//! slowly, requests that outlive their timeout, scrapes in bursts.

use std::future::Future;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tollgate::store::{ConnectOptions, Db, SessionLimits};

use crate::app::*;
use crate::helpers::Backend;
use crate::on_both_backends;
use crate::vendor::Reply;

on_both_backends!(
    sends_beyond_the_in_flight_cap_are_refused_at_once_with_retry_after,
    a_repeat_while_the_first_request_is_at_the_vendor_is_told_to_retry,
    a_body_not_declared_as_json_is_415_and_nothing_is_charged_or_sent,
);

/// Enough sockets to show that none of them holds the shutdown, few enough to stay
/// well inside a CI runner's open-file limit (each is two descriptors in this process).
const SLOW_CLIENTS: usize = 300;

/// How long a test waits for something that must happen: far above any timeout under
/// test, so that reaching it means the behaviour is missing, not slow.
const WAIT: Duration = Duration::from_secs(60);

fn options(server_keys: &str) -> AppOptions {
    AppOptions {
        server_keys: server_keys.into(),
        ..AppOptions::default()
    }
}

/// Waits (up to [`WAIT`]) until `condition` holds.
async fn until<F: Future<Output = bool>>(what: &str, mut condition: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Reads until the server closes the connection; what it sent before closing.
async fn read_until_closed(socket: &mut TcpStream) -> String {
    let mut received = Vec::new();
    let read = tokio::time::timeout(WAIT, socket.read_to_end(&mut received)).await;
    assert!(read.is_ok(), "the server kept the connection open");
    String::from_utf8_lossy(&received).into_owned()
}

async fn error_of(response: reqwest::Response) -> (u16, Option<String>, Value) {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = response.json().await.unwrap();
    (status, retry_after, body["error"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_graceful_stop_ends_within_the_grace_with_hundreds_of_slow_clients_connected() {
    let mut app = spawn_app_with(
        Backend::Sqlite,
        options(
            r#"shutdown_grace = "1s"
            header_read_timeout = "10m"
            max_connections = 1000"#,
        ),
    )
    .await;
    let mut slow = Vec::new();
    for i in 0..SLOW_CLIENTS {
        let mut socket = TcpStream::connect(app.addr).await.unwrap();
        if i % 2 == 0 {
            // Headers begun and never finished.
            socket
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: tollgate\r\n")
                .await
                .unwrap();
        }
        slow.push(socket);
    }
    // Connections are accepted in order: once a later one is answered, every slow one
    // is held by the server.
    let answered = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(answered.status(), 200);

    let stopped = tokio::time::timeout(WAIT, app.stop()).await;

    assert!(stopped.is_ok(), "the slow clients held the shutdown");
    for socket in &mut slow {
        read_until_closed(socket).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_too_slow_with_its_headers_is_disconnected() {
    let mut app = spawn_app_with(Backend::Sqlite, options(r#"header_read_timeout = "1s""#)).await;

    // Silent, and a byte at a time: neither may hold its connection past the timeout.
    let mut silent = TcpStream::connect(app.addr).await.unwrap();
    let trickling = TcpStream::connect(app.addr).await.unwrap();
    let (mut reader, mut writer) = trickling.into_split();
    let trickle = tokio::spawn(async move {
        let header = b"GET /healthz HTTP/1.1\r\nX-Padding: ";
        for byte in header.iter().chain(std::iter::repeat(&b'a')) {
            if writer.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    read_until_closed(&mut silent).await;
    let mut received = Vec::new();
    let closed = tokio::time::timeout(WAIT, reader.read_to_end(&mut received)).await;
    assert!(
        closed.is_ok(),
        "a client trickling its headers kept its connection"
    );
    let _ = tokio::time::timeout(WAIT, trickle).await;
    let prompt = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(prompt.status(), 200, "a prompt client is still served");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_more_connections_than_the_cap_are_served_at_once() {
    let mut app = spawn_app_with(
        Backend::Sqlite,
        options(
            r#"max_connections = 2
            header_read_timeout = "10m""#,
        ),
    )
    .await;
    let first = TcpStream::connect(app.addr).await.unwrap();
    let _second = TcpStream::connect(app.addr).await.unwrap();
    let mut third = TcpStream::connect(app.addr).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: tollgate\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();

    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(500), third.read(&mut byte)).await;
    assert!(
        early.is_err(),
        "a third connection was served while two held the cap"
    );

    drop(first);
    let answer = read_until_closed(&mut third).await;
    assert!(
        format!("{}{answer}", byte[0] as char).contains("200 OK"),
        "{answer}"
    );
    app.stop().await;
}

async fn sends_beyond_the_in_flight_cap_are_refused_at_once_with_retry_after(backend: Backend) {
    let mut app = spawn_app_with(
        backend,
        AppOptions {
            server_keys: "max_in_flight_sends = 1".into(),
            vendor_timeout: Some("20s"),
            ..AppOptions::default()
        },
    )
    .await;
    app.add_package("sms_code", 10, "1.00").await;
    app.vendor
        .answer_with(Reply::success().delayed(Duration::from_secs(3)));
    let first = {
        let (http, url) = (app.http.clone(), app.url("/v1/messages"));
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(SHOP_TOKEN)
                .json(&json!({"channel": "sms_code", "to": MOBILE, "template": "login_code", "params": {"code": "1"}}))
                .send()
                .await
                .unwrap()
        })
    };
    until("the first send is at the vendor", || async {
        app.vendor.calls() == 1
    })
    .await;

    let (status, retry_after, error) = error_of(app.send_login_code().await).await;

    assert_eq!(status, 503);
    assert_eq!(error["code"], "unavailable");
    assert_eq!(error["charged"], false);
    assert!(retry_after.is_some(), "503 without Retry-After");
    assert_eq!(first.await.unwrap().status(), 200);
    assert_eq!(
        app.vendor.calls(),
        1,
        "the refused send never reached the vendor"
    );
    assert_eq!(app.quota("sms_code").await["used"], 1);
    app.vendor.answer_with(Reply::success());
    assert_eq!(
        app.send_login_code().await.status(),
        200,
        "the place is free again"
    );
    app.stop().await;
}

async fn a_repeat_while_the_first_request_is_at_the_vendor_is_told_to_retry(backend: Backend) {
    let mut app = spawn_app_with(
        backend,
        AppOptions {
            vendor_timeout: Some("20s"),
            ..AppOptions::default()
        },
    )
    .await;
    app.add_package("sms_code", 10, "1.00").await;
    app.vendor
        .answer_with(Reply::success().delayed(Duration::from_secs(3)));
    let body = json!({"channel": "sms_code", "to": MOBILE, "template": "login_code", "params": {"code": "1234"}});
    let send = |body: Value| {
        app.http
            .post(app.url("/v1/messages"))
            .bearer_auth(SHOP_TOKEN)
            .header("Idempotency-Key", "signup-4410")
            .json(&body)
            .send()
    };
    let first = tokio::spawn(send(body.clone()));
    until("the first request is at the vendor", || async {
        app.vendor.calls() == 1
    })
    .await;

    let (status, retry_after, error) = error_of(send(body.clone()).await.unwrap()).await;
    let (other_status, _, other) = error_of(
        send(json!({"channel": "sms_code", "to": MOBILE, "template": "login_code", "params": {"code": "9999"}}))
            .await
            .unwrap(),
    )
    .await;

    assert_eq!(
        (status, error["code"].as_str()),
        (409, Some("idempotency_in_progress"))
    );
    assert_eq!(error["charged"], false);
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert_eq!(
        (other_status, other["code"].as_str()),
        (409, Some("idempotency_conflict"))
    );
    let first: Value = first.await.unwrap().unwrap().json().await.unwrap();
    let after: Value = send(body).await.unwrap().json().await.unwrap();
    assert_eq!(
        after["id"], first["id"],
        "once sent, a repeat gets the first answer"
    );
    assert_eq!(app.vendor.calls(), 1);
    app.stop().await;
}

async fn a_body_not_declared_as_json_is_415_and_nothing_is_charged_or_sent(backend: Backend) {
    let mut app = spawn_app(backend).await;
    app.add_package("sms_code", 10, "1.00").await;
    let body = json!({"channel": "sms_code", "to": MOBILE, "template": "login_code", "params": {"code": "1"}})
        .to_string();
    let post = |content_type: Option<&str>, body: String| {
        let mut request = app
            .http
            .post(app.url("/v1/messages"))
            .bearer_auth(SHOP_TOKEN)
            .body(body);
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        request.send()
    };

    for (content_type, body) in [
        (None, body.clone()),
        (Some("text/plain"), body.clone()),
        (
            Some("application/x-www-form-urlencoded"),
            format!("channel=sms_code&to={MOBILE}&template=login_code&params=1"),
        ),
    ] {
        let (status, _, error) = error_of(post(content_type, body).await.unwrap()).await;
        assert_eq!(
            (status, error["code"].as_str()),
            (415, Some("unsupported_media_type")),
            "{content_type:?}"
        );
        assert_eq!(error["charged"], false, "{content_type:?}");
    }
    let package_as_text = app
        .http
        .post(app.url("/v1/packages"))
        .bearer_auth(ADMIN_TOKEN)
        .header("Content-Type", "text/plain")
        .body(json!({"channel": "sms_code", "units": 1000, "price": "45.00"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(package_as_text.status(), 415);
    assert_eq!(app.vendor.calls(), 0);
    assert_eq!(app.quota("sms_code").await["used"], 0);
    assert_eq!(app.quota("sms_code").await["purchased"], 10);

    let with_charset = post(Some("application/json; charset=utf-8"), body)
        .await
        .unwrap();
    assert_eq!(with_charset.status(), 200);
    assert_eq!(app.vendor.calls(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_that_arrives_too_slowly_is_408_and_nothing_is_sent() {
    let mut app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            server_keys: r#"request_timeout = "2s""#.into(),
            vendor_timeout: Some("1s"),
            ..AppOptions::default()
        },
    )
    .await;
    app.add_package("sms_code", 10, "1.00").await;
    let mut socket = TcpStream::connect(app.addr).await.unwrap();
    socket
        .write_all(
            format!(
                "POST /v1/messages HTTP/1.1\r\nHost: tollgate\r\nAuthorization: Bearer {SHOP_TOKEN}\r\n\
                 Content-Type: application/json\r\nContent-Length: 200\r\n\r\n{{\"channel\":"
            )
            .as_bytes(),
        )
        .await
        .unwrap();

    let answer = read_until_closed(&mut socket).await;

    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains(r#""code":"request_timeout""#), "{answer}");
    assert!(answer.contains(r#""charged":false"#), "{answer}");
    assert_eq!(app.vendor.calls(), 0);
    app.stop().await;
}

/// A session of another instance, whose own limits let it hold locks as long as a
/// test needs.
async fn another_session(app: &TestApp) -> Db {
    let limits = SessionLimits {
        idle_in_transaction_timeout: WAIT,
        statement_timeout: WAIT,
        ..SessionLimits::default()
    };
    Db::connect_with(
        &app.db.url,
        ConnectOptions {
            session_limits: limits,
            ..ConnectOptions::new(1)
        },
    )
    .await
    .unwrap()
}

/// A "stalled instance": it holds the row locks of `sms_code`'s packages until its
/// transaction ends.
async fn hold_the_packages_of_sms_code(
    app: &TestApp,
) -> (Db, sqlx::Transaction<'static, sqlx::Any>) {
    let holder = another_session(app).await;
    let mut transaction = holder.pool().begin().await.unwrap();
    sqlx::query("SELECT id FROM packages WHERE channel = 'sms_code' FOR UPDATE")
        .fetch_all(&mut *transaction)
        .await
        .unwrap();
    (holder, transaction)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_send_that_outlives_the_request_timeout_is_not_cut_and_its_client_is_told() {
    let mut app = spawn_app_with(
        Backend::Postgres,
        AppOptions {
            server_keys: r#"request_timeout = "2s""#.into(),
            database_keys: "lock_timeout = \"50s\"\nstatement_timeout = \"55s\"".into(),
            vendor_timeout: Some("1s"),
            ..AppOptions::default()
        },
    )
    .await;
    app.add_package("sms_code", 10, "1.00").await;
    let body = json!({"channel": "sms_code", "to": MOBILE, "template": "login_code", "params": {"code": "1"}});
    let send = || {
        app.http
            .post(app.url("/v1/messages"))
            .bearer_auth(SHOP_TOKEN)
            .header("Idempotency-Key", "order-77")
            .json(&body)
            .send()
    };
    let (_holder, stalled) = hold_the_packages_of_sms_code(&app).await;

    let (status, retry_after, error) = error_of(send().await.unwrap()).await;

    assert_eq!(
        (status, error["code"].as_str()),
        (504, Some("send_in_progress"))
    );
    assert_eq!(
        error["charged"],
        Value::Null,
        "whether it is charged is not known yet"
    );
    assert!(
        retry_after.is_some(),
        "with a key, the client is told when to ask again"
    );
    stalled.commit().await.unwrap();
    until("the send the client gave up on is charged", || async {
        app.quota("sms_code").await["used"] == 1
    })
    .await;
    assert_eq!(app.vendor.calls(), 1);
    let repeat = send().await.unwrap();
    assert_eq!(repeat.status(), 200, "the repeat gets the send's outcome");
    assert_eq!(app.vendor.calls(), 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_holder_of_a_channels_rows_makes_sends_fail_fast_and_retryably() {
    let mut app = spawn_app_with(
        Backend::Postgres,
        AppOptions {
            database_keys: r#"lock_timeout = "300ms""#.into(),
            ..AppOptions::default()
        },
    )
    .await;
    app.add_package("sms_code", 10, "1.00").await;
    let (_holder, stalled) = hold_the_packages_of_sms_code(&app).await;

    let answered = tokio::time::timeout(WAIT, app.send_login_code()).await;

    let (status, retry_after, error) =
        error_of(answered.expect("the send waited on the stalled session")).await;
    assert_eq!((status, error["code"].as_str()), (503, Some("unavailable")));
    assert_eq!(error["charged"], false);
    assert!(retry_after.is_some(), "503 without Retry-After");
    assert_eq!(app.vendor.calls(), 0);
    stalled.rollback().await.unwrap();
    assert_eq!(app.send_login_code().await.status(), 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_need_the_token_when_one_is_configured() {
    let mut app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            extra_toml: "[metrics]\ntoken_env = \"TEST_METRICS_TOKEN\"".into(),
            ..AppOptions::default()
        },
    )
    .await;
    let scrape = |token: Option<&str>| {
        let request = app.http.get(app.url("/metrics"));
        match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
        .send()
    };

    let anonymous = scrape(None).await.unwrap();
    let wrong = scrape(Some(SHOP_TOKEN)).await.unwrap();
    let right = scrape(Some(METRICS_TOKEN)).await.unwrap();

    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    assert_eq!(wrong.status(), 401);
    assert_eq!(right.status(), 200);
    assert!(right.text().await.unwrap().contains("tollgate_build_info"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_scrapes_never_takes_the_send_paths_connections() {
    let mut app = spawn_app_with(
        Backend::Postgres,
        AppOptions {
            // Three: a scrape may hold one, and the alert engine's background work
            // (which also reads the locked table) another, leaving one for the send.
            database_keys:
                "max_connections = 3\nlock_timeout = \"50s\"\nstatement_timeout = \"55s\"".into(),
            ..AppOptions::default()
        },
    )
    .await;
    app.add_package("sms_code", 10, "1.00").await;
    // Every scrape reads the alert states; with their table locked, a scrape holds its
    // database connection for as long as the lock lasts.
    let holder = another_session(&app).await;
    let mut locked = holder.pool().begin().await.unwrap();
    sqlx::query("LOCK TABLE alert_states IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *locked)
        .await
        .unwrap();
    let scrapes: Vec<_> = (0..12)
        .map(|_| {
            let (http, url) = (app.http.clone(), app.url("/metrics"));
            tokio::spawn(async move { http.get(url).send().await.unwrap() })
        })
        .collect();
    until("a scrape waits on the lock", || async {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(app.db.db.pool())
        .await
        .unwrap();
        waiting >= 1
    })
    .await;

    let send = tokio::time::timeout(WAIT, app.send_login_code()).await;

    assert_eq!(
        send.expect("the send ended").status(),
        200,
        "scrapes took the send's connections"
    );
    locked.commit().await.unwrap();
    for scrape in scrapes {
        let answer = scrape.await.unwrap();
        match answer.status().as_u16() {
            200 => {}
            503 => assert!(answer.headers().contains_key("retry-after")),
            other => panic!("a scrape answered {other}"),
        }
    }
    holder.close().await;
    app.stop().await;
}
