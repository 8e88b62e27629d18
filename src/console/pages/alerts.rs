//! `GET /console/alerts`: what is firing, since when, acknowledged by whom; and
//! `POST /console/alerts/{id}/ack`, the API's acknowledgement (admins only).

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use chrono_tz::Tz;
use maud::{html, Markup};
use serde::Deserialize;

use super::csrf_field;
use crate::alerts::{AckOutcome, AlertRecord, AlertState};
use crate::console::error::ConsoleError;
use crate::console::i18n::{self, bi};
use crate::console::layout::{self, Section};
use crate::console::viewer::Viewer;
use crate::http::AppState;

/// What the last acknowledgement did, carried over the redirect by the alert's id (shown
/// only for an alert of the list, so that no text of the address reaches the page).
#[derive(Debug, Default, Deserialize)]
pub struct Flash {
    acknowledged: Option<String>,
    not_firing: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct AckForm {
    csrf: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    flash: Result<Query<Flash>, QueryRejection>,
) -> Result<Html<String>, ConsoleError> {
    let flash = flash.map(|Query(flash)| flash).unwrap_or_default();
    let mut alerts = state
        .alerts
        .list()
        .await
        .map_err(ConsoleError::unavailable)?;
    // Firing first, the longest-firing first; then the rest by rule and channel.
    alerts.sort_by(|a, b| {
        let firing = |r: &AlertRecord| r.state != AlertState::Firing;
        (firing(a), a.fired_at, &a.rule, &a.channel).cmp(&(
            firing(b),
            b.fired_at,
            &b.rule,
            &b.channel,
        ))
    });
    let timezone = state.settings.server.timezone;
    let named = |id: &Option<String>| {
        id.as_ref()
            .and_then(|id| alerts.iter().find(|a| &a.id == id))
    };
    let firing: Vec<&AlertRecord> = alerts
        .iter()
        .filter(|a| a.state == AlertState::Firing)
        .collect();
    let others: Vec<&AlertRecord> = alerts
        .iter()
        .filter(|a| a.state != AlertState::Firing)
        .collect();
    let body = html! {
        @if let Some(alert) = named(&flash.acknowledged) {
            p.notice #flash role="status" {
                (bi("已确认", "Acknowledged")) ": " (alert.rule) " · " (alert.channel)
            }
        }
        @if let Some(alert) = named(&flash.not_firing) {
            p.notice.error #flash role="status" {
                (bi("该告警已不在触发中，无需确认", "That alert is no longer firing; nothing to acknowledge")) ": " (alert.rule) " · " (alert.channel)
            }
        }
        h2 { (bi("触发中", "Firing")) " (" (firing.len()) ")" }
        @if firing.is_empty() {
            p.card.muted #no-firing { (bi("没有触发中的告警。", "Nothing is firing.")) }
        }
        div.grid #firing {
            @for alert in &firing {
                (firing_card(alert, &viewer, timezone))
            }
        }
        @if !others.is_empty() {
            h2 style="margin-top:1.5rem" { (bi("其他规则", "Other rules")) }
            div.card.scroll {
                table #other-alerts {
                    thead { tr {
                        th { (bi("规则", "Rule")) } th { (bi("渠道", "Channel")) }
                        th { (bi("状态", "State")) } th { (bi("级别", "Severity")) }
                        th { (bi("恢复于", "Resolved")) }
                    } }
                    tbody {
                        @for alert in &others {
                            tr {
                                td { (alert.rule) } td { (alert.channel) }
                                td { (state_badge(alert.state)) }
                                td { (alert.severity) }
                                td { @if let Some(at) = alert.resolved_at { (i18n::time(at, timezone)) } @else { "—" } }
                            }
                        }
                    }
                }
            }
        }
        @if !viewer.admin {
            p.muted { (bi("只有管理员可以确认告警。", "Only an admin can acknowledge an alert.")) }
        }
    };
    Ok(layout::page(&viewer, Section::Alerts, body))
}

fn firing_card(alert: &AlertRecord, viewer: &Viewer, timezone: Tz) -> Markup {
    html! {
        section.card.alert data-alert=(alert.id) data-rule=(alert.rule) data-channel=(alert.channel) {
            h3 style="margin-top:0" {
                (state_badge(alert.state)) " "
                span class=(format!("badge {}", alert.severity)) { (alert.severity) } " "
                (alert.rule) " · " (alert.channel)
            }
            @if let Some(summary) = &alert.summary { p { (summary) } }
            dl.facts {
                dt { (bi("开始于", "Since")) }
                dd { @if let Some(at) = alert.fired_at { (i18n::time(at, timezone)) } @else { "—" } }
                dt { (bi("上次通知", "Last notified")) }
                dd { @if let Some(at) = alert.last_notified_at { (i18n::time(at, timezone)) } @else { "—" } }
                dt { (bi("确认", "Acknowledged")) }
                dd.acknowledged {
                    @match (&alert.acknowledged_by, alert.acknowledged_at) {
                        (Some(by), Some(at)) => { (by) " · " (i18n::time(at, timezone)) }
                        _ => { (bi("未确认（会按规则重复提醒）", "not yet (reminders repeat)")) }
                    }
                }
            }
            @if viewer.admin && alert.acknowledged_at.is_none() {
                form method="post" action=(format!("/console/alerts/{}/ack", alert.id)) style="margin-top:.7rem" {
                    (csrf_field(viewer.csrf_token()))
                    button.ack type="submit" { (bi("确认，停止重复提醒", "Acknowledge: stop the reminders")) }
                }
            }
        }
    }
}

fn state_badge(state: AlertState) -> Markup {
    let (class, zh, en) = match state {
        AlertState::Firing => ("badge firing", "触发中", "firing"),
        AlertState::Ok => ("badge ok", "正常", "ok"),
        AlertState::Resolved => ("badge ok", "已恢复", "resolved"),
    };
    html! { span class=(class) { (bi(zh, en)) } }
}

/// `POST /console/alerts/{id}/ack`: what `POST /v1/alerts/{id}/ack` does, for an admin
/// whose form carries the session's token.
pub async fn acknowledge(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(id): Path<String>,
    posted: Result<Form<AckForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    viewer.require_admin()?;
    let fields = super::form(posted)?;
    viewer.check_csrf(&state, fields.csrf.as_deref())?;
    let outcome = state
        .alerts
        .acknowledge(&id, &viewer.client)
        .await
        .map_err(ConsoleError::unavailable)?;
    let query = match outcome {
        AckOutcome::Acknowledged(alert) => {
            tracing::info!(alert = %alert.id, by = %viewer.client, "alert acknowledged in the console");
            format!("acknowledged={}", alert.id)
        }
        AckOutcome::NotFiring(alert) => format!("not_firing={}", alert.id),
        AckOutcome::NotFound => return Err(ConsoleError::NotFound),
    };
    Ok(Redirect::to(&format!("/console/alerts?{query}")).into_response())
}
