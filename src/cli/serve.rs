//! `tollgate serve` and `tollgate demo`, with the built-in sandbox setup.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use rand::Rng;

use crate::app::Application;
use crate::config::{self, ConfigSource, Settings};
use crate::domain::{PackageUnits, ProductCode, Yuan};
use crate::ledger::{Ledger, NewPackage};
use crate::marketplace::sandbox as market;
use crate::marketplace::AccessKey;
use crate::secret::Secret;
use crate::upstream::sandbox::{self, SandboxAccount, SandboxConfig, SandboxHandle};

/// The AppCode the in-process sandbox vendor accepts. Not a secret: it opens nothing
/// but the simulation.
pub const SANDBOX_APPCODE: &str = "sandbox-appcode";
/// The AppCode of the sandbox's backup vendor (`sms_backup`, template format). Its
/// package is an account of its own in the simulation, as a second vendor's package is
/// at the marketplace. Not a secret either.
pub const SANDBOX_BACKUP_APPCODE: &str = "sandbox-backup-appcode";
/// The variable `sandbox.toml` names for the backup vendor's AppCode.
const BACKUP_APPCODE_ENV: &str = "TOLLGATE_SANDBOX_BACKUP_APPCODE";
/// The bearer token of the built-in sandbox client, unless TOLLGATE_TOKEN sets another.
pub const SANDBOX_TOKEN: &str = "sandbox";
/// Units of the free-trial package registered per channel in the sandbox.
const TRIAL_UNITS: i64 = 100;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Listen on this address instead of `[server] listen`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Listen on this address instead of 127.0.0.1:8080.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<std::net::SocketAddr>,
    /// Synthetic sends per second.
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Share of vendor calls the sandbox fails (HTTP 500), to give dashboards errors.
    #[arg(long, default_value_t = 0.02)]
    pub failure_rate: f64,
}

/// The built-in setup: an in-process vendor simulation, channels pointed at it, and the
/// environment's secrets defaulted to the sandbox's.
struct Sandbox {
    handle: SandboxHandle,
}

impl Sandbox {
    async fn start(settings: &mut Settings, config: SandboxConfig) -> anyhow::Result<Sandbox> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let handle = sandbox::spawn(listener, config).await;
        let base = format!("http://{}", handle.addr());
        for channel in &mut settings.channels {
            channel.url = channel.url.replace("http://sandbox.invalid", &base);
        }
        Ok(Sandbox { handle })
    }

    /// The simulation behind the built-in setup: the vendor's usual latency, and
    /// `failure_rate` of its calls failing. The backup vendor's account starts empty;
    /// [`Sandbox::match_backup_vendor_to_ledger`] fills it.
    fn config(failure_rate: f64) -> SandboxConfig {
        let mut config = SandboxConfig {
            failure_rate,
            latency: SandboxConfig::default().latency,
            ..SandboxConfig::one_account(Secret::new(SANDBOX_APPCODE), 1_000_000)
        };
        config.appcodes.push(SandboxAccount {
            appcode: Secret::new(SANDBOX_BACKUP_APPCODE),
            quota: 0,
            product_code: None,
        });
        config
    }

    /// Gives the backup vendor's account what the ledger has left on the channels that
    /// use it. That vendor reports its own count with every answer (`remaining_field`),
    /// which tollgate compares with the ledger (`vendor_drift` and the built-in
    /// `ledger.drift` alert). The simulation starts afresh on every start while the
    /// ledger persists in ./tollgate.db, so without this a newcomer's first send to the
    /// backup would show a drift of the simulation's making.
    async fn match_backup_vendor_to_ledger(
        &self,
        ledger: &Ledger,
        settings: &Settings,
    ) -> anyhow::Result<()> {
        let backups = settings
            .channels
            .iter()
            .filter(|channel| channel.appcode_env == BACKUP_APPCODE_ENV);
        for channel in backups {
            let remaining = ledger.quota(&channel.name).await?.remaining;
            self.handle.add_quota(
                SANDBOX_BACKUP_APPCODE,
                u64::try_from(remaining).unwrap_or(0),
            );
        }
        Ok(())
    }

    /// Environment lookups with the sandbox's defaults for what is not set.
    fn env(key: &str) -> Option<String> {
        std::env::var(key)
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| match key {
                "TOLLGATE_SANDBOX_APPCODE" => Some(SANDBOX_APPCODE.to_owned()),
                BACKUP_APPCODE_ENV => Some(SANDBOX_BACKUP_APPCODE.to_owned()),
                "TOLLGATE_TOKEN" => Some(SANDBOX_TOKEN.to_owned()),
                _ => None,
            })
    }

    /// Registers the free-trial package of each channel once (idempotent by order id).
    async fn register_trials(ledger: &Ledger, settings: &Settings) -> anyhow::Result<()> {
        for channel in &settings.channels {
            let trial = NewPackage::new(
                channel.name.clone(),
                PackageUnits::new(TRIAL_UNITS)?,
                Yuan::ZERO,
                chrono::Utc::now(),
                None,
                Some(format!("sandbox-trial-{}", channel.name)),
                Some("免费体验套餐 (sandbox)".to_owned()),
            )?;
            ledger.register_package(trial).await?;
        }
        Ok(())
    }
}

pub async fn serve(source: &ConfigSource, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let env = |key: &str| std::env::var(key).ok();
    let mut settings = config::load(source, &env)?;
    if let Some(listen) = args.listen {
        settings.server.listen = listen;
    }
    if !source.is_sandbox() {
        let app = Application::build(settings, &env).await?;
        app.warn_about_channels_without_packages().await?;
        tracing::info!(address = %app.local_addr(), "tollgate is listening");
        app.run_until_stopped().await?;
        return Ok(ExitCode::SUCCESS);
    }
    let sandbox = Sandbox::start(&mut settings, Sandbox::config(0.0)).await?;
    let app = Application::build(settings.clone(), &Sandbox::env).await?;
    Sandbox::register_trials(app.ledger(), &settings).await?;
    sandbox
        .match_backup_vendor_to_ledger(app.ledger(), &settings)
        .await?;
    print_welcome(&app, &sandbox)?;
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn demo(source: &ConfigSource, args: DemoArgs) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        source.is_sandbox(),
        "`tollgate demo` runs on the built-in sandbox setup; run it without --config, TOLLGATE_CONFIG or ./tollgate.toml"
    );
    anyhow::ensure!(
        args.rate > 0.0 && args.rate <= 1000.0,
        "--rate must be between 0 and 1000 sends per second"
    );
    let env = |key: &str| std::env::var(key).ok();
    let mut settings = config::load(source, &env)?;
    if let Some(listen) = args.listen {
        settings.server.listen = listen;
    }
    let sandbox = Sandbox::start(&mut settings, Sandbox::config(args.failure_rate)).await?;
    let app = Application::build(settings.clone(), &Sandbox::env).await?;
    Sandbox::register_trials(app.ledger(), &settings).await?;
    // Paid packages, so that the demo has costs to show and runs for a while.
    for channel in &settings.channels {
        let package = NewPackage::new(
            channel.name.clone(),
            PackageUnits::new(10_000)?,
            Yuan::parse("450.00")?,
            chrono::Utc::now(),
            Some(chrono::Utc::now() + chrono::Duration::days(365)),
            Some(format!("sandbox-demo-{}", channel.name)),
            Some("demo package".to_owned()),
        )?;
        app.ledger().register_package(package).await?;
    }
    sandbox
        .match_backup_vendor_to_ledger(app.ledger(), &settings)
        .await?;
    print_welcome(&app, &sandbox)?;
    let base = format!("http://{}", app.local_addr());
    let traffic = tokio::spawn(synthetic_traffic(base, args.rate));
    let result = app.run_until_stopped().await;
    traffic.abort();
    result?;
    Ok(ExitCode::SUCCESS)
}

/// Steady sends over the real API: a mix of channels, codes through the route `otp`
/// (which fails over to the template-format `sms_backup` when the vendor of `sms_code`
/// fails), and now and then a request tollgate must refuse, so that every panel has data.
async fn synthetic_traffic(base: String, rate: f64) {
    let http = reqwest::Client::new();
    let token = Sandbox::env("TOLLGATE_TOKEN").unwrap_or_default();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    loop {
        ticker.tick().await;
        let body = {
            let mut rng = rand::thread_rng();
            let mobile = format!(
                "13{}{:08}",
                rng.gen_range(3..10),
                rng.gen_range(0..100_000_000u32)
            );
            let code = format!("{:06}", rng.gen_range(0..1_000_000));
            match rng.gen_range(0..12) {
                0..=1 => {
                    serde_json::json!({"channel": "sms_code", "to": mobile, "template": "login_code", "params": {"code": code}})
                }
                2..=4 => {
                    serde_json::json!({"channel": "otp", "to": mobile, "template": "login_code", "params": {"code": code}})
                }
                5 => {
                    serde_json::json!({"channel": "sms_backup", "to": mobile, "template": "login_code", "params": {"code": code}})
                }
                6..=7 => {
                    serde_json::json!({"channel": "sms_notice", "to": mobile, "template": "order_shipped", "params": {"name": "王先生", "order": format!("{}", rng.gen_range(10_000..99_999))}})
                }
                8 => {
                    serde_json::json!({"channel": "voice_code", "to": mobile, "content": format!("{:04}", rng.gen_range(0..10_000))})
                }
                9 => {
                    serde_json::json!({"channel": "voice_notice", "to": mobile, "content": "您好，您的快递已送达小区门口，请前来签收。"})
                }
                10 => {
                    serde_json::json!({"channel": "sms_marketing", "to": mobile, "template": "anniversary_sale", "params": {"shop": "卡池商城"}})
                }
                _ => {
                    serde_json::json!({"channel": "sms_code", "to": "12345", "template": "login_code", "params": {"code": "1"}})
                }
            }
        };
        let http = http.clone();
        let url = format!("{base}/v1/messages");
        let token = token.clone();
        tokio::spawn(async move {
            let _ = http.post(url).bearer_auth(token).json(&body).send().await;
        });
    }
}

fn print_welcome(app: &Application, sandbox: &Sandbox) -> anyhow::Result<()> {
    let addr = app.local_addr();
    let token = Sandbox::env("TOLLGATE_TOKEN").unwrap_or_default();
    say!(
        "tollgate is running on http://{addr} with the built-in sandbox (SQLite ./tollgate.db,\n\
         a simulated vendor on {vendor}, a free-trial package of {TRIAL_UNITS} units per channel).\n\n\
         Send a first message:\n\n  \
         curl -s http://{addr}/v1/messages -H 'Authorization: Bearer {token}' \\\n    \
         -H 'Content-Type: application/json' \\\n    \
         -d '{{\"channel\":\"sms_code\",\"to\":\"13800138000\",\"template\":\"login_code\",\"params\":{{\"code\":\"123456\"}}}}'\n\n\
         or: tollgate send --channel sms_code --to 13800138000 --template login_code --param code=123456\n\
         Through the route otp (sms_code, then the template-format vendor sms_backup when\n\
         sms_code has no units left or its vendor fails): the same request with \"channel\":\"otp\".\n\
         Quota: curl -s http://{addr}/v1/quota -H 'Authorization: Bearer {token}'\n\n\
         Console (balances, alerts, packages, reports): open http://{addr}/console\n\
         and sign in with the token {token:?}.\n",
        vendor = sandbox.handle.addr(),
    );
    Ok(())
}

/// Used by `tollgate send` to find the server and token of the built-in setup.
pub fn default_token(source: &ConfigSource) -> Option<String> {
    if source.is_sandbox() {
        Sandbox::env("TOLLGATE_TOKEN")
    } else {
        std::env::var("TOLLGATE_TOKEN")
            .ok()
            .filter(|t| !t.is_empty())
    }
}

/// The URL of the API of a server started with `settings`.
pub fn server_url(settings: &Settings) -> String {
    let listen = settings.server.listen;
    let host = if listen.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        listen.ip().to_string()
    };
    format!("http://{host}:{}", listen.port())
}

pub async fn sandbox_upstream(args: SandboxArgs) -> anyhow::Result<ExitCode> {
    let from_env = |variable: &str, default: &str| {
        std::env::var(variable)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| default.to_owned())
    };
    let appcode = from_env(&args.appcode_env, SANDBOX_APPCODE);
    let product_code = ProductCode::parse(&args.product_code)?;
    let market_key = AccessKey::new(
        from_env(&args.access_key_id_env, market::SANDBOX_ACCESS_KEY_ID),
        from_env(
            &args.access_key_secret_env,
            market::SANDBOX_ACCESS_KEY_SECRET,
        ),
    );
    let config = SandboxConfig {
        appcodes: vec![SandboxAccount {
            appcode: Secret::new(appcode),
            quota: args.quota,
            product_code: Some(product_code.to_string()),
        }],
        latency: args.latency,
        jitter: args.jitter,
        failure_rate: args.failure_rate,
        reject_rate: args.reject_rate,
        timeout_rate: args.timeout_rate,
        throttle_per_second: args.throttle_per_second,
        market: Some(market_key),
    };
    for (name, rate) in [
        ("failure", config.failure_rate),
        ("reject", config.reject_rate),
        ("timeout", config.timeout_rate),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&rate),
            "--{name}-rate must be between 0 and 1"
        );
    }
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let handle = sandbox::spawn(listener, config).await;
    say!(
        "sandbox vendor listening on http://{} (AppCode from ${}, or {SANDBOX_APPCODE:?} if unset; quota {})",
        handle.addr(),
        args.appcode_env,
        args.quota
    );
    say!(
        "  format = \"template\" (gyytz: mobile, templateId, param) on any path ending in /smsSend, e.g. /sms/smsSend; format = \"kapool\" (content, mobile) on every other path"
    );
    say!(
        "sandbox Market API at http://{}/ (DescribeApiMetering for {product_code}; AccessKey from ${} and ${}, or {:?} / {:?} if unset)",
        handle.addr(),
        args.access_key_id_env,
        args.access_key_secret_env,
        market::SANDBOX_ACCESS_KEY_ID,
        market::SANDBOX_ACCESS_KEY_SECRET,
    );
    let _ = tokio::signal::ctrl_c().await;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct SandboxArgs {
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: String,
    /// The environment variable holding the AppCode the simulation accepts.
    #[arg(long, default_value = "TOLLGATE_SANDBOX_APPCODE")]
    pub appcode_env: String,
    /// Calls the AppCode's package holds.
    #[arg(long, default_value_t = 1_000_000)]
    pub quota: u64,
    /// The marketplace product code the simulated Market API reports the package under.
    #[arg(long, default_value = market::SANDBOX_PRODUCT_CODE)]
    pub product_code: String,
    /// The environment variable holding the AccessKey ID the simulated Market API accepts.
    #[arg(long, default_value = "TOLLGATE_SANDBOX_ACCESS_KEY_ID")]
    pub access_key_id_env: String,
    /// The environment variable holding the AccessKey secret it accepts.
    #[arg(long, default_value = "TOLLGATE_SANDBOX_ACCESS_KEY_SECRET")]
    pub access_key_secret_env: String,
    /// A duration in the configuration's grammar (`20ms`, `1s`).
    #[arg(long, default_value = "20ms", value_parser = crate::config::parse_duration)]
    pub latency: std::time::Duration,
    #[arg(long, default_value = "0ms", value_parser = crate::config::parse_duration)]
    pub jitter: std::time::Duration,
    /// Share of calls answered 500 Internal Error.
    #[arg(long, default_value_t = 0.0)]
    pub failure_rate: f64,
    /// Share of calls answered 200 with ReturnStatus Faild.
    #[arg(long, default_value_t = 0.0)]
    pub reject_rate: f64,
    /// Share of calls never answered (the client times out).
    #[arg(long, default_value_t = 0.0)]
    pub timeout_rate: f64,
    /// Calls per second above which the simulation answers 403 Throttled.
    #[arg(long)]
    pub throttle_per_second: Option<u32>,
}
