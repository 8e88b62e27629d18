//! `GET /console`: each channel's remaining units and ratio, days left and when it runs
//! out, the next expiry, what is held back, the suggested purchase and where to buy it.

use axum::extract::State;
use axum::response::Html;
use chrono_tz::Tz;
use maud::{html, Markup};

use crate::alerts::Forecast;
use crate::config::ChannelSettings;
use crate::console::error::ConsoleError;
use crate::console::i18n::{self, bi};
use crate::console::layout::{self, Section};
use crate::console::viewer::Viewer;
use crate::domain::ChannelName;
use crate::http::AppState;
use crate::ledger::QuotaView;

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
) -> Result<Html<String>, ConsoleError> {
    let ledger = state.sends.ledger();
    let channels: Vec<ChannelName> = state
        .settings
        .channels
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let quotas = ledger
        .quotas(&channels)
        .await
        .map_err(ConsoleError::unavailable)?;
    let packages = ledger
        .list_packages(None)
        .await
        .map_err(ConsoleError::unavailable)?;
    let timezone = state.settings.server.timezone;
    let body = html! {
        @if state.settings.channels.is_empty() {
            p.card.muted { (bi("没有配置渠道。", "No channel is configured.")) }
        }
        div.grid {
            @for (settings, quota) in state.settings.channels.iter().zip(&quotas) {
                (channel_card(settings, quota, &state.alerts.forecast(quota, &packages), timezone))
            }
        }
        p.muted {
            (bi(
                "剩余天数与预计用完时间按近 7 天的日均用量计算；建议购买量与续费提醒相同。",
                "Days left and the forecast use the trailing 7-day burn rate; the suggestion is the one the renewal reminders give."
            ))
        }
    };
    Ok(layout::page(&viewer, Section::Channels, body))
}

fn channel_card(
    settings: &ChannelSettings,
    quota: &QuotaView,
    forecast: &Forecast,
    timezone: Tz,
) -> Markup {
    let kind = Some(settings.kind);
    let (kind_zh, kind_en) = i18n::kind_names(settings.kind);
    let level = if quota.remaining_ratio < 0.1 {
        "bar bad"
    } else if quota.remaining_ratio < 0.2 {
        "bar warn"
    } else {
        "bar"
    };
    let width = format!(
        "width: {:.1}%",
        (quota.remaining_ratio * 100.0).clamp(0.0, 100.0)
    );
    html! {
        section.card id=(format!("channel-{}", quota.channel)) data-channel=(quota.channel) {
            h2 { (quota.channel) " " span.muted { (bi(kind_zh, kind_en)) } }
            @if quota.purchased == 0 {
                p.muted { (bi("尚未登记套餐：发送会被拒绝。", "No package registered: sends are refused.")) }
            }
            div.row {
                span.big.remaining data-units=(quota.remaining) { (quota.remaining) }
                span.muted { "/ " (i18n::units(quota.pool_units, kind)) " " (bi("剩余", "left")) }
                span.ratio { (i18n::percent(quota.remaining_ratio)) }
            }
            div class=(level) role="meter" aria-valuemin="0" aria-valuemax="100"
                aria-valuenow=(format!("{:.0}", (quota.remaining_ratio * 100.0).clamp(0.0, 100.0))) {
                span style=(width) {}
            }
            dl.facts {
                dt { (bi("剩余天数", "Days left")) }
                dd.days-left {
                    @match quota.days_left {
                        Some(days) => { (i18n::days(days)) " " (bi("天", "days")) }
                        None => { (bi("—（近 7 天无用量）", "(nothing used in 7 days)")) }
                    }
                }
                dt { (bi("预计用完", "Runs out")) }
                dd {
                    @match forecast.exhausted_at {
                        Some(at) => { (i18n::time(at, timezone)) }
                        None => { "—" }
                    }
                }
                dt { (bi("日均用量", "Burn rate")) }
                dd { (i18n::days(quota.burn_rate_per_day)) " " (bi("/天", "a day")) }
                dt { (bi("最近到期", "Next expiry")) }
                dd {
                    @match quota.next_expiry {
                        Some(at) => { (i18n::time(at, timezone)) }
                        None => { (bi("不过期", "never")) }
                    }
                }
                @if quota.reserve_units > 0 {
                    dt { (bi("留给验证码", "Kept for critical sends")) }
                    dd.held-back { (i18n::units(quota.reserved_for_critical, kind)) " / " (i18n::units(quota.reserve_units, kind)) }
                }
                dt { (bi("在途占用", "Held by sends under way")) }
                dd.in-flight { (i18n::units(quota.reserved, kind)) }
                dt { (bi("累计已用", "Used in total")) }
                dd { (i18n::units(quota.used, kind)) " / " (i18n::units(quota.purchased, kind)) " " (bi("已购", "bought")) }
                @if let Some(vendor) = quota.vendor_remaining {
                    dt { (bi("供应商显示", "Vendor's count")) }
                    dd {
                        (i18n::units(vendor, kind))
                        @if let Some(at) = quota.vendor_remaining_at {
                            " " span.muted { "(" (i18n::time(at, timezone)) ")" }
                        }
                    }
                }
                dt { (bi("建议购买", "Suggested purchase")) }
                dd.suggested {
                    @match &forecast.suggestion {
                        Some(suggestion) => { strong { (i18n::units(suggestion.units, kind)) } }
                        None => { "—" }
                    }
                }
            }
            @if let Some(suggestion) = &forecast.suggestion {
                p.explain.muted { (suggestion.explain_zh(tollgate_notify::unit_zh(Some(settings.kind.as_str())))) }
            }
            @if let Some(url) = settings.repurchase_url.as_deref().filter(|url| is_web_link(url)) {
                a.buy href=(url) rel="noopener noreferrer" target="_blank" { (bi("续费", "Buy more")) }
            }
        }
    }
}

/// Only web addresses become links: a `javascript:` URL in the configuration must not
/// turn the button into a script.
fn is_web_link(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|url| matches!(url.scheme(), "http" | "https"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_web_addresses_become_buy_links() {
        assert!(is_web_link(
            "https://market.aliyun.com/products/57124001/cmapi00037415.html"
        ));
        assert!(!is_web_link("javascript:alert(1)"));
        assert!(!is_web_link("market.aliyun.com"));
    }
}
