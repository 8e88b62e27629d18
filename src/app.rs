//! The server: built from settings by [`Application::build`], run until stopped.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Settings;
use crate::domain::HashKey;
use crate::http::auth::{Caller, Clients};
use crate::http::{router, AppState};
use crate::ledger::{Ledger, Sweeper};
use crate::marketplace::MarketplaceSync;
use crate::secret::Secret;
use crate::send::SendService;
use crate::upstream::VendorClient;

pub struct Application {
    listener: TcpListener,
    state: AppState,
    ledger: Ledger,
    alerts: crate::alerts::Alerts,
    /// The marketplace's count, when `[marketplace]` and a `product_code` call for it.
    marketplace: Option<MarketplaceSync>,
}

impl Application {
    /// Connects and migrates the database, reads every secret from the environment
    /// (through `env`), and binds the listener. Any problem here stops the start with
    /// a message that names it; nothing is served half-configured.
    pub async fn build(
        settings: Settings,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let mut appcodes = HashMap::new();
        for channel in &settings.channels {
            let appcode = env(&channel.appcode_env).filter(|v| !v.is_empty()).with_context(|| {
                format!(
                    "channel {}: set the environment variable {} to the AppCode from the Alibaba Cloud console",
                    channel.name, channel.appcode_env
                )
            })?;
            appcodes.insert(channel.name.clone(), Secret::new(appcode));
        }
        let mut clients: Vec<(Secret, Caller)> = Vec::new();
        for client in &settings.clients {
            let token = env(&client.token_env)
                .filter(|v| !v.is_empty())
                .with_context(|| {
                    format!(
                        "client {}: set the environment variable {} to its bearer token",
                        client.name, client.token_env
                    )
                })?;
            // A shared token would make one client act as the other (perhaps as admin).
            if let Some((_, other)) = clients.iter().find(|(known, _)| known.expose() == token) {
                anyhow::bail!(
                    "clients {} and {} have the same token; give each client its own",
                    other.name,
                    client.name
                );
            }
            clients.push((
                Secret::new(token),
                Caller {
                    name: client.name.clone(),
                    admin: client.admin,
                },
            ));
        }

        let scrape_token = match &settings.metrics.token_env {
            None => None,
            Some(name) => Some(Secret::new(env(name).filter(|v| !v.is_empty()).with_context(
                || format!("[metrics] token_env: set the environment variable {name} to the token scrapes must present"),
            )?)),
        };

        let ledger = Ledger::open(&settings, settings.database.max_connections).await?;
        let configured_key = match &settings.privacy.hash_key_env {
            None => None,
            Some(name) => {
                let value = env(name).filter(|v| !v.is_empty()).with_context(|| {
                    format!("[privacy] hash_key_env: set the environment variable {name} to the installation's hash key (at least 16 bytes)")
                })?;
                Some(HashKey::new(value.into_bytes()).with_context(|| {
                    format!("[privacy] hash_key_env: the value of {name} is too short")
                })?)
            }
        };
        let hash_key = ledger.hash_key(configured_key).await?;

        let vendor = VendorClient::new(settings.upstream.timeout)
            .context("cannot build the HTTP client for the vendor")?;
        let alerts = crate::alerts::Alerts::build(&settings, ledger.clone(), env)?;
        let marketplace = MarketplaceSync::from_settings(&settings, ledger.clone(), env)
            .context("[marketplace]")?
            .map(|sync| sync.observed_by(Arc::new(alerts.engine().clone())));
        if settings.marketplace.is_some() && marketplace.is_none() {
            tracing::warn!("[marketplace] is configured but no channel has a product_code: marketplace_sync is not scheduled");
        }
        let metrics = crate::metrics::MetricsExporter::new(
            ledger.clone(),
            alerts.engine().clone(),
            &settings,
        );
        let observers = vec![metrics.send_observer(), alerts.send_observer()];
        let sends = SendService::new(
            &settings,
            ledger.clone(),
            vendor,
            &appcodes,
            observers,
            hash_key,
        )?;
        let listener = TcpListener::bind(settings.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.server.listen))?;
        // The lease says this instance looks after its reservations; taking it settles
        // those of an instance that ran here before and did not stop cleanly.
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        ledger
            .take_lease(&crate::ledger::instance_name(port))
            .await
            .context("cannot take this instance's lease in the database")?;
        let console = crate::console::SessionKey::derive(
            clients
                .iter()
                .map(|(token, caller)| (caller.name.as_str(), token)),
        );
        let state = AppState {
            settings: Arc::new(settings),
            sends,
            console,
            clients: Clients::new(clients),
            metrics,
            scrapes: crate::metrics::ScrapeAccess::new(scrape_token),
            alerts: alerts.engine().clone(),
        };
        Ok(Self {
            listener,
            state,
            ledger,
            alerts,
            marketplace,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The alert engine (`evaluate_all` is the `quota_check` job).
    pub fn alerts(&self) -> &crate::alerts::AlertEngine {
        self.alerts.engine()
    }

    /// The marketplace's count (the `marketplace_sync` job), when configured.
    pub fn marketplace(&self) -> Option<&MarketplaceSync> {
        self.marketplace.as_ref()
    }

    /// Names, in a warning, every channel without a package: its sends will be refused.
    pub async fn warn_about_channels_without_packages(&self) -> anyhow::Result<()> {
        let channels: Vec<_> = self
            .state
            .settings
            .channels
            .iter()
            .map(|c| c.name.clone())
            .collect();
        for view in self.ledger.quotas(&channels).await? {
            if view.purchased == 0 {
                tracing::warn!(channel = %view.channel, "no package registered: every send to this channel will be refused; register one with `tollgate package add`");
            }
        }
        Ok(())
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` completes, then shuts down gracefully within
    /// `server.shutdown_grace`: no new connections, requests under way are answered and
    /// sends under way settled while the grace lasts (connections still open when it
    /// ends are closed, and sends still unsettled are left to the sweeper), then
    /// background work stops.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let settings = self.state.settings.clone();
        let in_flight = self.state.sends.in_flight().clone();
        let (stopping, stopped) = watch::channel(false);
        let sweeper = Sweeper::new(self.ledger.clone(), settings.ledger.reservation_timeout);
        let sweeper = tokio::spawn(sweeper.run(settings.ledger.sweep_every, stopped.clone()));
        let lease = {
            let ledger = self.ledger.clone();
            let stopped = stopped.clone();
            tokio::spawn(async move { ledger.keep_lease(stopped).await })
        };
        // Scheduled jobs (SPEC §8): quota_check is the alert engine's evaluation.
        let engine = self.alerts.engine().clone();
        let reports = engine.clone();
        let report_context = crate::report::ReportContext::from_channels(&settings.channels);
        let mut hooks = crate::schedule::JobHooks::default()
            .with_quota_check(move || {
                let engine = engine.clone();
                async move { engine.evaluate_all().await.map(|_| ()) }
            })
            .with_report_delivery(move |report, notifiers| {
                let reports = reports.clone();
                let context = report_context.clone();
                async move {
                    let email = crate::report::to_email(&report, &context);
                    reports
                        .enqueue_report(
                            &report.month.to_string(),
                            email,
                            &notifiers,
                            chrono::Utc::now(),
                        )
                        .await
                }
            });
        hooks = hooks.with_traffic_limits(self.state.sends.limits().clone());
        if let Some(sync) = self.marketplace.clone() {
            hooks = hooks.with_marketplace_sync(sync);
        }
        let scheduler = crate::schedule::standard_jobs(&settings, self.ledger.clone(), hooks);
        let scheduler = tokio::spawn(scheduler.run(stopped.clone()));
        let alerts = tokio::spawn(self.alerts.run(stopped));

        let limits = settings.server.limits;
        let grace_ends = crate::http::serve::serve(
            self.listener,
            router(self.state),
            limits,
            settings.server.shutdown_grace,
            stop,
        )
        .await;
        if in_flight.count() > 0 {
            tracing::info!(sends = in_flight.count(), "waiting for sends under way");
        }
        if tokio::time::timeout_at(grace_ends, in_flight.drained())
            .await
            .is_err()
        {
            tracing::warn!(
                sends = in_flight.count(),
                "shutdown grace ran out; the sweeper will settle what is left"
            );
        }
        let _ = stopping.send(true);
        let _ = sweeper.await;
        let _ = lease.await;
        // Sends under way were settled (or the grace ran out): the lease ends now, so
        // that other instances settle whatever is left at once.
        if let Err(err) = self.ledger.end_lease().await {
            tracing::warn!(error = %err, "cannot end this instance's lease; it lapses by itself");
        }
        let _ = alerts.await;
        let _ = scheduler.await;
        self.ledger.db().close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutdown requested");
}
