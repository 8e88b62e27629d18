//! The Grafana dashboards and Prometheus rules of grafana/, checked against the real
//! thing: Grafana's schema, promtool, and a real Prometheus scraping a running tollgate.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tollgate::marketplace::SyncScope;
use tollgate::metrics::names;
use tollgate::secret::Secret;
use tollgate::upstream::sandbox::{self, SandboxAccount, SandboxConfig};

use crate::app::{spawn_app_with, AppOptions, TestApp, MOBILE};
use crate::helpers::Backend;
use crate::metrics::{add_expiring_package, send_mixed_traffic};
use crate::vendor::{Reply, StandInVendor};

const DASHBOARDS: [&str; 2] = ["operations.json", "cost.json"];

fn grafana_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana")
}

fn dashboard(file: &str) -> Value {
    let path = grafana_dir().join("dashboards").join(file);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every panel, including those nested in rows.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut all = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        all.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            all.extend(nested);
        }
    }
    all
}

/// (panel title, PromQL) of every query of every panel.
fn panel_queries(dashboard: &Value) -> Vec<(String, String)> {
    panels(dashboard)
        .into_iter()
        .flat_map(|panel| {
            let title = panel["title"].as_str().unwrap_or("").to_owned();
            panel["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(move |t| Some((title.clone(), t["expr"].as_str()?.to_owned())))
        })
        .collect()
}

/// The `tollgate_*` names a query uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("tollgate_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        found.insert(name);
    }
    found
}

fn walk<'a>(value: &'a Value, path: String, visit: &mut impl FnMut(&str, &'a Value)) {
    visit(&path, value);
    match value {
        Value::Object(map) => map
            .iter()
            .for_each(|(k, v)| walk(v, format!("{path}.{k}"), visit)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .for_each(|(i, v)| walk(v, format!("{path}[{i}]"), visit)),
        _ => {}
    }
}

#[test]
fn dashboards_use_only_metrics_tollgate_exports() {
    let mut used = BTreeSet::new();
    for file in DASHBOARDS {
        let queries = panel_queries(&dashboard(file));
        assert!(queries.len() >= 8, "{file} has queries");
        for (title, expr) in queries {
            let names_in_query = metric_names(&expr);
            assert!(!names_in_query.is_empty(), "{file} / {title}: {expr}");
            for name in names_in_query {
                assert!(
                    names::is_exported_series(&name),
                    "{file} / {title} uses {name}, which tollgate does not export"
                );
                used.insert(name);
            }
        }
    }
    // Every quota, cost and alert figure is on a dashboard.
    for name in [
        names::SENDS_TOTAL,
        names::QUOTA_REMAINING_UNITS,
        names::QUOTA_TIME_LEFT_SECONDS,
        names::COST_YUAN_TOTAL,
        names::PACKAGE_EXPIRY_TIMESTAMP_SECONDS,
        names::ALERT_FIRING,
        names::NOTIFICATIONS_TOTAL,
        names::MARKETPLACE_REMAINING_UNITS,
        names::LEDGER_DRIFT_UNITS,
        names::ROUTE_FAILOVERS_TOTAL,
        names::CIRCUIT_OPEN,
        names::ROUTE_CHANNELS_AVAILABLE,
    ] {
        assert!(used.contains(name), "no dashboard shows {name}");
    }
}

/// The labels through which a metric follows the Channel variable (any one of them): a
/// failover names two channels, `from` and `to`; metrics of notifiers, of the build and
/// of whole routes (which span channels) name none, and the variable cannot filter them.
fn channel_labels(metric: &str) -> &'static [&'static str] {
    match metric {
        "tollgate_notifications_total"
        | "tollgate_build_info"
        | "tollgate_route_channels"
        | "tollgate_route_channels_available" => &[],
        "tollgate_route_failovers_total" => &["from", "to"],
        _ => &["channel"],
    }
}

/// Each `tollgate_*` selector of a query, as (metric, its `{…}` matchers or "").
fn selectors(expr: &str) -> Vec<(&str, &str)> {
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("tollgate_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let (name, after) = tail.split_at(end);
        let matchers = match after.strip_prefix('{') {
            Some(inner) => &inner[..inner.find('}').unwrap_or(inner.len())],
            None => "",
        };
        found.push((name, matchers));
        rest = after;
    }
    found
}

#[test]
fn every_panel_follows_the_channel_variable() {
    for file in ["operations.json", "cost.json"] {
        for (title, expr) in panel_queries(&dashboard(file)) {
            for (metric, matchers) in selectors(&expr) {
                let labels = channel_labels(metric);
                assert!(
                    labels.is_empty()
                        || labels
                            .iter()
                            .any(|label| matchers.contains(&format!(r#"{label}=~"$channel""#))),
                    "{file} panel {title:?}: {metric} ignores the Channel variable in {expr}"
                );
            }
        }
    }
}

#[test]
fn dashboards_name_no_datasource_uid() {
    for file in DASHBOARDS {
        let dashboard = dashboard(file);
        let variables = dashboard["templating"]["list"].as_array().unwrap();
        let ds = variables
            .iter()
            .find(|v| v["name"] == "DS_PROMETHEUS")
            .expect("a DS_PROMETHEUS variable");
        assert_eq!(ds["type"], "datasource");
        assert_eq!(ds["query"], "prometheus");
        let channel = variables.iter().find(|v| v["name"] == "channel").unwrap();
        assert_eq!(
            channel["query"],
            "label_values(tollgate_quota_remaining_units, channel)"
        );
        let mut references = 0;
        walk(&dashboard, String::new(), &mut |path, value| {
            if path.ends_with(".datasource") {
                assert_eq!(value["uid"], "${DS_PROMETHEUS}", "{file}{path}");
                references += 1;
            } else if path.ends_with(".uid") && path != ".uid" && !path.ends_with("datasource.uid")
            {
                panic!("{file}{path}: a hard-coded uid {value}");
            }
        });
        // Every panel (rows aside) and every query reach Prometheus through the variable.
        let queried = panels(&dashboard)
            .iter()
            .filter(|p| p["type"] != "row")
            .count();
        assert!(references >= 2 * queried, "{file}: {references} references");
    }
}

#[test]
fn dashboards_fit_grafanas_dashboard_schema() {
    let check = grafana_dir().join("schema-check");
    let files: Vec<PathBuf> = DASHBOARDS
        .iter()
        .map(|f| grafana_dir().join("dashboards").join(f))
        .collect();
    let output = schema_check(&check, &files);
    assert!(output.status.success(), "{}", report(&output));

    // The check bites: a panel whose gridPos is not an object is refused.
    let mut broken = dashboard("cost.json");
    broken["panels"][1]["gridPos"] = Value::String("top left".into());
    let dir = tempfile::tempdir().unwrap();
    let broken_file = dir.path().join("broken.json");
    std::fs::write(&broken_file, broken.to_string()).unwrap();
    let output = schema_check(&check, &[broken_file]);
    assert!(!output.status.success(), "{}", report(&output));
    assert!(
        report(&output).contains("is not assignable to type '{ h: number"),
        "{}",
        report(&output)
    );
}

fn schema_check(dir: &Path, files: &[PathBuf]) -> std::process::Output {
    assert!(
        dir.join("node_modules/@grafana/schema").exists(),
        "run `npm ci` in {} first (.ci/run does)",
        dir.display()
    );
    Command::new("node")
        .arg("check.mjs")
        .args(files)
        .current_dir(dir)
        .output()
        .expect("node is installed")
}

fn report(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn promtool_accepts_the_rules_and_their_unit_tests_pass() {
    let dir = grafana_dir().join("prometheus");
    let check = Command::new("promtool")
        .args(["check", "rules", "rules.yml"])
        .current_dir(&dir)
        .output()
        .expect("promtool is installed (Debian package prometheus; see .ci/run)");
    assert!(check.status.success(), "{}", report(&check));
    let tests = Command::new("promtool")
        .args(["test", "rules", "rules_test.yml"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(tests.status.success(), "{}", report(&tests));
    assert!(report(&tests).contains("SUCCESS"), "{}", report(&tests));
}

/// A Prometheus server of its own, on a free loopback port, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(target: &str) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 rule_files:\n  - {rules}\n\
                 scrape_configs:\n  - job_name: tollgate\n    static_configs:\n      - targets: ['{target}']\n",
                rules = grafana_dir().join("prometheus/rules.yml").display(),
            ),
        )
        .unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed (Debian package prometheus; see .ci/run)");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    async fn query(&self, http: &reqwest::Client, expr: &str) -> Vec<Value> {
        let body: Value = http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(body["status"], "success", "{expr}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The query of every rule Prometheus loaded.
    async fn rule_queries(&self, http: &reqwest::Client) -> Vec<(String, String)> {
        let body: Value = http
            .get(format!("{}/api/v1/rules", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap().clone())
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_owned(),
                    r["query"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Grafana's variables as a panel would see them: one channel, a 30 s rate window, and
/// a one-hour dashboard range.
fn substitute_grafana_variables(expr: &str) -> String {
    expr.replace("$channel", "sms_code")
        .replace("$__rate_interval", "30s")
        .replace("$__range", "1h")
}

/// The left-hand side of an alert rule's top-level comparison (`A > 0.05` → `A`), or
/// the whole expression if there is none: the rule's metrics and labels exist when the
/// left-hand side returns series, whether or not the threshold is crossed.
fn left_of_comparison(expr: &str) -> &str {
    let bytes = expr.as_bytes();
    let (mut depth, mut quoted) = (0i32, false);
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            _ if quoted => {}
            b'(' | b'{' | b'[' => depth += 1,
            b')' | b'}' | b']' => depth -= 1,
            b'<' | b'>' if depth == 0 => return expr[..i].trim(),
            b'=' | b'!' if depth == 0 && bytes.get(i + 1) == Some(&b'=') => {
                return expr[..i].trim()
            }
            _ => {}
        }
    }
    expr.trim()
}

#[test]
fn the_left_of_a_comparison_is_split_at_the_top_level_only() {
    assert_eq!(left_of_comparison(r#"up{job="a"} == 0"#), r#"up{job="a"}"#);
    assert_eq!(
        left_of_comparison(r#"sum(rate(x{o!~"a|b"}[5m])) / sum(y) > 0.05"#),
        r#"sum(rate(x{o!~"a|b"}[5m])) / sum(y)"#
    );
    assert_eq!(left_of_comparison("max(x) < 7 * 86400"), "max(x)");
    assert_eq!(left_of_comparison("sum(x)"), "sum(x)");
}

/// What the alerts feature records, for the two metrics read from its tables. Before
/// its migration exists, the tables are stood in for here (the test's own database
/// only: tollgate never creates them), with the columns the metrics read.
async fn seed_alert_tables_if_absent(app: &TestApp) {
    let pool = app.db.db.pool();
    if sqlx::query("SELECT COUNT(*) FROM alert_states")
        .execute(pool)
        .await
        .is_ok()
    {
        return;
    }
    for statement in [
        "CREATE TABLE alert_states (rule TEXT NOT NULL, channel TEXT NOT NULL, state TEXT NOT NULL)",
        "CREATE TABLE notification_attempts (notifier TEXT NOT NULL, outcome TEXT NOT NULL)",
        "INSERT INTO alert_states (rule, channel, state) VALUES ('quota-low', 'sms_code', 'firing'), ('quota-low', 'voice_notice', 'ok')",
        "INSERT INTO notification_attempts (notifier, outcome) VALUES ('repurchase-hook', 'failed'), ('repurchase-hook', 'failed'), ('ops-log', 'delivered')",
    ] {
        sqlx::query(statement).execute(pool).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_prometheus_finds_data_for_every_panel_and_rule() {
    // Arrange: tollgate with traffic of every kind, a package that expires, an alert
    // rule with a notifier that cannot deliver (so that a rule fires and an attempt
    // fails), sms_code's count read from the sandbox's Market API (so that the
    // drift panel and rule have a run to show), and a route from sms_code to a backup
    // channel with a vendor of its own (so that the route panels have a failover).
    let marketplace = sandbox::spawn(
        tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        SandboxConfig {
            appcodes: vec![SandboxAccount {
                appcode: Secret::new("dashboards-appcode"),
                quota: 990,
                product_code: Some("cmapi00037415".into()),
            }],
            latency: Duration::ZERO,
            ..SandboxConfig::default()
        },
    )
    .await;
    let backup_vendor = StandInVendor::start().await;
    let app = spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            extra_toml: format!(
                r#"
                [[alert_rules]]
                name = "quota-low"
                channels = ["*"]
                remaining_units_below = 100000
                severity = "warning"
                notify = ["repurchase-hook"]

                [[notifiers]]
                name = "repurchase-hook"
                type = "webhook"
                url = "http://127.0.0.1:9/unreachable"

                [marketplace]
                access_key_id_env = "TEST_MARKET_KEY_ID"
                access_key_secret_env = "TEST_MARKET_KEY_SECRET"
                endpoint = "{}"

                [[channels]]
                name = "backup_sms"
                kind = "sms_code"
                url = "{}"
                method = "POST"
                signature = "【卡池】"

                [[templates]]
                name = "login_code"
                channel = "backup_sms"
                body = "【卡池】验证码#code#，5分钟内有效"

                [[routes]]
                name = "otp"
                channels = ["sms_code", "backup_sms"]
                "#,
                marketplace.url(""),
                backup_vendor.url("/chuangxin/dxjk")
            ),
            // A priority reserve, so that the reserve panel has a line to draw.
            sms_code_keys: "product_code = \"cmapi00037415\"\nreserve_critical = \"10%\"".into(),
            ..AppOptions::default()
        },
    )
    .await;
    add_expiring_package(&app, "sms_code", 1000, "45.00").await;
    app.add_package("voice_notice", 10, "1.00").await;
    send_mixed_traffic(&app).await;
    // sms_code's vendor fails once: the route carries the code through backup_sms.
    app.add_package("backup_sms", 10, "2.00").await;
    app.vendor
        .answer_with(Reply::gateway_error(500, "Internal Error"));
    let routed = app
        .send_json(&json!({
            "channel": "otp", "to": MOBILE, "template": "login_code",
            "params": { "code": "482913" }
        }))
        .await;
    assert_eq!(routed.status(), 200, "the route failed over");
    app.vendor.answer_with(Reply::success());
    let synced = app
        .marketplace
        .as_ref()
        .expect("[marketplace] is configured")
        .try_run_once(SyncScope::Every)
        .await;
    assert!(synced.failures.is_empty(), "{:?}", synced.failures);
    seed_alert_tables_if_absent(&app).await;
    let prometheus = Prometheus::start(&app.addr.to_string());
    let http = reqwest::Client::new();

    let mut queries: Vec<(String, String)> = Vec::new();
    for file in DASHBOARDS {
        for (title, expr) in panel_queries(&dashboard(file)) {
            queries.push((
                format!("{file} / {title}"),
                substitute_grafana_variables(&expr),
            ));
        }
    }
    // The channel variable: label_values(tollgate_quota_remaining_units, channel).
    queries.push((
        "the channel variable".into(),
        "count by (channel) (tollgate_quota_remaining_units)".into(),
    ));
    // Wait (bounded) until Prometheus has loaded the rules and scraped enough samples.
    let mut rules = Vec::new();
    let mut empty = Vec::new();
    for _ in 0..60 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if rules.is_empty() {
            let Ok(loaded) = tokio::time::timeout(Duration::from_secs(5), async {
                match http.get(format!("{}/-/ready", prometheus.url)).send().await {
                    Ok(r) if r.status() == 200 => prometheus.rule_queries(&http).await,
                    _ => Vec::new(),
                }
            })
            .await
            else {
                continue;
            };
            for (name, query) in loaded {
                rules.push((
                    format!("rule {name}"),
                    left_of_comparison(&query).to_owned(),
                ));
            }
            if rules.is_empty() {
                continue;
            }
        }
        empty.clear();
        for (what, expr) in queries.iter().chain(&rules) {
            if prometheus.query(&http, expr).await.is_empty() {
                empty.push(format!("{what}: {expr}"));
            }
        }
        if empty.is_empty() {
            break;
        }
    }

    assert_eq!(
        rules.len(),
        11,
        "Prometheus loaded grafana/prometheus/rules.yml"
    );
    assert!(
        empty.is_empty(),
        "queries without data:\n{}",
        empty.join("\n")
    );
    // And the numbers are tollgate's: 4 units billed on sms_code.
    let billed = prometheus
        .query(
            &http,
            r#"max by (channel) (tollgate_billed_units_total{channel="sms_code"})"#,
        )
        .await;
    assert_eq!(billed[0]["value"][1], "4");
    // And the failover is the one that happened.
    let failovers = prometheus
        .query(
            &http,
            r#"max(tollgate_route_failovers_total{route="otp",from="sms_code",to="backup_sms",reason="upstream_error"})"#,
        )
        .await;
    assert_eq!(failovers[0]["value"][1], "1");
    assert_eq!(backup_vendor.calls(), 1);
}
