//! Schemas for the domain types that serialize themselves by hand (as strings), written
//! once here so that every answer holding one is described alike.

use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::{Outcome, SendClass, Yuan};
use crate::ledger::SendStatus;
use crate::report::Month;

impl PartialSchema for Yuan {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "An exact amount of CNY as a decimal string (never a float), up to 6 decimals.",
            ))
            .pattern(Some(r"^-?[0-9]+(\.[0-9]{1,6})?$"))
            .examples(["45.00", "0.045"])
            .into()
    }
}

impl ToSchema for Yuan {}

impl PartialSchema for SendStatus {
    fn schema() -> RefOr<Schema> {
        let statuses = std::iter::once(SendStatus::Reserved)
            .chain(Outcome::ALL.into_iter().map(SendStatus::Settled))
            .map(|status| status.as_str());
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "`reserved` while the vendor call is under way, then the vendor's outcome (SPEC §3).",
            ))
            .enum_values(Some(statuses))
            .into()
    }
}

impl ToSchema for SendStatus {}

impl PartialSchema for Month {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A calendar month in `[server] timezone`, `YYYY-MM`."))
            .pattern(Some(r"^[0-9]{4}-(0[1-9]|1[0-2])$"))
            .examples(["2026-11"])
            .into()
    }
}

impl ToSchema for Month {}

impl PartialSchema for SendClass {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "The send's class (SPEC §11): `critical` (verification codes), `normal` (notifications) or `bulk` (marketing); from its template, else its channel's kind.",
            ))
            .enum_values(Some(SendClass::ALL.iter().map(|c| c.as_str())))
            .into()
    }
}

impl ToSchema for SendClass {}
