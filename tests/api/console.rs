//! The console end to end: the real server, a real headless Chromium on its pages, and
//! the API as the measure of what the pages say. Every page a test visits is written as
//! a screenshot to `<target>/console-screenshots/` for a reviewer to look at.
//!
//! The console reads the ledger's read interface, which the ledger's own tests run on
//! both backends; these run on SQLite.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::Locator;
use reqwest::redirect::Policy;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::app::{spawn_app_with, AppOptions, TestApp, ADMIN_TOKEN, APPCODE, MOBILE, SHOP_TOKEN};
use crate::browser::Browser;
use crate::helpers::{channel, Backend};
use crate::reports::{app_with_a_route, parse_csv, send_through_the_route};

/// A low-quota rule that fires at half of the sms_code channel's pool.
const HALF_LEFT_RULE: &str = r#"
    [[alert_rules]]
    name = "quota-half"
    channels = ["sms_code"]
    remaining_ratio_below = 0.5
    severity = "warning"
"#;

async fn console_app() -> TestApp {
    spawn_app_with(
        Backend::Sqlite,
        AppOptions {
            extra_toml: HALF_LEFT_RULE.to_owned(),
            sms_code_keys: r#"
                package_sizes = [100, 500]
                reserve_critical = "10%"
                repurchase_url = "https://market.aliyun.com/products/57124001/cmapi00037415.html"
            "#
            .to_owned(),
            ..AppOptions::default()
        },
    )
    .await
}

/// Signs the browser in with `token` through the form.
async fn sign_in(browser: &Browser, app: &TestApp, token: &str) {
    browser.goto(&app.url("/console")).await;
    assert_eq!(
        browser.path().await,
        "/console/sign-in",
        "signed out, the console asks for a token"
    );
    browser.find("#token").await.send_keys(token).await.unwrap();
    browser.find("#sign-in").await.click().await.unwrap();
}

/// No page ever shows a token, the AppCode or a full mobile number.
fn assert_shows_no_secret(page: &str) {
    for secret in [ADMIN_TOKEN, SHOP_TOKEN, APPCODE, MOBILE] {
        assert!(!page.contains(secret), "the page shows {secret:?}");
    }
}

async fn quota(app: &TestApp, name: &str) -> Value {
    app.quota(name).await
}

async fn alerts(app: &TestApp) -> Vec<Value> {
    let body: Value = app.get_json("/v1/alerts", ADMIN_TOKEN).await;
    body["alerts"].as_array().unwrap().clone()
}

async fn send_codes(app: &TestApp, count: usize) {
    for _ in 0..count {
        assert_eq!(app.send_login_code().await.status(), 200);
    }
}

/// Makes the half-left rule fire: 10 units, 6 used.
async fn fire_the_low_quota_alert(app: &TestApp) -> Value {
    app.add_package("sms_code", 10, "1.00").await;
    send_codes(app, 6).await;
    app.alerts
        .evaluate_channel(&channel("sms_code"))
        .await
        .unwrap();
    let firing = alerts(app)
        .await
        .into_iter()
        .find(|a| a["rule"] == "quota-half" && a["state"] == "firing")
        .expect("the half-left rule fires");
    firing
}

/// A console session held by a plain HTTP client, as another site's form post or a
/// script would hold a stolen cookie.
struct HttpSession {
    http: reqwest::Client,
    cookie: String,
    /// The CSRF token the session's own pages carry.
    csrf: String,
}

/// Posts the sign-in form with `token` as a browser would (its challenge cookie and
/// CSRF field): the client, which follows no redirect, and the form's answer.
async fn post_sign_in(app: &TestApp, token: &str) -> (reqwest::Client, reqwest::Response) {
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let form = http.get(app.url("/console/sign-in")).send().await.unwrap();
    let challenge = set_cookie(&form, "tollgate_console_sign_in");
    let csrf = hidden_csrf(&form.text().await.unwrap());
    let signed_in = http
        .post(app.url("/console/sign-in"))
        .header("Cookie", &challenge)
        .form(&[("token", token), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    (http, signed_in)
}

impl HttpSession {
    async fn sign_in(app: &TestApp, token: &str) -> HttpSession {
        let (http, signed_in) = post_sign_in(app, token).await;
        assert_eq!(signed_in.status(), 303, "the sign-in form takes the token");
        let cookie = set_cookie(&signed_in, "tollgate_console");
        let page = http
            .get(app.url("/console"))
            .header("Cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let csrf = hidden_csrf(&page.text().await.unwrap());
        HttpSession { http, cookie, csrf }
    }

    async fn post(&self, url: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(url)
            .header("Cookie", &self.cookie)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        self.http
            .get(url)
            .header("Cookie", &self.cookie)
            .send()
            .await
            .unwrap()
    }
}

/// `name=value` of the cookie a response sets.
fn set_cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("the response sets {name}"))
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

/// The value of the page's first hidden `csrf` field.
fn hidden_csrf(page: &str) -> String {
    let start = page
        .find(r#"name="csrf" value=""#)
        .expect("a form with a CSRF token")
        + r#"name="csrf" value=""#.len();
    page[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_channels_page_shows_the_remaining_units_the_api_counts() {
    // Arrange: a package of 100, three codes sent.
    let app = console_app().await;
    app.add_package("sms_code", 100, "45.00").await;
    send_codes(&app, 3).await;
    let browser = Browser::start().await;

    // Act: sign in as the admin.
    browser.goto(&app.url("/console/sign-in")).await;
    browser.screenshot("sign-in").await;
    sign_in(&browser, &app, ADMIN_TOKEN).await;

    // Assert: the card shows what GET /v1/quota says.
    let card = "section[data-channel='sms_code']";
    browser.find(card).await;
    assert_eq!(browser.path().await, "/console");
    let api = quota(&app, "sms_code").await;
    assert_eq!(api["remaining"], 97);
    let shown = browser.find(&format!("{card} .remaining")).await;
    assert_eq!(shown.text().await.unwrap(), "97");
    assert_eq!(
        shown.attr("data-units").await.unwrap().as_deref(),
        Some("97")
    );
    assert!(browser
        .text(&format!("{card} .ratio"))
        .await
        .contains("97%"));
    // What the reserve holds back for critical sends (10% of 100) is the API's figure.
    assert_eq!(api["reserved_for_critical"], 10);
    let held_back = browser.text(&format!("{card} .held-back")).await;
    assert_eq!(
        held_back,
        format!("{} 条 / 10 条", api["reserved_for_critical"]),
        "the held-back figure"
    );
    // The suggestion is the reminders' (3 a day for 30 days, rounded up to a size sold),
    // and the buy link goes to the channel's repurchase_url.
    assert!(browser
        .text(&format!("{card} .suggested"))
        .await
        .contains("100 条"));
    let buy = browser.find(&format!("{card} a.buy")).await;
    assert_eq!(
        buy.attr("href").await.unwrap().as_deref(),
        Some("https://market.aliyun.com/products/57124001/cmapi00037415.html")
    );
    assert!(buy.text().await.unwrap().contains("续费"));
    // A channel without packages says so.
    assert!(browser
        .text("section[data-channel='voice_code']")
        .await
        .contains("尚未登记套餐"));
    assert_eq!(browser.text("#viewer").await, "ops");
    assert_shows_no_secret(&browser.source().await);
    browser.screenshot("channels").await;
    browser.screenshot_phone("channels-phone").await;

    // Signing out ends the session in the browser.
    browser
        .find("form[action='/console/sign-out'] button")
        .await
        .click()
        .await
        .unwrap();
    browser.find("#token").await;
    browser.goto(&app.url("/console")).await;
    assert_eq!(browser.path().await, "/console/sign-in");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_package_registered_through_the_form_changes_the_numbers_once() {
    let app = console_app().await;
    app.add_package("sms_code", 100, "45.00").await;
    send_codes(&app, 2).await;
    let browser = Browser::start().await;
    sign_in(&browser, &app, ADMIN_TOKEN).await;
    browser.find("section[data-channel='sms_code']").await;

    // Act: register 500 units through the form.
    browser
        .find("nav a[href='/console/packages']")
        .await
        .click()
        .await
        .unwrap();
    browser.find("#register").await;
    browser.screenshot("packages").await;
    let register = |order: &'static str| {
        let browser = &browser;
        async move {
            browser
                .find("select[name=channel]")
                .await
                .select_by_value("sms_code")
                .await
                .unwrap();
            browser
                .find("input[name=units]")
                .await
                .send_keys("500")
                .await
                .unwrap();
            browser
                .find("input[name=price]")
                .await
                .send_keys("20.00")
                .await
                .unwrap();
            browser
                .find("input[name=order_id]")
                .await
                .send_keys(order)
                .await
                .unwrap();
            browser
                .find("#register-package")
                .await
                .click()
                .await
                .unwrap();
            browser.text("#flash").await
        }
    };
    let flash = register("2026120100001").await;

    // Assert: registered, listed, and counted by the API and the channels page.
    assert!(flash.contains("已登记套餐"), "{flash}");
    assert_eq!(quota(&app, "sms_code").await["remaining"], 598);
    let row = browser.find("#packages tr[data-channel='sms_code']").await;
    assert!(row.text().await.unwrap().contains("2026120100001"));
    assert_eq!(
        row.find(Locator::Css(".units"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "500"
    );
    assert_eq!(
        row.find(Locator::Css(".price"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "¥20.00"
    );
    browser.screenshot("packages-registered").await;
    browser.goto(&app.url("/console")).await;
    assert_eq!(
        browser
            .text("section[data-channel='sms_code'] .remaining")
            .await,
        "598"
    );

    // The same order id again changes nothing, as in the API.
    browser.goto(&app.url("/console/packages")).await;
    let flash = register("2026120100001").await;
    assert!(flash.contains("未重复登记"), "{flash}");
    assert_eq!(quota(&app, "sms_code").await["remaining"], 598);

    // A price that is not an amount is refused with the API's reason, and nothing is added.
    browser.goto(&app.url("/console/packages")).await;
    browser
        .find("select[name=channel]")
        .await
        .select_by_value("sms_code")
        .await
        .unwrap();
    browser
        .find("input[name=units]")
        .await
        .send_keys("10")
        .await
        .unwrap();
    browser
        .find("input[name=price]")
        .await
        .send_keys("cheap")
        .await
        .unwrap();
    browser
        .find("#register-package")
        .await
        .click()
        .await
        .unwrap();
    let flash = browser.text("#flash").await;
    assert!(
        flash.contains("未登记") && flash.contains("price"),
        "{flash}"
    );
    assert_eq!(quota(&app, "sms_code").await["remaining"], 598);
    assert_eq!(
        browser
            .find("input[name=units]")
            .await
            .prop("value")
            .await
            .unwrap()
            .as_deref(),
        Some("10"),
        "the form keeps what was typed"
    );
    browser.screenshot("packages-refused").await;
    assert_shows_no_secret(&browser.source().await);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_acknowledges_a_firing_alert_on_the_alerts_page() {
    let app = console_app().await;
    let alert = fire_the_low_quota_alert(&app).await;
    let id = alert["id"].as_str().unwrap().to_owned();
    let browser = Browser::start().await;
    sign_in(&browser, &app, ADMIN_TOKEN).await;

    browser
        .find("nav a[href='/console/alerts']")
        .await
        .click()
        .await
        .unwrap();
    let card = format!("section[data-alert='{id}']");
    let shown = browser.text(&card).await;
    assert!(
        shown.contains("quota-half") && shown.contains("sms_code"),
        "{shown}"
    );
    assert!(shown.contains("未确认"), "{shown}");
    browser.screenshot("alerts").await;

    // Act: acknowledge it.
    browser
        .find(&format!("{card} button.ack"))
        .await
        .click()
        .await
        .unwrap();

    // Assert: the page and the API say who acknowledged it, and the button is gone.
    assert!(browser.text("#flash").await.contains("已确认"));
    let acknowledged = browser.text(&format!("{card} .acknowledged")).await;
    assert!(acknowledged.starts_with("ops"), "{acknowledged}");
    assert!(!browser.exists(&format!("{card} button.ack")).await);
    let api = alerts(&app)
        .await
        .into_iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap();
    assert_eq!(api["acknowledged_by"], "ops");
    assert_eq!(api["state"], "firing");
    browser.screenshot("alerts-acknowledged").await;
    assert_shows_no_secret(&browser.source().await);
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_monthly_report_and_the_burn_chart_show_this_months_use_and_download_as_csv() {
    let app = console_app().await;
    app.add_package("sms_code", 100, "45.00").await;
    send_codes(&app, 3).await;
    let browser = Browser::start().await;
    sign_in(&browser, &app, ADMIN_TOKEN).await;

    browser
        .find("nav a[href='/console/reports']")
        .await
        .click()
        .await
        .unwrap();
    let this_month = browser.find("section.report").await;
    let month = this_month.attr("data-month").await.unwrap().unwrap();
    let row = browser
        .text(&format!(
            "section[data-month='{month}'] table.by-channel tr[data-channel='sms_code']"
        ))
        .await;
    // 3 sends at ¥0.45 each.
    assert!(row.contains("¥1.35"), "{row}");
    assert!(browser
        .text(&format!("section[data-month='{month}'] table.by-client"))
        .await
        .contains("shop-backend"));
    browser.screenshot("reports").await;

    // Act: download the CSV the page links to, with the browser's session.
    let href = browser
        .find(&format!("section[data-month='{month}'] a.download"))
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    let csv = reqwest::Client::new()
        .get(app.url(&href))
        .header("Cookie", browser.session_cookie().await)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .contains(&format!("tollgate-report-{month}.csv")));
    let csv = csv.text().await.unwrap();

    // Assert: it parses, with the API's header, and says what the page said.
    let rows = parse_csv(&csv);
    assert_eq!(rows[0], tollgate::report::CSV_HEADER);
    let usage = rows
        .iter()
        .find(|r| r[0] == "usage" && r[2] == "sms_code")
        .expect("a usage row for sms_code");
    assert_eq!(
        (&*usage[1], &*usage[3], &*usage[8], &*usage[9]),
        (month.as_str(), "shop-backend", "3", "1.35")
    );
    let total = rows.iter().find(|r| r[0] == "total").unwrap();
    assert_eq!(total[9], "1.35");
    assert!(rows.iter().any(|r| r[0] == "purchase" && r[8] == "100"));

    // The JSON download is the report's JSON, as the API gives it.
    let json: Value = reqwest::Client::new()
        .get(app.url(&format!(
            "/console/reports/download?month={month}&format=json"
        )))
        .header("Cookie", browser.session_cookie().await)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(json["month"], month.as_str());
    assert_eq!(json["total"]["total_cost"], "1.35");

    // The burn chart counts the same three units today.
    browser
        .find("nav a[href='/console/usage']")
        .await
        .click()
        .await
        .unwrap();
    assert_eq!(browser.text("#total-units").await, "3");
    assert_eq!(browser.text("#total-cost").await, "¥1.35");
    let bars = browser
        .client
        .find_all(Locator::Css("#units-chart svg rect.bar-units"))
        .await
        .unwrap();
    assert_eq!(bars.len(), 1, "one day with usage, one bar");
    browser.screenshot("usage").await;
    browser.screenshot_phone("usage-phone").await;
    assert_shows_no_secret(&browser.source().await);
    browser.close().await;
}

#[tokio::test]
async fn the_reports_page_splits_a_routes_cost_by_the_channel_that_carried_it() {
    // Arrange: one code sent to sms_code itself, five through the route `otp`.
    let (app, backup) = app_with_a_route(Backend::Sqlite).await;
    send_through_the_route(&app, &backup).await;
    let admin = HttpSession::sign_in(&app, ADMIN_TOKEN).await;

    // Act
    let page = admin
        .get(&app.url("/console/reports"))
        .await
        .text()
        .await
        .unwrap();

    // Assert: this month's card has the route's rows, each channel with what it cost.
    let this_month = page.split("section class=\"card report\"").nth(1).unwrap();
    let table = this_month
        .split("<table class=\"by-route\">")
        .nth(1)
        .expect("a by-route table")
        .split("</table>")
        .next()
        .unwrap();
    assert!(this_month.contains("按路由与渠道"), "{this_month}");
    for (route, channel, sends, cost) in [
        ("otp", "backup_sms", 2, "¥0.10"),
        ("otp", "sms_code", 3, "¥0.30"),
        ("", "sms_code", 1, "¥0.10"),
    ] {
        let row = table
            .split(&format!(
                "<tr data-route=\"{route}\" data-channel=\"{channel}\">"
            ))
            .nth(1)
            .unwrap_or_else(|| panic!("a row for {route:?} on {channel}: {table}"))
            .split("</tr>")
            .next()
            .unwrap();
        assert!(
            row.contains(&format!("<td class=\"num\">{sends}</td>")) && row.contains(cost),
            "{route:?} on {channel}: {row}"
        );
    }
    assert_shows_no_secret(&page);
}

#[tokio::test]
async fn the_session_cookie_is_http_only_strict_scoped_to_the_console_and_expires() {
    let app = console_app().await;

    let (_, signed_in) = post_sign_in(&app, ADMIN_TOKEN).await;

    assert_eq!(signed_in.status(), 303);
    let header = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("tollgate_console="))
        .expect("the sign-in sets the session cookie");
    let attributes: Vec<&str> = header.split(';').skip(1).map(str::trim).collect();
    assert!(attributes.contains(&"HttpOnly"), "{header}");
    assert!(attributes.contains(&"SameSite=Strict"), "{header}");
    assert!(attributes.contains(&"Path=/console"), "{header}");
    let max_age: i64 = attributes
        .iter()
        .find_map(|a| a.strip_prefix("Max-Age="))
        .unwrap_or_else(|| panic!("a Max-Age: {header}"))
        .parse()
        .unwrap();
    assert!(max_age > 0, "{header}");
    // Plain HTTP without a proxy that says HTTPS: a Secure cookie would not come back.
    assert!(!attributes.contains(&"Secure"), "{header}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_is_refused_and_opens_nothing() {
    let app = console_app().await;
    let browser = Browser::start().await;

    sign_in(&browser, &app, "not-a-token-of-anyone").await;

    let refusal = browser.text("#sign-in-error").await;
    assert!(refusal.contains("令牌不正确"), "{refusal}");
    assert_eq!(browser.path().await, "/console/sign-in");
    assert!(browser
        .client
        .get_named_cookie("tollgate_console")
        .await
        .is_err());
    browser.screenshot("sign-in-refused").await;
    browser.goto(&app.url("/console/alerts")).await;
    assert_eq!(browser.path().await, "/console/sign-in");
    browser.close().await;

    // Without a session, a page is a redirect to the form, and a post changes nothing.
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let page = http.get(app.url("/console")).send().await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()["location"], "/console/sign-in");
    let forged = http
        .post(app.url("/console/packages"))
        .header("Cookie", "tollgate_console=v1.b3Bz.9999999999.AAAA.AAAA")
        .form(&[("channel", "sms_code"), ("units", "1000"), ("price", "1")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 303, "a forged cookie is no session");
    assert_eq!(quota(&app, "sms_code").await["purchased"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_is_not_an_admin_sees_its_own_usage_and_no_admin_form() {
    // Arrange: a firing alert, and sends by both clients.
    let app = console_app().await;
    let alert = fire_the_low_quota_alert(&app).await;
    let id = alert["id"].as_str().unwrap().to_owned();
    let admin_send = app.post_json_as("/v1/messages", ADMIN_TOKEN, &json!({"channel": "sms_code", "to": MOBILE, "template": "login_code", "params": {"code": "1234"}}))
        .await;
    assert_eq!(admin_send.status(), 200);
    let browser = Browser::start().await;

    // Act: sign in as the shop.
    sign_in(&browser, &app, SHOP_TOKEN).await;

    // Assert: the quota, but no package list and no acknowledgement button.
    assert_eq!(
        browser
            .text("section[data-channel='sms_code'] .remaining")
            .await,
        quota(&app, "sms_code").await["remaining"].to_string()
    );
    assert!(!browser.exists("nav a[href='/console/packages']").await);
    browser.goto(&app.url("/console/alerts")).await;
    browser.find(&format!("section[data-alert='{id}']")).await;
    assert!(
        !browser.exists("button.ack").await,
        "no acknowledgement form"
    );
    assert!(!browser.exists("form[action*='/ack']").await);
    browser.screenshot("alerts-client").await;
    browser.goto(&app.url("/console/packages")).await;
    assert!(browser.source().await.contains("只有管理员"));
    browser.screenshot("packages-forbidden").await;

    // Its report and chart are its own: 6 sends of its own, none of the admin's.
    browser.goto(&app.url("/console/reports")).await;
    let clients = browser.text("section.report table.by-client").await;
    assert!(
        clients.contains("shop-backend") && !clients.contains("ops"),
        "{clients}"
    );
    assert!(!browser.source().await.contains("本月购买"), "no purchases");
    browser.screenshot("reports-client").await;
    browser.goto(&app.url("/console/usage")).await;
    assert_eq!(browser.text("#total-units").await, "6");
    assert_shows_no_secret(&browser.source().await);
    browser.close().await;

    // The admin posts are 403 even with the session's own CSRF token, and change nothing.
    let shop = HttpSession::sign_in(&app, SHOP_TOKEN).await;
    let before = quota(&app, "sms_code").await;
    let register = shop
        .post(
            &app.url("/console/packages"),
            &[
                ("csrf", &shop.csrf),
                ("channel", "sms_code"),
                ("units", "1000"),
                ("price", "1"),
            ],
        )
        .await;
    assert_eq!(register.status(), 403);
    let ack = shop
        .post(
            &app.url(&format!("/console/alerts/{id}/ack")),
            &[("csrf", &shop.csrf)],
        )
        .await;
    assert_eq!(ack.status(), 403);
    assert_eq!(shop.get(&app.url("/console/packages")).await.status(), 403);
    assert_eq!(
        quota(&app, "sms_code").await["purchased"],
        before["purchased"]
    );
    let after = alerts(&app)
        .await
        .into_iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap();
    assert_eq!(after["acknowledged_by"], Value::Null);
    // Its downloads are its own report.
    let month = tollgate::report::Month::containing(app.ledger.now(), chrono_tz::Asia::Shanghai);
    let csv = shop
        .get(&app.url(&format!(
            "/console/reports/download?month={month}&format=csv"
        )))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        csv.contains(",shop-backend,") && !csv.contains(",ops,"),
        "{csv}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cross_site_post_without_the_csrf_token_changes_nothing() {
    let app = console_app().await;
    let alert = fire_the_low_quota_alert(&app).await;
    let id = alert["id"].as_str().unwrap().to_owned();
    // The admin is signed in; another site's page makes the browser post with the
    // session cookie, but cannot know the form's token.
    let admin = HttpSession::sign_in(&app, ADMIN_TOKEN).await;
    let before = quota(&app, "sms_code").await;
    let package = [
        ("channel", "sms_code"),
        ("units", "1000"),
        ("price", "1.00"),
    ];

    let without = admin.post(&app.url("/console/packages"), &package).await;
    let mut with_wrong = package.to_vec();
    with_wrong.push(("csrf", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"));
    let wrong = admin.post(&app.url("/console/packages"), &with_wrong).await;
    let ack = admin
        .post(&app.url(&format!("/console/alerts/{id}/ack")), &[])
        .await;
    let sign_out = admin.post(&app.url("/console/sign-out"), &[]).await;

    for response in [without, wrong, ack, sign_out] {
        assert_eq!(response.status(), 403, "{}", response.url());
    }
    assert_eq!(quota(&app, "sms_code").await, before);
    let after = alerts(&app)
        .await
        .into_iter()
        .find(|a| a["id"] == id.as_str())
        .unwrap();
    assert_eq!(after["acknowledged_by"], Value::Null);
    assert_eq!(
        admin.get(&app.url("/console")).await.status(),
        200,
        "still signed in"
    );

    // The same post with the session's token goes through: the token is the difference.
    let mut with_token = package.to_vec();
    with_token.push(("csrf", admin.csrf.as_str()));
    let registered = admin.post(&app.url("/console/packages"), &with_token).await;
    assert_eq!(registered.status(), 303);
    assert_eq!(
        quota(&app, "sms_code").await["purchased"],
        before["purchased"].as_i64().unwrap() + 1000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_prints_the_console_address_and_its_token_signs_in() {
    // `tollgate serve` with no configuration, in an empty folder.
    let dir = tempfile::tempdir().unwrap();
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env_remove("TOLLGATE_CONFIG")
        .env_remove("TOLLGATE_TOKEN")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stdout.take().unwrap()).lines();
    let mut welcome = String::new();
    let console = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            welcome.push_str(&line);
            welcome.push('\n');
            if let Some(url) = line.split_whitespace().find(|w| w.ends_with("/console")) {
                if line.contains("Console") {
                    return url.to_owned();
                }
            }
        }
        panic!("the welcome text names no console: {welcome}");
    })
    .await
    .expect("the sandbox starts within a minute");
    let next = lines.next_line().await.unwrap().unwrap();
    assert!(
        next.contains("sign in with the token \"sandbox\""),
        "{next}"
    );

    // The token it names signs in, as an admin.
    let http = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap();
    let form = http.get(format!("{console}/sign-in")).send().await.unwrap();
    let challenge = set_cookie(&form, "tollgate_console_sign_in");
    let csrf = hidden_csrf(&form.text().await.unwrap());
    let signed_in = http
        .post(format!("{console}/sign-in"))
        .header("Cookie", challenge)
        .form(&[("token", "sandbox"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed_in.status(), 303);
    let page = http
        .get(&console)
        .header("Cookie", set_cookie(&signed_in, "tollgate_console"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("data-channel=\"sms_code\"") && page.contains("管理员"));
    serve.kill().await.unwrap();
}
