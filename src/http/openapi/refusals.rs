//! The refusals an operation can answer: per status, the error codes of SPEC §5, so
//! that a client reads in the description which codes to handle at which endpoint.
//!
//! Each handler's file declares its own list next to its `#[utoipa::path]` with
//! [`refusals!`](crate::refusals), which makes a type for the annotation's
//! `responses(...)`.

use std::collections::BTreeMap;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, Ref, RefOr, Response, ResponseBuilder};

/// Declares a type whose responses are an operation's refusals, status by status:
///
/// ```ignore
/// refusals!(QuotaRefusals { 400 => ["unknown_channel"], 401 => ["unauthorized"] });
/// ```
#[macro_export]
macro_rules! refusals {
    ($(#[$doc:meta])* $name:ident { $($status:literal => [$($code:literal),+ $(,)?]),+ $(,)? }) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<
                String,
                utoipa::openapi::RefOr<utoipa::openapi::Response>,
            > {
                $crate::http::openapi::refusal_responses(&[$(($status, &[$($code),+])),+])
            }
        }
    };
}

/// One response per status: the error body of SPEC §5 whose `code` is one of the
/// given, with `Retry-After` where repeating the request later can succeed.
pub fn refusal_responses(refusals: &[(u16, &[&str])]) -> BTreeMap<String, RefOr<Response>> {
    refusals
        .iter()
        .map(|&(status, codes)| (status.to_string(), refusal(status, codes).into()))
        .collect()
}

fn refusal(status: u16, codes: &[&str]) -> Response {
    let listed = codes
        .iter()
        .map(|code| format!("`{code}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let description = format!("{}: {listed}", meaning(status));
    // The shared body, with `code` narrowed to what this status can carry here.
    let code = ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(codes.iter().copied()));
    let narrowed = ObjectBuilder::new().property(
        "error",
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("code", code),
    );
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name("ErrorBody"))
        .item(narrowed);
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new().schema(Some(schema)).build(),
    );
    if let Some(when) = retry_after(status, codes) {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(1)),
                )
                .description(Some(format!(
                    "Whole seconds to wait before repeating the request ({when})."
                )))
                .build(),
        );
    }
    response.build()
}

/// What a status means for every operation that answers it.
fn meaning(status: u16) -> &'static str {
    match status {
        400 => "The request is malformed or names what is not configured; nothing was sent or changed",
        401 => "No bearer token, or one no client has",
        402 => "Not enough quota; nothing was sent",
        403 => "The client is not an admin",
        404 => "Nothing has that id",
        408 => "The body did not arrive within `[server] request_timeout`; nothing was done",
        409 => "The request conflicts with an earlier one or with the current state",
        413 => "The body is larger than 64 KiB",
        415 => "The body is not declared `Content-Type: application/json`",
        429 => "Too many sends; nothing was charged",
        502 => "The vendor failed or refused tollgate's AppCode; nothing was charged",
        503 => "tollgate cannot serve the request now (database unreachable, ledger busy, in-flight limit); nothing was sent or changed",
        504 => "The vendor did not answer in time: the send may have gone out, so it is charged and flagged for reconciliation",
        _ => "Refused",
    }
}

/// When an answer of this status carries `Retry-After`, said for people.
fn retry_after(status: u16, codes: &[&str]) -> Option<String> {
    let with: Vec<&str> = codes
        .iter()
        .copied()
        .filter(|code| {
            matches!(
                (status, *code),
                (409, "idempotency_in_progress") | (429, "rate_limited") | (503, _)
            )
        })
        .collect();
    (!with.is_empty()).then(|| format!("with {}", with.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_status_lists_its_codes_and_only_those() {
        let responses = refusal_responses(&[(402, &["quota_exhausted", "quota_reserved"])]);
        let json = serde_json::to_value(&responses).unwrap();
        let codes = &json["402"]["content"]["application/json"]["schema"]["allOf"][1]["properties"]
            ["error"]["properties"]["code"]["enum"];
        assert_eq!(
            codes,
            &serde_json::json!(["quota_exhausted", "quota_reserved"])
        );
        assert!(json["402"]["description"]
            .as_str()
            .unwrap()
            .contains("`quota_reserved`"));
        assert!(json["402"]["headers"].is_null());
    }

    #[test]
    fn only_refusals_worth_repeating_say_when() {
        let responses = refusal_responses(&[
            (409, &["idempotency_conflict", "idempotency_in_progress"]),
            (503, &["unavailable"]),
            (400, &["invalid_request"]),
        ]);
        let json = serde_json::to_value(&responses).unwrap();
        assert!(json["409"]["headers"]["Retry-After"].is_object());
        assert!(json["503"]["headers"]["Retry-After"].is_object());
        assert!(json["400"]["headers"].is_null());
    }
}
