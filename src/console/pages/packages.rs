//! `GET /console/packages`: every purchase with its price, units, expiry and what is left
//! of it; and `POST /console/packages`, registering one with the API's validation and
//! idempotency (admins only, as the API's package endpoints are).

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use chrono_tz::Tz;
use maud::{html, Markup};
use serde::Deserialize;

use super::csrf_field;
use crate::console::error::ConsoleError;
use crate::console::i18n::{self, bi};
use crate::console::layout::{self, Section};
use crate::console::viewer::Viewer;
use crate::http::{AppState, RegisterPackageError};
use crate::ledger::{Package, PackageInput, PackageStatus};

/// What the last registration did, carried over the redirect by the package's id.
#[derive(Debug, Default, Deserialize)]
pub struct Flash {
    registered: Option<i64>,
    existing: Option<i64>,
}

/// The registration form as posted: all text, parsed by `NewPackage::from_input` like
/// the API's body. Empty fields are absent.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct PackageForm {
    csrf: Option<String>,
    channel: Option<String>,
    units: Option<String>,
    price: Option<String>,
    purchased_at: Option<String>,
    expires_at: Option<String>,
    order_id: Option<String>,
    note: Option<String>,
}

pub async fn show(
    State(state): State<AppState>,
    viewer: Viewer,
    flash: Result<Query<Flash>, QueryRejection>,
) -> Result<Response, ConsoleError> {
    viewer.require_admin()?;
    let flash = flash.map(|Query(flash)| flash).unwrap_or_default();
    let notice = match (flash.registered, flash.existing) {
        (Some(id), _) => Some(Notice::Registered(id)),
        (None, Some(id)) => Some(Notice::AlreadyRegistered(id)),
        (None, None) => None,
    };
    render(
        &state,
        &viewer,
        StatusCode::OK,
        notice,
        &PackageForm::default(),
    )
    .await
}

/// `POST /console/packages`.
pub async fn register(
    State(state): State<AppState>,
    viewer: Viewer,
    posted: Result<Form<PackageForm>, FormRejection>,
) -> Result<Response, ConsoleError> {
    viewer.require_admin()?;
    let fields = super::form(posted)?;
    viewer.check_csrf(&state, fields.csrf.as_deref())?;
    let given = |field: &Option<String>| {
        field
            .as_deref()
            .map(str::trim)
            .filter(|value| !value.is_empty())
            .map(str::to_owned)
    };
    let Some(channel) = given(&fields.channel)
        .and_then(|name| state.settings.channel(&name))
        .map(|c| c.name.clone())
    else {
        let notice = Notice::Invalid("channel: choose a configured channel".to_owned());
        return render(
            &state,
            &viewer,
            StatusCode::BAD_REQUEST,
            Some(notice),
            &fields,
        )
        .await;
    };
    let (units, price) = (given(&fields.units), given(&fields.price));
    let (purchased_at, expires_at) = (given(&fields.purchased_at), given(&fields.expires_at));
    let input = PackageInput {
        units: units.as_deref().unwrap_or(""),
        price: price.as_deref().unwrap_or(""),
        purchased_at: purchased_at.as_deref(),
        expires_at: expires_at.as_deref(),
        order_id: given(&fields.order_id),
        note: given(&fields.note),
    };
    match state.register_package(channel, input).await {
        Ok((package, true)) => {
            tracing::info!(package = package.id, by = %viewer.client, "package registered in the console");
            Ok(
                Redirect::to(&format!("/console/packages?registered={}", package.id))
                    .into_response(),
            )
        }
        Ok((package, false)) => {
            Ok(Redirect::to(&format!("/console/packages?existing={}", package.id)).into_response())
        }
        Err(RegisterPackageError::Invalid(invalid)) => {
            let notice = Notice::Invalid(invalid.to_string());
            render(
                &state,
                &viewer,
                StatusCode::BAD_REQUEST,
                Some(notice),
                &fields,
            )
            .await
        }
        Err(RegisterPackageError::Ledger(err)) => Err(ConsoleError::unavailable(err)),
    }
}

enum Notice {
    Registered(i64),
    AlreadyRegistered(i64),
    Invalid(String),
}

async fn render(
    state: &AppState,
    viewer: &Viewer,
    status: StatusCode,
    notice: Option<Notice>,
    form: &PackageForm,
) -> Result<Response, ConsoleError> {
    let packages = state
        .sends
        .ledger()
        .list_packages(None)
        .await
        .map_err(ConsoleError::unavailable)?;
    let timezone = state.settings.server.timezone;
    let body = html! {
        @match &notice {
            Some(Notice::Registered(id)) => {
                p.notice #flash role="status" { (bi("已登记套餐", "Registered package")) " #" (id) }
            }
            Some(Notice::AlreadyRegistered(id)) => {
                p.notice #flash role="status" {
                    (bi("该订单号已登记过，未重复登记", "That order id was registered before; nothing changed")) ": #" (id)
                }
            }
            Some(Notice::Invalid(problem)) => {
                p.notice.error #flash role="alert" {
                    (bi("未登记，请检查", "Not registered; check")) " " code { (problem) }
                }
            }
            None => {}
        }
        div.card.scroll {
            @if packages.is_empty() {
                p.muted { (bi("还没有登记任何套餐。", "No package is registered yet.")) }
            } @else {
                table #packages { (package_table(&packages, timezone)) }
            }
        }
        (register_form(state, viewer, form))
    };
    Ok((status, layout::page(viewer, Section::Packages, body)).into_response())
}

fn package_table(packages: &[Package], timezone: Tz) -> Markup {
    html! {
        thead { tr {
            th.num { "#" } th { (bi("渠道", "Channel")) }
            th.num { (bi("数量", "Units")) } th.num { (bi("价格", "Price")) }
            th.num { (bi("单价", "Unit price")) }
            th { (bi("购买", "Bought")) } th { (bi("到期", "Expires")) }
            th.num { (bi("已用", "Used")) } th.num { (bi("占用", "Held")) }
            th.num { (bi("剩余", "Left")) } th.num { (bi("过期作废", "Expired")) }
            th { (bi("状态", "Status")) } th { (bi("订单号", "Order id")) } th { (bi("备注", "Note")) }
        } }
        tbody {
            @for p in packages {
                tr data-package=(p.id) data-channel=(p.channel) {
                    td.num { (p.id) } td { (p.channel) }
                    td.num.units { (p.units) } td.num.price { (i18n::money(p.price)) }
                    td.num { "¥" (p.unit_price.normalize()) }
                    td { (i18n::date(p.purchased_at, timezone)) }
                    td { @if let Some(at) = p.expires_at { (i18n::date(at, timezone)) } @else { (bi("不过期", "never")) } }
                    td.num { (p.used) } td.num { (p.reserved) }
                    td.num.left { (p.remaining) } td.num { (p.expired_units) }
                    td { (status(p.status)) }
                    td { (p.order_id.as_deref().unwrap_or("—")) }
                    td { (p.note.as_deref().unwrap_or("")) }
                }
            }
        }
    }
}

fn status(status: PackageStatus) -> Markup {
    match status {
        PackageStatus::Active => html! { span.badge.ok { (bi("使用中", "active")) } },
        PackageStatus::Exhausted => html! { span.badge { (bi("已用完", "used up")) } },
        PackageStatus::Expired => html! { span.badge.warning { (bi("已过期", "expired")) } },
    }
}

fn register_form(state: &AppState, viewer: &Viewer, form: &PackageForm) -> Markup {
    let value = |field: &Option<String>| field.clone().unwrap_or_default();
    html! {
        section.card #register {
            h2 { (bi("登记新套餐", "Register a purchase")) }
            p.muted {
                (bi(
                    "与 API 的 POST /v1/packages 相同：同一订单号只登记一次；日期按服务器时区的零点计。",
                    "As POST /v1/packages: an order id is registered once; dates are midnight in the server's time zone."
                ))
            }
            form.stack method="post" action="/console/packages" {
                (csrf_field(viewer.csrf_token()))
                label {
                    span { (bi("渠道", "Channel")) }
                    select name="channel" required {
                        @for channel in &state.settings.channels {
                            @let name = channel.name.as_str();
                            option value=(name) selected[form.channel.as_deref() == Some(name)] { (name) }
                        }
                    }
                }
                label {
                    span { (bi("数量（条/次）", "Units")) }
                    input type="number" name="units" min="1" step="1" required value=(value(&form.units));
                }
                label {
                    span { (bi("价格（元）", "Price (CNY)")) }
                    input type="text" name="price" inputmode="decimal" placeholder="45.00" required value=(value(&form.price));
                }
                label {
                    span { (bi("购买日期（默认今天）", "Bought on (default: now)")) }
                    input type="date" name="purchased_at" value=(value(&form.purchased_at));
                }
                label {
                    span { (bi("到期日期（可不填）", "Expires on (optional)")) }
                    input type="date" name="expires_at" value=(value(&form.expires_at));
                }
                label {
                    span { (bi("订单号（可不填）", "Vendor order id (optional)")) }
                    input type="text" name="order_id" maxlength="128" value=(value(&form.order_id));
                }
                label {
                    span { (bi("备注（可不填）", "Note (optional)")) }
                    input type="text" name="note" maxlength="500" value=(value(&form.note));
                }
                button #register-package type="submit" { (bi("登记", "Register")) }
            }
        }
    }
}
