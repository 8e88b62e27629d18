//! The Market API client: `DescribeApiMetering`, signed with an AccessKey, read page by
//! page, with every refusal turned into an error that says what to fix.

use std::fmt;
use std::time::Duration;

use chrono::Utc;
use reqwest::redirect::Policy;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use url::Url;

use super::access_key::{AccessKey, MissingAccessKey};
use super::metering::{MeteringRow, PackageKind, ProductMetering};
use super::signature::{percent_encode, RpcRequest};
use crate::domain::ProductCode;
use crate::secret::Secret;

/// The Market API's version, as every request states it.
pub const MARKET_API_VERSION: &str = "2015-11-01";
/// The operation that reports what is left of purchased products.
pub const DESCRIBE_API_METERING: &str = "DescribeApiMetering";
/// How long one page may take in total (connect, send, read).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Kept below the total timeout so that an unreachable endpoint fails fast and clearly.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// A page is a few kilobytes; anything far larger is not an answer worth reading.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// A buyer has a handful of products; an answer that keeps paging past this is broken,
/// and a count read from part of it must not become a reconciliation.
const MAX_PAGES: u32 = 100;
/// The marketplace's messages are short; a longer one is cut before it reaches a log.
const MAX_MESSAGE_CHARS: usize = 300;

/// Where and as whom the client calls the Market API.
#[derive(Debug, Clone)]
pub struct MarketClientConfig {
    /// `https://market.aliyuncs.com`, or a sandbox's address.
    pub endpoint: Url,
    pub access_key: AccessKey,
    pub timeout: Duration,
}

/// Calls the Market API. Cheap to clone: clones share one connection pool. Its `Debug`
/// shows neither half of the AccessKey pair.
#[derive(Debug, Clone)]
pub struct MarketClient {
    http: reqwest::Client,
    endpoint: Url,
    access_key: AccessKey,
}

/// Why the marketplace's figures could not be had. No variant carries the AccessKey ID
/// or secret, nor a URL (whose query holds the ID and the signature).
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    #[error("cannot build the Market API HTTP client")]
    Build(#[source] reqwest::Error),
    #[error("the Market API cannot be called: {0}")]
    MissingAccessKey(#[from] MissingAccessKey),
    #[error("the marketplace refused the request signature (SignatureDoesNotMatch): the AccessKey secret is not the one of this AccessKey ID{request}")]
    WrongSecret { request: RequestId },
    #[error("the marketplace does not know this AccessKey ID (InvalidAccessKeyId.NotFound): check the AccessKey ID{request}")]
    UnknownAccessKeyId { request: RequestId },
    #[error("the marketplace refused this AccessKey ({code}): it is disabled, or its RAM user lacks the permission to call DescribeApiMetering{request}")]
    NotPermitted { code: String, request: RequestId },
    #[error("the marketplace refused the request's time stamp ({code}): check this machine's clock{request}")]
    ClockSkew { code: String, request: RequestId },
    #[error("the marketplace answered HTTP {status} {code}: {message}{request}")]
    Refused {
        status: u16,
        code: String,
        /// Scrubbed of the AccessKey ID and cut to a few hundred characters.
        message: String,
        request: RequestId,
    },
    #[error("the marketplace reported no figures for product {product_code}: is it bought by the Alibaba Cloud account of this AccessKey?")]
    ProductNotFound { product_code: ProductCode },
    #[error("the Market API could not be reached")]
    Transport(#[source] reqwest::Error),
    #[error("the Market API answered HTTP {status} with nothing readable: {detail}")]
    UnreadableAnswer { status: u16, detail: String },
    #[error("the Market API kept answering pages past {MAX_PAGES}; its count is not trusted")]
    TooManyPages,
}

impl MarketError {
    /// Whether the error concerns the request itself (the AccessKey, its permissions,
    /// the clock, the endpoint) rather than one product: asking about another product
    /// would fail the same way.
    pub fn concerns_every_product(&self) -> bool {
        match self {
            MarketError::Build(_)
            | MarketError::MissingAccessKey(_)
            | MarketError::WrongSecret { .. }
            | MarketError::UnknownAccessKeyId { .. }
            | MarketError::NotPermitted { .. }
            | MarketError::ClockSkew { .. }
            | MarketError::Transport(_) => true,
            MarketError::Refused { .. }
            | MarketError::ProductNotFound { .. }
            | MarketError::UnreadableAnswer { .. }
            | MarketError::TooManyPages => false,
        }
    }
}

/// The `RequestId` of the answer an error came from, which Alibaba's support asks for.
/// Displays as ` (RequestId …)`, or as nothing when the answer had none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestId(pub Option<String>);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(id) => write!(f, " (RequestId {id})"),
            None => Ok(()),
        }
    }
}

impl MarketClient {
    pub fn new(config: MarketClientConfig) -> Result<Self, MarketError> {
        let http = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.timeout)
            .connect_timeout(MAX_CONNECT_TIMEOUT.min(config.timeout / 2))
            // A redirect would carry the signed query, AccessKey ID included, to a host
            // the configuration does not name; the Market API never redirects.
            .redirect(Policy::none())
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| MarketError::Build(err.without_url()))?;
        Ok(Self {
            http,
            endpoint: config.endpoint,
            access_key: config.access_key,
        })
    }

    /// What the marketplace says of `product_code`: its rows over both kinds of package
    /// (see [`PackageKind::ALL`]), every page read. Fails with
    /// [`MarketError::ProductNotFound`] when no row is for that product.
    #[tracing::instrument(skip_all, fields(product_code = %product_code))]
    pub async fn describe_api_metering(
        &self,
        product_code: &ProductCode,
    ) -> Result<ProductMetering, MarketError> {
        let mut request_ids = Vec::new();
        let mut plan = Vec::new();
        let mut resource = Vec::new();
        for kind in PackageKind::ALL {
            let rows = self
                .rows_of_kind(product_code, kind, &mut request_ids)
                .await?;
            match kind {
                PackageKind::Plan => plan = rows,
                PackageKind::Resource => resource = rows,
            }
        }
        let rows = without_echoed_kind(plan, resource);
        if rows.is_empty() {
            return Err(MarketError::ProductNotFound {
                product_code: product_code.clone(),
            });
        }
        let metering = ProductMetering {
            product_code: product_code.clone(),
            rows,
            request_ids,
        };
        tracing::info!(
            rows = metering.rows.len(),
            total_quota = metering.total_quota(),
            total_usage = metering.total_usage(),
            remaining = metering.remaining(),
            confirmed = metering.confirmed(),
            "the marketplace reported the product's figures"
        );
        Ok(metering)
    }

    /// Every page of one kind of package, keeping the rows for `product_code`.
    async fn rows_of_kind(
        &self,
        product_code: &ProductCode,
        kind: PackageKind,
        request_ids: &mut Vec<String>,
    ) -> Result<Vec<MeteringRow>, MarketError> {
        let mut rows = Vec::new();
        let mut seen = 0_u64;
        for page_number in 1..=MAX_PAGES {
            let page = self.page(product_code, kind, page_number).await?;
            request_ids.extend(page.request_id);
            let on_page = page.rows.len() as u64;
            seen += on_page;
            rows.extend(
                page.rows
                    .into_iter()
                    .filter(|row| row.product_code == product_code.as_str()),
            );
            // `Count` is the number of rows over all pages. Without it, a full page
            // means there may be another.
            let more = match (page.count, page.page_size) {
                _ if on_page == 0 => false,
                (Some(count), _) => seen < count,
                (None, Some(size)) => on_page >= size,
                (None, None) => false,
            };
            if !more {
                return Ok(rows);
            }
        }
        Err(MarketError::TooManyPages)
    }

    #[tracing::instrument(
        skip_all,
        fields(kind = kind.type_parameter(), page = page_number, status = tracing::field::Empty, request_id = tracing::field::Empty)
    )]
    async fn page(
        &self,
        product_code: &ProductCode,
        kind: PackageKind,
        page_number: u32,
    ) -> Result<Page, MarketError> {
        let query = RpcRequest::new(DESCRIBE_API_METERING, MARKET_API_VERSION)
            .parameter("pageNum", page_number.to_string())
            .parameter("productCode", product_code.as_str())
            .parameter("type", kind.type_parameter())
            .signed_query(
                &self.access_key,
                Utc::now(),
                &uuid::Uuid::new_v4().to_string(),
            );
        let mut url = self.endpoint.clone();
        url.set_path("/");
        // Already encoded with only unreserved characters, `%`, `=` and `&`, so `Url`
        // keeps it byte for byte.
        url.set_query(Some(&query));

        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|err| MarketError::Transport(err.without_url()))?;
        let status = response.status().as_u16();
        tracing::Span::current().record("status", status);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| MarketError::Transport(err.without_url()))?
        {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(MarketError::UnreadableAnswer {
                    status,
                    detail: format!("the body is larger than {MAX_BODY_BYTES} bytes"),
                });
            }
            body.extend_from_slice(&chunk);
        }
        let page = read_page(status, &body, kind, &self.access_key.id);
        match &page {
            Ok(page) => {
                if let Some(id) = &page.request_id {
                    tracing::Span::current().record("request_id", id.as_str());
                }
                tracing::debug!(rows = page.rows.len(), count = page.count, "read a page");
            }
            Err(err) => tracing::warn!(error = %err, "the Market API refused the request"),
        }
        page
    }
}

/// One page of the answer, its rows already typed.
#[derive(Debug)]
struct Page {
    rows: Vec<MeteringRow>,
    count: Option<u64>,
    page_size: Option<u64>,
    request_id: Option<String>,
}

/// Reads one answer: the rows of a success, or the error a refusal means.
fn read_page(
    status: u16,
    body: &[u8],
    kind: PackageKind,
    access_key_id: &Secret,
) -> Result<Page, MarketError> {
    let answer: WireAnswer =
        serde_json::from_slice(body).map_err(|err| MarketError::UnreadableAnswer {
            status,
            detail: format!("not the Market API's JSON ({err})"),
        })?;
    let request = RequestId(answer.request_id.clone());
    if !(200..300).contains(&status) || answer.success == Some(false) {
        let code = answer.code.unwrap_or_else(|| "(no code)".to_owned());
        let message = answer.message.unwrap_or_default();
        return Err(refusal(status, code, &message, request, access_key_id));
    }
    let rows = answer
        .result
        .into_iter()
        .map(|row| row.into_row(kind))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|detail| MarketError::UnreadableAnswer { status, detail })?;
    let non_negative = |value: Option<i64>| value.and_then(|v| u64::try_from(v).ok());
    Ok(Page {
        rows,
        count: non_negative(answer.count),
        page_size: non_negative(answer.page_size).filter(|size| *size > 0),
        request_id: answer.request_id,
    })
}

/// The error an error `Code` means (Alibaba Cloud's common error codes).
fn refusal(
    status: u16,
    code: String,
    message: &str,
    request: RequestId,
    access_key_id: &Secret,
) -> MarketError {
    match code.as_str() {
        "SignatureDoesNotMatch" => MarketError::WrongSecret { request },
        "InvalidAccessKeyId.NotFound" | "InvalidAccessKeyId" => {
            MarketError::UnknownAccessKeyId { request }
        }
        c if c.starts_with("InvalidAccessKeyId")
            || c.starts_with("Forbidden")
            || c.starts_with("NoPermission") =>
        {
            MarketError::NotPermitted { code, request }
        }
        c if c.starts_with("InvalidTimeStamp") => MarketError::ClockSkew { code, request },
        _ => MarketError::Refused {
            status,
            message: scrubbed(message, access_key_id),
            code,
            request,
        },
    }
}

/// The marketplace's message with the AccessKey ID taken out. Alibaba's signature errors
/// quote the server's string to sign, which names the AccessKey ID, so that part is
/// dropped whole.
fn scrubbed(message: &str, access_key_id: &Secret) -> String {
    let mut text = message
        .split("string to sign")
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let id = access_key_id.expose();
    if !id.is_empty() {
        text = text
            .replace(id, "[redacted]")
            .replace(&percent_encode(id), "[redacted]");
    }
    if text.chars().count() > MAX_MESSAGE_CHARS {
        text = text.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
    }
    text
}

/// When the API ignores `type` it answers both kinds alike; counting both would double
/// the product. Identical, non-empty answers are taken as that, and counted once.
fn without_echoed_kind(plan: Vec<MeteringRow>, resource: Vec<MeteringRow>) -> Vec<MeteringRow> {
    let figures = |rows: &[MeteringRow]| -> Vec<_> {
        rows.iter()
            .map(|row| {
                (
                    row.product_code.clone(),
                    row.total_quota,
                    row.total_usage,
                    row.total_capacity,
                )
            })
            .collect()
    };
    if !plan.is_empty() && figures(&plan) == figures(&resource) {
        tracing::warn!(
            "the Market API gave the same rows for plan and resource packages; counted once"
        );
        return plan;
    }
    plan.into_iter().chain(resource).collect()
}

/// The answer's JSON (success and error share one shape). Numbers may come as strings
/// and rows as one object: every field is read leniently.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireAnswer {
    #[serde(default, deserialize_with = "lenient_text")]
    request_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_bool")]
    success: Option<bool>,
    #[serde(default, deserialize_with = "lenient_text")]
    code: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    message: Option<String>,
    #[serde(default, deserialize_with = "lenient_integer")]
    count: Option<i64>,
    #[serde(default, deserialize_with = "lenient_integer")]
    page_size: Option<i64>,
    #[serde(default, deserialize_with = "lenient_rows")]
    result: Vec<WireRow>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct WireRow {
    #[serde(default, deserialize_with = "lenient_text")]
    aliyun_pk: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    product_code: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    product_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_integer")]
    total_quota: Option<i64>,
    #[serde(default, deserialize_with = "lenient_integer")]
    total_usage: Option<i64>,
    #[serde(default, deserialize_with = "lenient_integer")]
    total_capacity: Option<i64>,
    #[serde(default, deserialize_with = "lenient_text")]
    unit: Option<String>,
}

impl WireRow {
    fn into_row(self, kind: PackageKind) -> Result<MeteringRow, String> {
        let missing = |field: &str| format!("a row has no {field}");
        Ok(MeteringRow {
            kind,
            aliyun_pk: self.aliyun_pk,
            product_code: self.product_code.ok_or_else(|| missing("ProductCode"))?,
            product_name: self.product_name,
            total_quota: self.total_quota.ok_or_else(|| missing("TotalQuota"))?,
            total_usage: self.total_usage.ok_or_else(|| missing("TotalUsage"))?,
            total_capacity: self.total_capacity,
            unit: self.unit,
        })
    }
}

fn lenient_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    use serde_json::Value;
    Ok(match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => Some(text),
        Some(Value::Number(number)) => Some(number.to_string()),
        Some(Value::Bool(flag)) => Some(flag.to_string()),
        Some(other) => return Err(D::Error::custom(format!("{other} is not text"))),
    })
}

fn lenient_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<bool>, D::Error> {
    use serde_json::Value;
    Ok(match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => None,
        Some(Value::Bool(flag)) => Some(flag),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => Some(true),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => Some(false),
        Some(other) => return Err(D::Error::custom(format!("{other} is not true or false"))),
    })
}

/// A whole number written as a JSON number (`98`, `98.0`) or as text (`"98"`, `"98.0"`).
fn lenient_integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    use serde_json::Value;
    // 2^53: beyond it an f64 no longer holds every whole number exactly.
    let whole =
        |f: f64| (f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0).then_some(f as i64);
    let not_whole = |shown: String| D::Error::custom(format!("{shown} is not a whole number"));
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number
            .as_i64()
            .or_else(|| number.as_f64().and_then(whole))
            .map(Some)
            .ok_or_else(|| not_whole(number.to_string())),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => {
            let trimmed = text.trim();
            trimmed
                .parse::<i64>()
                .ok()
                .or_else(|| trimmed.parse::<f64>().ok().and_then(whole))
                .map(Some)
                .ok_or_else(|| not_whole(format!("{text:?}")))
        }
        Some(other) => Err(not_whole(other.to_string())),
    }
}

/// `Result` as a list, one object, or nothing.
fn lenient_rows<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<WireRow>, D::Error> {
    use serde_json::Value;
    let rows = match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(rows)) => rows,
        Some(row @ Value::Object(_)) => vec![row],
        Some(other) => return Err(D::Error::custom(format!("Result {other} is not a list"))),
    };
    rows.into_iter()
        .map(|row| serde_json::from_value(row).map_err(D::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marketplace::metering::Reading;
    use crate::marketplace::sandbox::{SANDBOX_ACCESS_KEY_ID, SANDBOX_ACCESS_KEY_SECRET};
    use crate::upstream::sandbox::{self, SandboxAccount, SandboxConfig, SandboxHandle};
    use tokio::net::TcpListener;

    const KEY_ID: &str = "LTAI5tExampleKeyId";
    const PRODUCT: &str = "cmapi00037415";

    fn product() -> ProductCode {
        ProductCode::parse(PRODUCT).unwrap()
    }

    fn read(status: u16, body: &str) -> Result<Page, MarketError> {
        read_page(
            status,
            body.as_bytes(),
            PackageKind::Plan,
            &Secret::new(KEY_ID),
        )
    }

    async fn sandbox_with(accounts: Vec<SandboxAccount>) -> SandboxHandle {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        sandbox::spawn(
            listener,
            SandboxConfig {
                appcodes: accounts,
                latency: Duration::ZERO,
                ..SandboxConfig::default()
            },
        )
        .await
    }

    fn client_for(endpoint: &str, key: AccessKey) -> MarketClient {
        MarketClient::new(MarketClientConfig {
            endpoint: Url::parse(endpoint).unwrap(),
            access_key: key,
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    fn sandbox_key() -> AccessKey {
        AccessKey::new(SANDBOX_ACCESS_KEY_ID, SANDBOX_ACCESS_KEY_SECRET)
    }

    #[test]
    fn the_reference_pages_sample_answer_is_read() {
        // The JSON sample of help.aliyun.com/document_detail/447490, as published.
        let page = read(
            200,
            r#"{
              "RequestId" : "62FC432C55A1A63534A6CB34",
              "Code" : "200",
              "Result" : [ {
                "ProductCode" : "cmapi0004****",
                "ProductName" : "身份证实名认证-身份证实名",
                "TotalQuota" : 98,
                "TotalUsage" : 220,
                "TotalCapacity" : 318,
                "Unit" : "次"
              } ],
              "PageNumber" : 1,
              "Success" : true,
              "Count" : 100,
              "PageSize" : 20,
              "Message" : "\"成功\"",
              "Version" : "1.0",
              "Fatal" : false
            }"#,
        )
        .unwrap();

        assert_eq!(page.request_id.as_deref(), Some("62FC432C55A1A63534A6CB34"));
        assert_eq!((page.count, page.page_size), (Some(100), Some(20)));
        let row = &page.rows[0];
        assert_eq!(row.product_code, "cmapi0004****");
        assert_eq!(
            row.product_name.as_deref(),
            Some("身份证实名认证-身份证实名")
        );
        assert_eq!(
            (row.total_quota, row.total_usage, row.total_capacity),
            (98, 220, Some(318))
        );
        assert_eq!(row.unit.as_deref(), Some("次"));
        assert_eq!(row.remaining().units, 98);
        assert_eq!(row.remaining().reading, Reading::QuotaIsRemaining);
    }

    #[test]
    fn numbers_written_as_text_and_a_single_row_object_are_read() {
        let page = read(
            200,
            r#"{"RequestId":"R1","Success":"true","Count":"1","PageSize":"20",
                "Result":{"AliyunPk":1234567890123456,"ProductCode":"cmapi00037415",
                          "TotalQuota":"1000","TotalUsage":"12.0","Unit":"次"}}"#,
        )
        .unwrap();
        let row = &page.rows[0];
        assert_eq!(row.aliyun_pk.as_deref(), Some("1234567890123456"));
        assert_eq!((row.total_quota, row.total_usage), (1000, 12));
        assert_eq!(row.total_capacity, None);
        assert_eq!(page.count, Some(1));
    }

    #[test]
    fn a_success_without_rows_is_an_empty_page() {
        let page = read(200, r#"{"RequestId":"R","Success":true,"Result":null}"#).unwrap();
        assert!(page.rows.is_empty());
    }

    #[test]
    fn rows_without_their_figures_or_fractional_counts_are_unreadable() {
        for body in [
            r#"{"Success":true,"Result":[{"ProductCode":"cmapi1","TotalUsage":1}]}"#,
            r#"{"Success":true,"Result":[{"ProductCode":"cmapi1","TotalQuota":"lots","TotalUsage":1}]}"#,
            r#"{"Success":true,"Result":[{"ProductCode":"cmapi1","TotalQuota":1.5,"TotalUsage":1}]}"#,
            "<html>bad gateway</html>",
        ] {
            let err = read(200, body).unwrap_err();
            assert!(
                matches!(err, MarketError::UnreadableAnswer { status: 200, .. }),
                "{body}: {err:?}"
            );
        }
    }

    #[test]
    fn a_wrong_secret_says_so_without_the_servers_string_to_sign() {
        let body = format!(
            r#"{{"RequestId":"E1","HostId":"market.aliyuncs.com","Code":"SignatureDoesNotMatch",
                "Message":"Specified signature is not matched with our calculation. server string to sign is:GET&%2F&AccessKeyId%3D{KEY_ID}%26Action%3DDescribeApiMetering"}}"#
        );
        let err = read(400, &body).unwrap_err();
        assert!(matches!(err, MarketError::WrongSecret { .. }), "{err:?}");
        let shown = format!("{err} {err:?}");
        assert!(shown.contains("AccessKey secret"), "{shown}");
        assert!(shown.contains("RequestId E1"), "{shown}");
        assert!(!shown.contains(KEY_ID), "{shown}");
    }

    #[test]
    fn error_codes_map_to_what_to_fix() {
        type Expected = fn(&MarketError) -> bool;
        let cases: [(u16, &str, Expected); 5] = [
            (404, "InvalidAccessKeyId.NotFound", |e| {
                matches!(e, MarketError::UnknownAccessKeyId { .. })
            }),
            (
                403,
                "Forbidden.RAM",
                |e| matches!(e, MarketError::NotPermitted { code, .. } if code == "Forbidden.RAM"),
            ),
            (400, "InvalidAccessKeyId.Inactive", |e| {
                matches!(e, MarketError::NotPermitted { .. })
            }),
            (400, "InvalidTimeStamp.Expired", |e| {
                matches!(e, MarketError::ClockSkew { .. })
            }),
            (
                400,
                "SignatureNonceUsed",
                |e| matches!(e, MarketError::Refused { status: 400, code, .. } if code == "SignatureNonceUsed"),
            ),
        ];
        for (status, code, expected) in cases {
            let body = format!(r#"{{"RequestId":"E","Code":"{code}","Message":"m"}}"#);
            let err = read(status, &body).unwrap_err();
            assert!(expected(&err), "{code}: {err:?}");
        }
    }

    #[test]
    fn a_refusal_inside_a_200_is_still_a_refusal_and_its_message_is_scrubbed() {
        let body = format!(
            r#"{{"RequestId":"E2","Success":false,"Code":"InternalError","Message":"key {KEY_ID} {}"}}"#,
            "x".repeat(1000)
        );
        let MarketError::Refused {
            status,
            code,
            message,
            ..
        } = read(200, &body).unwrap_err()
        else {
            panic!("expected a refusal");
        };
        assert_eq!((status, code.as_str()), (200, "InternalError"));
        assert!(message.starts_with("key [redacted] x"), "{message}");
        assert!(message.chars().count() <= MAX_MESSAGE_CHARS + 1);
    }

    #[test]
    fn an_api_that_ignores_the_type_is_counted_once() {
        let row = |quota| MeteringRow {
            kind: PackageKind::Plan,
            aliyun_pk: None,
            product_code: PRODUCT.into(),
            product_name: None,
            total_quota: quota,
            total_usage: 1,
            total_capacity: None,
            unit: None,
        };
        let resource = |quota| MeteringRow {
            kind: PackageKind::Resource,
            ..row(quota)
        };
        assert_eq!(
            without_echoed_kind(vec![row(5)], vec![resource(5)]),
            vec![row(5)]
        );
        assert_eq!(
            without_echoed_kind(vec![row(5)], vec![resource(7)]).len(),
            2
        );
        assert_eq!(without_echoed_kind(vec![], vec![resource(7)]).len(), 1);
    }

    #[test]
    fn the_client_prints_neither_half_of_its_access_key() {
        let client = client_for(
            "https://market.aliyuncs.com",
            AccessKey::new(KEY_ID, "a-secret-value"),
        );
        let shown = format!("{client:?}");
        assert!(!shown.contains(KEY_ID), "{shown}");
        assert!(!shown.contains("a-secret-value"), "{shown}");
    }

    #[tokio::test]
    async fn every_page_is_read_and_only_the_products_rows_are_kept() {
        // 25 packages of the product and one of another: two pages of 20 at the sandbox.
        let mut accounts: Vec<SandboxAccount> = (0..25)
            .map(|i| SandboxAccount {
                appcode: Secret::new(format!("appcode-{i}")),
                quota: 10 + i,
                product_code: Some(PRODUCT.into()),
            })
            .collect();
        accounts.insert(
            3,
            SandboxAccount {
                appcode: Secret::new("other"),
                quota: 1_000,
                product_code: Some("cmapi99999999".into()),
            },
        );
        let sandbox = sandbox_with(accounts).await;
        let client = client_for(&sandbox.url(""), sandbox_key());

        let metering = client.describe_api_metering(&product()).await.unwrap();

        assert_eq!(metering.rows.len(), 25);
        assert!(metering.rows.iter().all(|row| row.product_code == PRODUCT));
        assert_eq!(metering.remaining(), (10..35).sum::<u64>());
        assert!(metering.confirmed());
        // Plan packages: pages 1 and 2; resource packages: page 1.
        assert_eq!(metering.request_ids.len(), 3);
    }

    #[tokio::test]
    async fn a_product_the_marketplace_does_not_report_is_an_error() {
        let sandbox = sandbox_with(vec![SandboxAccount {
            appcode: Secret::new("a"),
            quota: 5,
            product_code: Some("cmapi99999999".into()),
        }])
        .await;
        let client = client_for(&sandbox.url(""), sandbox_key());

        let err = client.describe_api_metering(&product()).await.unwrap_err();

        assert!(
            matches!(&err, MarketError::ProductNotFound { product_code } if product_code.as_str() == PRODUCT),
            "{err:?}"
        );
        assert!(err.to_string().contains(PRODUCT));
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_names_no_secret_and_no_url() {
        // A port that was just free: nothing listens there any more.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = client_for(
            &format!("http://{addr}"),
            AccessKey::new(KEY_ID, "a-secret-value"),
        );

        let err = client.describe_api_metering(&product()).await.unwrap_err();

        assert!(matches!(err, MarketError::Transport(_)), "{err:?}");
        let mut shown = format!("{err:?}");
        let mut source: Option<&dyn std::error::Error> = Some(&err);
        while let Some(cause) = source {
            shown.push_str(&cause.to_string());
            source = cause.source();
        }
        for hidden in [KEY_ID, "a-secret-value", "Signature", "AccessKeyId"] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
    }
}
