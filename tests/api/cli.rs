//! The command line as a user runs it: the real binary, a configuration file, a database.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

use crate::helpers::{Backend, TestDb};
use crate::on_both_backends;

on_both_backends!(
    packages_are_added_listed_and_bad_ones_change_nothing,
    quota_and_reconcile_speak_json_for_scripts,
);

struct Cli {
    config: PathBuf,
    _dir: tempfile::TempDir,
    _db: TestDb,
}

impl Cli {
    async fn new(backend: Backend, extra: &str) -> Cli {
        let db = TestDb::new(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("tollgate.toml");
        std::fs::write(
            &config,
            format!(
                r#"
                [database]
                url = "{}"

                [[channels]]
                name = "sms_code"
                kind = "sms_code"
                url = "https://dxyzm.market.alicloudapi.com/chuangxin/dxjk"
                signature = "【卡池】"
                {extra}
                "#,
                db.url.expose()
            ),
        )
        .unwrap();
        Cli {
            config,
            _dir: dir,
            _db: db,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

async fn packages_are_added_listed_and_bad_ones_change_nothing(backend: Backend) {
    let cli = Cli::new(backend, "").await;

    let refused = [
        (
            vec!["--units", "0", "--price", "45.00"],
            "positive whole number",
        ),
        (
            vec!["--units", "-5", "--price", "45.00"],
            "positive whole number",
        ),
        (
            vec!["--units", "1000", "--price", "forty"],
            "not a decimal amount",
        ),
        (
            vec![
                "--units",
                "1000",
                "--price",
                "45.00",
                "--purchased-at",
                "2026-12-01",
                "--expires-at",
                "2026-11-01",
            ],
            "must be after purchased_at",
        ),
    ];
    for (args, message) in refused {
        let mut full = vec!["package", "add", "--channel", "sms_code"];
        full.extend(args.iter());
        let output = cli.run(&full);
        assert!(!output.status.success(), "{full:?}");
        assert!(
            stderr(&output).contains(message),
            "{full:?}: {}",
            stderr(&output)
        );
    }
    let unknown = cli.run(&[
        "package",
        "add",
        "--channel",
        "fax",
        "--units",
        "10",
        "--price",
        "1",
    ]);
    assert!(stderr(&unknown).contains("unknown channel \"fax\""));
    assert_eq!(
        cli.json(&["package", "list", "--format", "json"]),
        Value::Array(vec![])
    );

    let added = cli.json(&[
        "package",
        "add",
        "--channel",
        "sms_code",
        "--units",
        "1000",
        "--price",
        "45.00",
        "--order-id",
        "A-1",
        "--format",
        "json",
    ]);
    let again = cli.json(&[
        "package",
        "add",
        "--channel",
        "sms_code",
        "--units",
        "5",
        "--price",
        "1",
        "--order-id",
        "A-1",
        "--format",
        "json",
    ]);

    assert_eq!(added["unit_price"], "0.045");
    assert_eq!(again["id"], added["id"]);
    let listed = cli.json(&["package", "list", "--format", "json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let csv = cli.run(&["package", "list", "--format", "csv"]);
    let text = String::from_utf8(csv.stdout).unwrap();
    assert!(text
        .lines()
        .next()
        .unwrap()
        .starts_with("id,channel,units,price"));
    assert!(text
        .lines()
        .nth(1)
        .unwrap()
        .contains(",sms_code,1000,45.00,0.045,"));
}

async fn quota_and_reconcile_speak_json_for_scripts(backend: Backend) {
    let cli = Cli::new(backend, "").await;
    cli.json(&[
        "package",
        "add",
        "--channel",
        "sms_code",
        "--units",
        "100",
        "--price",
        "10",
        "--format",
        "json",
    ]);

    let record = cli.json(&[
        "reconcile",
        "--channel",
        "sms_code",
        "--remaining",
        "90",
        "--note",
        "console",
        "--format",
        "json",
    ]);
    let quota = cli.json(&["quota", "sms_code", "--format", "json"]);

    assert_eq!(record["adjusted_units"], 10);
    assert_eq!(record["adjusted_cost"], "1.00");
    // The write-off is a correction, not a charge (SPEC §4).
    assert_eq!(quota[0]["remaining"], 90);
    assert_eq!(quota[0]["used"], 0);
    assert_eq!(quota[0]["reconciled"], -10);
    assert_eq!(quota[0]["purchased"], 100);
}

#[tokio::test]
async fn config_check_names_every_problem_and_fails() {
    let cli = Cli::new(
        Backend::Sqlite,
        r#"
        [[templates]]
        name = "t"
        channel = "nope"
        body = "【卡池】#code"
        "#,
    )
    .await;

    let output = cli.run(&["config", "check"]);

    assert!(!output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("templates[0].channel: no channel is named \"nope\""),
        "{text}"
    );
    assert!(text.contains("templates[0].body"), "{text}");
}

#[tokio::test]
async fn config_check_names_every_bad_reserve_class_and_limit_by_its_key() {
    let cli = Cli::new(
        Backend::Sqlite,
        r#"
        reserve_critical = "-5%"
        shed_bulk_below = "150%"

        [[channels]]
        name = "voice"
        kind = "voice_code"
        url = "https://yyyzm.market.alicloudapi.com/chuangxin/yyyzm"
        reserve_critical = -20

        [[templates]]
        name = "login_code"
        channel = "sms_code"
        class = "urgent"
        body = "【卡池】验证码#code#"

        [[limits]]
        name = "per-number"
        scope = "mobile"
        classes = ["vip"]
        window = "soon"
        max_sends = 1

        [[limits]]
        name = "budget"
        scope = "client"
        window = "1d"
        max_cost = "-1.00"
        "#,
    )
    .await;

    let output = cli.run(&["config", "check"]);

    assert!(!output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for key in [
        "channels[0].reserve_critical",
        "channels[0].shed_bulk_below",
        "channels[1].reserve_critical",
        "templates[0].class",
        "limits[0].classes[0]",
        "limits[0].window",
        "limits[1].max_cost",
    ] {
        assert!(
            text.contains(&format!("{key}: ")),
            "{key} is not named:\n{text}"
        );
    }
}

#[tokio::test]
async fn config_check_reports_missing_secrets_and_empty_channels() {
    let cli = Cli::new(Backend::Sqlite, "").await;

    let output = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("--config")
        .arg(&cli.config)
        .args(["config", "check"])
        .env_remove("ALIYUN_APPCODE")
        .output()
        .unwrap();

    assert!(!output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("ALIYUN_APPCODE (its AppCode) is not set"),
        "{text}"
    );
    assert!(
        text.contains("warning: channel sms_code has no package registered"),
        "{text}"
    );
}

#[tokio::test]
async fn config_check_names_wrong_limits_of_the_edge() {
    let cli = Cli::new(
        Backend::Sqlite,
        r#"
        [server]
        header_read_timeout = "never"
        request_timeout = "5s"
        max_connections = 0
        max_in_flight_sends = 0
        "#,
    )
    .await;

    let output = cli.run(&["config", "check"]);

    assert!(!output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    for key in [
        "server.header_read_timeout:",
        "server.request_timeout: must be longer than upstream.timeout",
        "server.max_connections: must be at least 1",
        "server.max_in_flight_sends: must be at least 1",
    ] {
        assert!(text.contains(key), "{key} missing from {text}");
    }
}

/// `tollgate package list | head -1`: the reader leaves before the command writes.
#[tokio::test]
async fn a_closed_stdout_ends_every_command_quietly() {
    let cli = Cli::new(Backend::Sqlite, "").await;
    for args in [
        &["package", "list"][..],
        &["quota", "--format", "json"],
        &["report", "monthly", "--format", "csv"],
        &["config", "check"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate"))
            .arg("--config")
            .arg(&cli.config)
            .args(args)
            .env_remove("DATABASE_URL")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Closing the only read end now: the command is still starting (reading its
        // configuration, opening the database), so every line it writes finds no reader.
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();

        assert_eq!(
            output.status.code(),
            Some(141),
            "{args:?}: {}",
            stderr(&output)
        );
        assert_eq!(stderr(&output), "", "{args:?}");
    }
}

/// The real binary in a fresh folder, with the starter's secrets in its environment.
fn tollgate_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .current_dir(dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("TOLLGATE_CONFIG")
        .env("ALIYUN_APPCODE", "0f1e2d3c4b5a69788796a5b4c3d2e1f0")
        .env("TOLLGATE_TOKEN_SHOP", "shop-token-5f3a9c71")
        .env("TOLLGATE_TOKEN_OPS", "ops-token-8d1e5c2b")
        .output()
        .unwrap()
}

#[test]
fn a_starter_configuration_passes_config_check_unchanged() {
    let dir = tempfile::tempdir().unwrap();

    let init = tollgate_in(dir.path(), &["config", "init"]);
    assert!(init.status.success(), "{}", stderr(&init));
    let written = std::fs::read_to_string(dir.path().join("tollgate.toml")).unwrap();
    assert_eq!(written, tollgate::config::STARTER_CONFIG);

    let check = tollgate_in(
        dir.path(),
        &["--config", "tollgate.toml", "config", "check"],
    );
    let printed = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{printed}{}", stderr(&check));
    assert!(
        printed.contains("ok: 2 channel(s), 1 template(s), 2 client(s)"),
        "{printed}"
    );
    assert!(!printed.contains("error:"), "{printed}");
}

#[test]
fn config_init_never_overwrites_a_file_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mine.toml");
    std::fs::write(&file, "# my own\n").unwrap();

    let refused = tollgate_in(dir.path(), &["config", "init", "--output", "mine.toml"]);
    assert!(!refused.status.success());
    assert!(stderr(&refused).contains("--force"), "{}", stderr(&refused));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "# my own\n");

    let forced = tollgate_in(
        dir.path(),
        &["config", "init", "--output", "mine.toml", "--force"],
    );
    assert!(forced.status.success(), "{}", stderr(&forced));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        tollgate::config::STARTER_CONFIG
    );
}

/// `tollgate serve` with no configuration in an empty folder, as a newcomer starts it:
/// its address, once the welcome text is printed (the trial packages are registered by
/// then), and the process, killed on drop.
async fn start_the_builtin_sandbox(dir: &std::path::Path) -> (String, tokio::process::Child) {
    use tokio::io::{AsyncBufReadExt, BufReader};

    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir)
        .env_remove("TOLLGATE_CONFIG")
        .env_remove("TOLLGATE_TOKEN")
        .env_remove("TOLLGATE_SANDBOX_APPCODE")
        .env_remove("TOLLGATE_SANDBOX_BACKUP_APPCODE")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let mut welcome = String::new();
    let base = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        let mut base = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            welcome.push_str(&line);
            welcome.push('\n');
            if let Some(rest) = line.strip_prefix("tollgate is running on ") {
                base = rest.split_whitespace().next().map(str::to_owned);
            }
            if line.contains("sign in with the token") {
                return base.expect("the welcome text names the address");
            }
        }
        panic!("the welcome text ended early: {welcome}");
    })
    .await
    .expect("the sandbox starts within a minute");
    assert!(welcome.contains("\"channel\":\"otp\""), "{welcome}");
    (base, serve)
}

#[tokio::test]
async fn the_builtin_sandbox_sends_through_its_route_and_to_its_template_format_channel() {
    // Arrange: the built-in sandbox, as `tollgate serve` starts it with no configuration.
    let dir = tempfile::tempdir().unwrap();
    let (base, _serve) = start_the_builtin_sandbox(dir.path()).await;
    let http = reqwest::Client::new();
    let send = |body: Value| {
        http.post(format!("{base}/v1/messages"))
            .bearer_auth("sandbox")
            .json(&body)
            .send()
    };
    let code = |to: &str, channel: &str| serde_json::json!({"channel": channel, "to": to, "template": "login_code", "params": {"code": "123456"}});

    // Act and assert: the route carries a code on its first channel.
    let routed = send(code("13800138000", "otp")).await.unwrap();
    assert_eq!(routed.status(), 200);
    let routed: Value = routed.json().await.unwrap();
    assert_eq!(routed["status"], "sent", "{routed}");
    assert_eq!(routed["route"], "otp");
    assert_eq!(routed["channel"], "sms_code");
    assert_eq!(
        routed["attempts"],
        serde_json::json!([{"channel": "sms_code", "status": "sent"}])
    );

    // The template-format channel, addressed directly, is sent by the simulated vendor's
    // template backend, whose own count agrees with the ledger's.
    let direct = send(code("13900139000", "sms_backup")).await.unwrap();
    assert_eq!(direct.status(), 200);
    let direct: Value = direct.json().await.unwrap();
    assert_eq!(direct["status"], "sent", "{direct}");
    assert_eq!(direct["channel"], "sms_backup");
    assert_eq!(direct["upstream"]["message"], "成功", "{direct}");
    assert!(direct.get("route").is_none_or(Value::is_null), "{direct}");
    let quota: Value = http
        .get(format!("{base}/v1/quota/sms_backup"))
        .bearer_auth("sandbox")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(quota["remaining"], 99, "{quota}");
    assert_eq!(quota["vendor_remaining"], 99, "{quota}");
    assert_eq!(quota["vendor_drift"], 0, "{quota}");

    // With nothing left on `sms_code`, the route fails over to the template-format vendor
    // and charges only there.
    let emptied = http
        .post(format!("{base}/v1/reconciliations"))
        .bearer_auth("sandbox")
        .json(&serde_json::json!({"channel": "sms_code", "remaining": 0, "note": "test"}))
        .send()
        .await
        .unwrap();
    assert!(emptied.status().is_success(), "{}", emptied.status());
    let failed_over = send(code("13700137000", "otp")).await.unwrap();
    assert_eq!(failed_over.status(), 200);
    let failed_over: Value = failed_over.json().await.unwrap();
    assert_eq!(failed_over["status"], "sent", "{failed_over}");
    assert_eq!(failed_over["route"], "otp");
    assert_eq!(failed_over["channel"], "sms_backup");
    assert_eq!(
        failed_over["attempts"],
        serde_json::json!([
            {"channel": "sms_code", "status": "quota_exhausted"},
            {"channel": "sms_backup", "status": "sent"},
        ])
    );
    assert_eq!(failed_over["quota"]["remaining_units"], 98);
}
