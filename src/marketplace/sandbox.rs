//! The Market API as `tollgate sandbox-upstream` simulates it: `DescribeApiMetering` at
//! `GET /?Action=…`, with the signature, time stamp and nonce checked as the real API
//! checks them, and figures taken from the sandbox vendor's own accounts.
//!
//! The figures follow the reading of the API reference page's sample (see
//! [`super::metering`]): `TotalQuota` is what the account has left, `TotalUsage` what it
//! was billed, `TotalCapacity` everything it was ever given, so `TotalQuota + TotalUsage
//! = TotalCapacity` on every row. Refusals have the real API's error shape,
//! `{"RequestId","HostId","Code","Message"}`, with its codes.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};

use super::access_key::AccessKey;
use super::client::{DESCRIBE_API_METERING, MARKET_API_VERSION};
use super::metering::PackageKind;
use super::signature::{
    canonicalized_query, parse_timestamp, string_to_sign, verify, SIGNATURE_METHOD,
    SIGNATURE_VERSION,
};
use crate::upstream::format::decode_form;
use crate::upstream::SandboxState;

/// The AccessKey ID the built-in sandbox accepts. Not a secret: it opens nothing but
/// the simulation.
pub const SANDBOX_ACCESS_KEY_ID: &str = "sandbox-access-key-id";
/// The AccessKey secret the built-in sandbox accepts.
pub const SANDBOX_ACCESS_KEY_SECRET: &str = "sandbox-access-key-secret";
/// The product code of the built-in sandbox's account (SPEC §14's example).
pub const SANDBOX_PRODUCT_CODE: &str = "cmapi00037415";
/// How far a request's `Timestamp` may be from the simulation's clock.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(15);
/// Rows per page, as in the reference page's sample answer.
pub const PAGE_SIZE: usize = 20;

/// The real API's `HostId`.
const HOST_ID: &str = "market.aliyuncs.com";
/// The made-up Alibaba Cloud account id every row is reported under.
const SANDBOX_ALIYUN_PK: i64 = 1_000_000_000_000_001;

/// One sandbox account sold as a marketplace product, as the simulation reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountMetering {
    pub product_code: String,
    /// Everything the account was given: its initial quota and every `add_quota`.
    pub given: u64,
    /// Units billed (successes, rejections, unanswered calls).
    pub billed: u64,
    pub remaining: u64,
}

/// The simulated Market API's own state: the AccessKey pair it accepts and the nonces it
/// has seen lately.
pub struct MarketSimulation {
    access_key: Option<AccessKey>,
    /// Nonce → the request's time stamp. A nonce is refused while its request could
    /// still pass the time-stamp check; older ones are dropped, so this stays small.
    nonces: Mutex<HashMap<String, DateTime<Utc>>>,
}

/// An answer of the simulated API: a status and a JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketAnswer {
    pub status: StatusCode,
    pub body: Value,
}

impl MarketSimulation {
    /// `access_key: None` simulates an API that knows no AccessKey at all.
    pub fn new(access_key: Option<AccessKey>) -> Self {
        Self {
            access_key,
            nonces: Mutex::new(HashMap::new()),
        }
    }

    /// Answers one request, given its raw query string, the simulation's clock and the
    /// accounts' figures.
    pub fn answer(
        &self,
        query: &str,
        now: DateTime<Utc>,
        accounts: &[AccountMetering],
    ) -> MarketAnswer {
        let pairs = decode_form(query.as_bytes());
        match self.authenticate(&pairs, now) {
            Ok(()) => describe_api_metering(&pairs, accounts),
            Err(refusal) => refusal,
        }
    }

    /// The checks every signed request passes, in order: parameters present, AccessKey
    /// known, signature, time stamp, nonce.
    fn authenticate(
        &self,
        pairs: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<(), MarketAnswer> {
        let get = |name: &str| value(pairs, name);
        for name in [
            "AccessKeyId",
            "Action",
            "Version",
            "Signature",
            "SignatureMethod",
            "SignatureVersion",
            "SignatureNonce",
            "Timestamp",
        ] {
            if get(name).is_none() {
                return Err(missing_parameter(name));
            }
        }
        let key = self
            .access_key
            .as_ref()
            .filter(|key| Some(key.id.expose()) == get("AccessKeyId"))
            .ok_or_else(|| {
                error(
                    StatusCode::NOT_FOUND,
                    "InvalidAccessKeyId.NotFound",
                    "Specified access key is not found.",
                )
            })?;
        if get("SignatureMethod") != Some(SIGNATURE_METHOD)
            || get("SignatureVersion") != Some(SIGNATURE_VERSION)
        {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "IncompleteSignature",
                "The request signature does not conform to Aliyun standards.",
            ));
        }
        let signed = canonicalized_query(
            pairs
                .iter()
                .filter(|(name, _)| name != "Signature")
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        let to_sign = string_to_sign("GET", &signed);
        if !verify(&key.secret, &to_sign, get("Signature").unwrap_or_default()) {
            // The real API quotes its string to sign, which helps find an encoding bug.
            return Err(error(
                StatusCode::BAD_REQUEST,
                "SignatureDoesNotMatch",
                &format!("Specified signature is not matched with our calculation. server string to sign is:{to_sign}"),
            ));
        }
        let Some(timestamp) = get("Timestamp").and_then(parse_timestamp) else {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted.",
            ));
        };
        if (now - timestamp).abs() > MAX_CLOCK_SKEW {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "InvalidTimeStamp.Expired",
                "Specified time stamp or date value is expired.",
            ));
        }
        // Only a request whose signature holds may use up a nonce, so that nobody
        // without the secret can block another's requests.
        let nonce = get("SignatureNonce").unwrap_or_default().to_owned();
        let mut nonces = self.nonces.lock().unwrap_or_else(PoisonError::into_inner);
        nonces.retain(|_, seen| (now - *seen).abs() <= MAX_CLOCK_SKEW);
        if nonces.contains_key(&nonce) {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ));
        }
        nonces.insert(nonce, timestamp);
        Ok(())
    }
}

/// Middleware in front of the sandbox vendor: `GET /` with an `Action` parameter is the
/// Market API; every other request goes on to the vendor simulation.
pub async fn market_api(
    State(state): State<SandboxState>,
    request: Request,
    next: Next,
) -> Response {
    let query = request.uri().query().unwrap_or("");
    let is_market_api = request.method() == Method::GET
        && request.uri().path() == "/"
        && decode_form(query.as_bytes())
            .iter()
            .any(|(name, _)| name == "Action");
    if !is_market_api {
        return next.run(request).await;
    }
    let answer = state.market().answer(query, Utc::now(), &state.metering());
    tracing::debug!(
        status = answer.status.as_u16(),
        code = answer.body["Code"].as_str(),
        "sandbox Market API answered"
    );
    (answer.status, Json(answer.body)).into_response()
}

/// `DescribeApiMetering` for an authenticated request.
fn describe_api_metering(pairs: &[(String, String)], accounts: &[AccountMetering]) -> MarketAnswer {
    if value(pairs, "Version") != Some(MARKET_API_VERSION) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        );
    }
    if value(pairs, "Action") != Some(DESCRIBE_API_METERING) {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        );
    }
    let Some(page) = value(pairs, "pageNum") else {
        return missing_parameter("pageNum");
    };
    let Some(page) = page.parse::<usize>().ok().filter(|page| *page >= 1) else {
        return invalid_parameter("pageNum");
    };
    // The sandbox sells plan packages only; without `type` it answers those.
    let kind = match value(pairs, "type") {
        None => PackageKind::Plan,
        Some(text) => match PackageKind::from_type_parameter(text) {
            Some(kind) => kind,
            None => return invalid_parameter("type"),
        },
    };
    let product_code = value(pairs, "productCode");
    let rows: Vec<Value> = accounts
        .iter()
        .filter(|_| kind == PackageKind::Plan)
        .filter(|account| product_code.is_none_or(|code| code == account.product_code))
        .map(|account| {
            json!({
                "AliyunPk": SANDBOX_ALIYUN_PK,
                "ProductCode": account.product_code,
                "ProductName": format!("tollgate sandbox product {}", account.product_code),
                "TotalQuota": account.remaining,
                "TotalUsage": account.billed,
                "TotalCapacity": account.given,
                "Unit": "次",
            })
        })
        .collect();
    let count = rows.len();
    let on_page: Vec<Value> = rows
        .into_iter()
        .skip((page - 1).saturating_mul(PAGE_SIZE))
        .take(PAGE_SIZE)
        .collect();
    MarketAnswer {
        status: StatusCode::OK,
        body: json!({
            "RequestId": request_id(),
            "Code": "200",
            "Success": true,
            "Message": "成功",
            "Count": count,
            "PageNumber": page,
            "PageSize": PAGE_SIZE,
            "Result": on_page,
            "Version": "1.0",
            "Fatal": false,
        }),
    }
}

fn value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn request_id() -> String {
    uuid::Uuid::new_v4().to_string().to_uppercase()
}

fn error(status: StatusCode, code: &str, message: &str) -> MarketAnswer {
    MarketAnswer {
        status,
        body: json!({
            "RequestId": request_id(),
            "HostId": HOST_ID,
            "Code": code,
            "Message": message,
        }),
    }
}

fn missing_parameter(name: &str) -> MarketAnswer {
    error(
        StatusCode::BAD_REQUEST,
        "MissingParameter",
        &format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
    )
}

fn invalid_parameter(name: &str) -> MarketAnswer {
    error(
        StatusCode::BAD_REQUEST,
        "InvalidParameter",
        &format!("The specified parameter \"{name}\" is not valid."),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marketplace::signature::RpcRequest;

    fn key() -> AccessKey {
        AccessKey::new(SANDBOX_ACCESS_KEY_ID, SANDBOX_ACCESS_KEY_SECRET)
    }

    fn simulation() -> MarketSimulation {
        MarketSimulation::new(Some(key()))
    }

    fn now() -> DateTime<Utc> {
        parse_timestamp("2026-11-28T09:00:00Z").unwrap()
    }

    fn accounts(count: usize) -> Vec<AccountMetering> {
        (0..count)
            .map(|i| AccountMetering {
                product_code: SANDBOX_PRODUCT_CODE.into(),
                given: 100,
                billed: i as u64,
                remaining: 100 - i as u64,
            })
            .collect()
    }

    fn request() -> RpcRequest {
        RpcRequest::new(DESCRIBE_API_METERING, MARKET_API_VERSION)
            .parameter("pageNum", "1")
            .parameter("productCode", SANDBOX_PRODUCT_CODE)
    }

    fn signed(request: RpcRequest, key: &AccessKey, at: DateTime<Utc>, nonce: &str) -> String {
        request.signed_query(key, at, nonce)
    }

    fn code(answer: &MarketAnswer) -> &str {
        answer.body["Code"].as_str().unwrap()
    }

    #[test]
    fn a_signed_request_gets_each_accounts_figures() {
        let answer =
            simulation().answer(&signed(request(), &key(), now(), "n1"), now(), &accounts(2));

        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body["Success"], true);
        assert_eq!(answer.body["Count"], 2);
        let row = &answer.body["Result"][1];
        assert_eq!(row["ProductCode"], SANDBOX_PRODUCT_CODE);
        assert_eq!(
            (
                &row["TotalQuota"],
                &row["TotalUsage"],
                &row["TotalCapacity"]
            ),
            (&json!(99), &json!(1), &json!(100))
        );
    }

    #[test]
    fn a_wrong_secret_is_signature_does_not_match() {
        let wrong = AccessKey::new(SANDBOX_ACCESS_KEY_ID, "not-the-secret");
        let answer =
            simulation().answer(&signed(request(), &wrong, now(), "n1"), now(), &accounts(1));

        assert_eq!(answer.status, StatusCode::BAD_REQUEST);
        assert_eq!(code(&answer), "SignatureDoesNotMatch");
        let keys: Vec<&String> = answer.body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["Code", "HostId", "Message", "RequestId"]);
    }

    #[test]
    fn a_changed_parameter_breaks_the_signature() {
        let query = signed(request(), &key(), now(), "n1").replace("pageNum=1", "pageNum=2");
        let answer = simulation().answer(&query, now(), &accounts(1));
        assert_eq!(code(&answer), "SignatureDoesNotMatch");
    }

    #[test]
    fn an_unknown_access_key_id_is_not_found() {
        let stranger = AccessKey::new("someone-else", SANDBOX_ACCESS_KEY_SECRET);
        let answer = simulation().answer(
            &signed(request(), &stranger, now(), "n1"),
            now(),
            &accounts(1),
        );
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(code(&answer), "InvalidAccessKeyId.NotFound");

        let keyless = MarketSimulation::new(None);
        let answer = keyless.answer(&signed(request(), &key(), now(), "n1"), now(), &accounts(1));
        assert_eq!(code(&answer), "InvalidAccessKeyId.NotFound");
    }

    #[test]
    fn a_time_stamp_more_than_15_minutes_off_is_expired() {
        let simulation = simulation();
        let late = now() + TimeDelta::minutes(16);
        let answer = simulation.answer(&signed(request(), &key(), now(), "n1"), late, &accounts(1));
        assert_eq!(code(&answer), "InvalidTimeStamp.Expired");
        let early = now() - TimeDelta::minutes(16);
        let answer =
            simulation.answer(&signed(request(), &key(), now(), "n2"), early, &accounts(1));
        assert_eq!(code(&answer), "InvalidTimeStamp.Expired");
        let close = now() + TimeDelta::minutes(14);
        let answer =
            simulation.answer(&signed(request(), &key(), now(), "n3"), close, &accounts(1));
        assert_eq!(answer.status, StatusCode::OK);
    }

    #[test]
    fn a_nonce_is_accepted_once() {
        let simulation = simulation();
        let query = signed(request(), &key(), now(), "same-nonce");

        let first = simulation.answer(&query, now(), &accounts(1));
        let again = simulation.answer(&query, now(), &accounts(1));
        let resigned = simulation.answer(
            &signed(
                request(),
                &key(),
                now() + TimeDelta::seconds(1),
                "same-nonce",
            ),
            now(),
            &accounts(1),
        );

        assert_eq!(first.status, StatusCode::OK);
        assert_eq!(code(&again), "SignatureNonceUsed");
        assert_eq!(code(&resigned), "SignatureNonceUsed");
    }

    #[test]
    fn a_badly_signed_request_does_not_use_up_its_nonce() {
        let simulation = simulation();
        let wrong = AccessKey::new(SANDBOX_ACCESS_KEY_ID, "not-the-secret");
        simulation.answer(&signed(request(), &wrong, now(), "n1"), now(), &accounts(1));

        let answer =
            simulation.answer(&signed(request(), &key(), now(), "n1"), now(), &accounts(1));

        assert_eq!(answer.status, StatusCode::OK);
    }

    #[test]
    fn rows_come_twenty_to_a_page() {
        let simulation = simulation();
        let page = |number: &str, nonce: &str| {
            let request = RpcRequest::new(DESCRIBE_API_METERING, MARKET_API_VERSION)
                .parameter("pageNum", number);
            simulation.answer(&signed(request, &key(), now(), nonce), now(), &accounts(45))
        };
        let third = page("3", "p3");
        assert_eq!(third.body["Count"], 45);
        assert_eq!(third.body["PageNumber"], 3);
        assert_eq!(third.body["Result"].as_array().unwrap().len(), 5);
        assert_eq!(third.body["Result"][0]["TotalUsage"], 40);
        assert!(page("4", "p4").body["Result"]
            .as_array()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn only_the_asked_products_plan_packages_are_reported() {
        let simulation = simulation();
        let mut all = accounts(2);
        all[0].product_code = "cmapi99999999".into();
        let answer = simulation.answer(&signed(request(), &key(), now(), "n1"), now(), &all);
        assert_eq!(answer.body["Count"], 1);

        let resource = request().parameter("type", "2");
        let answer = simulation.answer(&signed(resource, &key(), now(), "n2"), now(), &all);
        assert_eq!(answer.body["Count"], 0);

        let bad = request().parameter("type", "9");
        let answer = simulation.answer(&signed(bad, &key(), now(), "n3"), now(), &all);
        assert_eq!(code(&answer), "InvalidParameter");
    }

    #[test]
    fn missing_parameters_are_named() {
        let simulation = simulation();
        let no_page = RpcRequest::new(DESCRIBE_API_METERING, MARKET_API_VERSION);
        let answer = simulation.answer(&signed(no_page, &key(), now(), "n1"), now(), &accounts(1));
        assert_eq!(code(&answer), "MissingParameter");
        assert!(answer.body["Message"].as_str().unwrap().contains("pageNum"));

        let answer = simulation.answer("Action=DescribeApiMetering", now(), &accounts(1));
        assert_eq!(code(&answer), "MissingParameter");
        assert!(answer.body["Message"]
            .as_str()
            .unwrap()
            .contains("AccessKeyId"));
    }

    #[test]
    fn another_action_or_version_is_refused() {
        let simulation = simulation();
        let other = RpcRequest::new("DescribeInstances", MARKET_API_VERSION);
        let answer = simulation.answer(&signed(other, &key(), now(), "n1"), now(), &accounts(1));
        assert_eq!(code(&answer), "InvalidAction.NotFound");
        let old = RpcRequest::new(DESCRIBE_API_METERING, "2014-05-26").parameter("pageNum", "1");
        let answer = simulation.answer(&signed(old, &key(), now(), "n2"), now(), &accounts(1));
        assert_eq!(code(&answer), "InvalidVersion");
    }
}
