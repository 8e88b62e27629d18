//! Purchased packages (套餐): registering a purchase and listing what is left of each.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::Row;

use super::aggregates::Aggregates;
use super::{Ledger, LedgerError};
use crate::domain::instant::parse_instant;
use crate::domain::{ChannelName, PackageUnits, Yuan};
use crate::store::{from_micros, to_micros};

/// A purchase to register, already checked: positive units, an exact price, and an
/// expiry (if any) after the purchase.
#[derive(Debug, Clone)]
pub struct NewPackage {
    channel: ChannelName,
    units: PackageUnits,
    price: Yuan,
    purchased_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    order_id: Option<String>,
    note: Option<String>,
}

/// A purchase as a person or a client writes it, all text: parsed here, once, for both
/// the command line and the API.
#[derive(Debug, Clone, Default)]
pub struct PackageInput<'a> {
    pub units: &'a str,
    pub price: &'a str,
    /// A date or RFC 3339 time; now when absent.
    pub purchased_at: Option<&'a str>,
    /// A date or RFC 3339 time; never when absent.
    pub expires_at: Option<&'a str>,
    pub order_id: Option<String>,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NewPackageError {
    #[error("units: {0}")]
    Units(#[from] crate::domain::units::PackageUnitsError),
    #[error("price: {0}")]
    Price(#[from] crate::domain::money::YuanError),
    #[error("{field}: {problem}")]
    Time {
        field: &'static str,
        problem: String,
    },
    #[error("expires_at ({expires_at}) must be after purchased_at ({purchased_at})")]
    ExpiryBeforePurchase {
        purchased_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    },
    #[error("order_id must be 1-128 printable characters")]
    InvalidOrderId,
    #[error("note must be at most 500 characters")]
    NoteTooLong,
}

impl NewPackage {
    /// Parses a purchase written as text; dates without a time are local midnight in
    /// `timezone`.
    pub fn from_input(
        channel: ChannelName,
        input: PackageInput<'_>,
        timezone: chrono_tz::Tz,
    ) -> Result<Self, NewPackageError> {
        let time = |field: &'static str, raw: &str| {
            parse_instant(raw, timezone).map_err(|problem| NewPackageError::Time { field, problem })
        };
        let purchased_at = match input.purchased_at {
            Some(raw) => time("purchased_at", raw)?,
            None => Utc::now(),
        };
        let expires_at = input
            .expires_at
            .map(|raw| time("expires_at", raw))
            .transpose()?;
        Self::new(
            channel,
            PackageUnits::parse(input.units)?,
            Yuan::parse(input.price)?,
            purchased_at,
            expires_at,
            input.order_id,
            input.note,
        )
    }

    pub fn new(
        channel: ChannelName,
        units: PackageUnits,
        price: Yuan,
        purchased_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
        order_id: Option<String>,
        note: Option<String>,
    ) -> Result<Self, NewPackageError> {
        if let Some(expires_at) = expires_at {
            if expires_at <= purchased_at {
                return Err(NewPackageError::ExpiryBeforePurchase {
                    purchased_at,
                    expires_at,
                });
            }
        }
        if let Some(order) = &order_id {
            if order.is_empty()
                || order.chars().count() > 128
                || order.chars().any(char::is_control)
            {
                return Err(NewPackageError::InvalidOrderId);
            }
        }
        if note.as_ref().is_some_and(|n| n.chars().count() > 500) {
            return Err(NewPackageError::NoteTooLong);
        }
        Ok(Self {
            channel,
            units,
            price,
            purchased_at,
            expires_at,
            order_id,
            note,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PackageStatus {
    /// Serving sends.
    Active,
    /// Every unit charged.
    Exhausted,
    /// Past its expiry; unused units are lost.
    Expired,
}

/// A registered package with what is left of it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Package {
    pub id: i64,
    pub channel: String,
    pub units: i64,
    pub price: Yuan,
    pub unit_price: rust_decimal::Decimal,
    pub purchased_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub order_id: Option<String>,
    pub note: Option<String>,
    pub used: i64,
    pub reserved: i64,
    pub remaining: i64,
    /// Units that expired unused (0 unless the package is expired).
    pub expired_units: i64,
    pub status: PackageStatus,
}

pub(super) const PACKAGE_COLUMNS: &str = "id, channel, units, price_micros, purchased_at, \
     expires_at, vendor_order_id, note, taken, charged";

impl Package {
    pub(super) fn from_row(
        row: &sqlx::any::AnyRow,
        now: DateTime<Utc>,
    ) -> Result<Self, sqlx::Error> {
        let units: i64 = row.try_get("units")?;
        let taken: i64 = row.try_get("taken")?;
        let charged: i64 = row.try_get("charged")?;
        let price = Yuan::from_micros(row.try_get("price_micros")?);
        let expires_at = row
            .try_get::<Option<i64>, _>("expires_at")?
            .map(from_micros);
        let expired = expires_at.is_some_and(|at| at <= now);
        let status = if expired {
            PackageStatus::Expired
        } else if charged >= units {
            PackageStatus::Exhausted
        } else {
            PackageStatus::Active
        };
        Ok(Package {
            id: row.try_get("id")?,
            channel: row.try_get("channel")?,
            units,
            unit_price: (price.to_decimal() / rust_decimal::Decimal::from(units)).normalize(),
            price,
            purchased_at: from_micros(row.try_get("purchased_at")?),
            expires_at,
            order_id: row.try_get("vendor_order_id")?,
            note: row.try_get("note")?,
            used: charged,
            reserved: taken - charged,
            remaining: if expired { 0 } else { units - taken },
            expired_units: if expired { units - taken } else { 0 },
            status,
        })
    }
}

impl Ledger {
    /// Registers a purchase. Registering the same `order_id` again changes
    /// nothing and returns the first record, with `false` for "not newly created".
    #[tracing::instrument(skip_all, fields(channel = %package.channel, units = package.units.get()))]
    pub async fn register_package(
        &self,
        package: NewPackage,
    ) -> Result<(Package, bool), LedgerError> {
        let now = self.now();
        let mut tx = self.db().begin_write().await?;
        let inserted = sqlx::query(&format!(
            "INSERT INTO packages (channel, units, price_micros, purchased_at, expires_at, \
             vendor_order_id, note, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (vendor_order_id) DO NOTHING RETURNING {PACKAGE_COLUMNS}"
        ))
        .bind(package.channel.as_str())
        .bind(package.units.get())
        .bind(package.price.micros())
        .bind(to_micros(package.purchased_at))
        .bind(package.expires_at.map(to_micros))
        .bind(package.order_id.as_deref())
        .bind(package.note.as_deref())
        .bind(to_micros(now))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = inserted {
            let mut aggregates = Aggregates::new(package.channel.clone(), self.timezone());
            aggregates.totals.purchased_units = package.units.get();
            aggregates.totals.purchased_at = Some(package.purchased_at);
            aggregates.write(&mut tx).await?;
            tx.commit().await?;
            return Ok((Package::from_row(&row, now)?, true));
        }
        tx.rollback().await?;
        // Only a vendor order id can conflict: return the package first registered with it.
        let existing = sqlx::query(&format!(
            "SELECT {PACKAGE_COLUMNS} FROM packages WHERE vendor_order_id = $1"
        ))
        .bind(package.order_id.as_deref())
        .fetch_one(self.db().pool())
        .await?;
        Ok((Package::from_row(&existing, now)?, false))
    }

    /// Every package, optionally of one channel, newest purchase first.
    pub async fn list_packages(
        &self,
        channel: Option<&ChannelName>,
    ) -> Result<Vec<Package>, LedgerError> {
        let mut conn = self.db().pool().acquire().await?;
        self.list_packages_on(&mut conn, channel).await
    }

    /// [`Ledger::list_packages`], read on `conn` (see [`Ledger::channel_reading_on`]).
    pub(super) async fn list_packages_on(
        &self,
        conn: &mut sqlx::AnyConnection,
        channel: Option<&ChannelName>,
    ) -> Result<Vec<Package>, LedgerError> {
        let now = self.now();
        let rows = sqlx::query(&format!(
            "SELECT {PACKAGE_COLUMNS} FROM packages WHERE ($1 = '' OR channel = $1) \
             ORDER BY purchased_at DESC, id DESC"
        ))
        .bind(channel.map(ChannelName::as_str).unwrap_or(""))
        .fetch_all(&mut *conn)
        .await?;
        rows.iter()
            .map(|row| Package::from_row(row, now).map_err(LedgerError::from))
            .collect()
    }
}
