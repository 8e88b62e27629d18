//! Alibaba Cloud's RPC request signature, version 1.0 (HMAC-SHA1), which the Market API
//! checks on every request.
//!
//! As Alibaba documents it ("Request signatures" in the ECS API reference; the Market API
//! uses the same RPC scheme):
//! 1. Every parameter except `Signature`, sorted by name, with names and values
//!    percent-encoded by [`percent_encode`] and joined as `name=value` with `&`: the
//!    canonicalized query.
//! 2. `StringToSign = "GET" + "&" + percentEncode("/") + "&" + percentEncode(canonicalized
//!    query)`, i.e. it starts `GET&%2F&`.
//! 3. `Signature = base64(HMAC-SHA1(key = AccessKeySecret + "&", StringToSign))`, sent as
//!    one more (percent-encoded) parameter.
//!
//! The sandbox verifies requests with these same functions, so a mistake here would still
//! pass a round trip through it. The unit test that reproduces Alibaba's own worked
//! example is what pins the algorithm to the real one.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use hmac::{Hmac, Mac};
use sha1::Sha1;

use super::access_key::AccessKey;
use crate::secret::Secret;

/// The `SignatureMethod` common parameter.
pub const SIGNATURE_METHOD: &str = "HMAC-SHA1";
/// The `SignatureVersion` common parameter.
pub const SIGNATURE_VERSION: &str = "1.0";
/// `Timestamp` is UTC to the second, e.g. `2016-02-23T12:46:24Z`.
const TIMESTAMP_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";

type HmacSha1 = Hmac<Sha1>;

/// One RPC-style request before it is signed: its action, API version and own parameters.
#[derive(Debug, Clone)]
pub struct RpcRequest {
    action: String,
    version: String,
    parameters: Vec<(String, String)>,
}

impl RpcRequest {
    pub fn new(action: &str, version: &str) -> Self {
        Self {
            action: action.to_owned(),
            version: version.to_owned(),
            parameters: Vec::new(),
        }
    }

    /// Adds an operation parameter such as `pageNum`.
    pub fn parameter(mut self, name: &str, value: impl Into<String>) -> Self {
        self.parameters.push((name.to_owned(), value.into()));
        self
    }

    /// The query string to send: the operation's parameters and the common ones
    /// (`Format=JSON`, `Version`, `AccessKeyId`, `Action`, `SignatureMethod`,
    /// `SignatureVersion`, `SignatureNonce`, `Timestamp`), each percent-encoded, then
    /// `Signature`. `nonce` must never repeat: the API refuses a reused one.
    pub fn signed_query(&self, key: &AccessKey, timestamp: DateTime<Utc>, nonce: &str) -> String {
        let timestamp = format_timestamp(timestamp);
        let mut parameters: Vec<(&str, &str)> = vec![
            ("Format", "JSON"),
            ("Version", &self.version),
            ("AccessKeyId", key.id.expose()),
            ("Action", &self.action),
            ("SignatureMethod", SIGNATURE_METHOD),
            ("SignatureVersion", SIGNATURE_VERSION),
            ("SignatureNonce", nonce),
            ("Timestamp", &timestamp),
        ];
        parameters.extend(
            self.parameters
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        );
        let canonical = canonicalized_query(parameters.iter().copied());
        let signature = sign(&key.secret, &string_to_sign("GET", &canonical));
        format!("{canonical}&Signature={}", percent_encode(&signature))
    }
}

/// Percent-encoding as Alibaba defines it for signatures: RFC 3986's unreserved
/// characters (`A-Z a-z 0-9 - _ . ~`) stay as they are, every other UTF-8 byte becomes
/// `%XY` with upper-case hex. So a space is `%20` (never `+`), `*` is `%2A`, and `~` is
/// kept: exactly where `application/x-www-form-urlencoded` differs.
pub fn percent_encode(text: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if is_unreserved(byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push('%');
            encoded.push(char::from(HEX[usize::from(byte >> 4)]));
            encoded.push(char::from(HEX[usize::from(byte & 0x0F)]));
        }
    }
    encoded
}

/// The inverse of [`percent_encode`]: `%XY` escapes (either case of hex) become bytes,
/// everything else is kept. `None` for a broken escape or bytes that are not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

/// Whether RFC 3986 leaves `byte` unencoded.
pub fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~')
}

/// The parameters (decoded names and values, `Signature` left out) sorted by name and
/// encoded: `AccessKeyId=testid&Action=DescribeRegions&…`.
pub fn canonicalized_query<'a>(parameters: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut parameters: Vec<(&str, &str)> = parameters.into_iter().collect();
    // Alibaba's samples sort the names as Java strings, which for the ASCII names of the
    // API is byte order: upper case before lower case (`Version` before `pageNum`).
    parameters.sort_unstable();
    parameters
        .iter()
        .map(|(name, value)| format!("{}={}", percent_encode(name), percent_encode(value)))
        .collect::<Vec<_>>()
        .join("&")
}

/// `GET&%2F&` followed by the canonicalized query, itself percent-encoded once more.
pub fn string_to_sign(http_method: &str, canonicalized_query: &str) -> String {
    format!(
        "{http_method}&{}&{}",
        percent_encode("/"),
        percent_encode(canonicalized_query)
    )
}

/// `base64(HMAC-SHA1(secret + "&", string_to_sign))`.
pub fn sign(secret: &Secret, string_to_sign: &str) -> String {
    let mut mac = hmac_for(secret);
    mac.update(string_to_sign.as_bytes());
    BASE64.encode(mac.finalize().into_bytes())
}

/// Whether `signature` (base64, as sent) is the one `secret` gives `string_to_sign`. The
/// comparison takes the same time wherever the first difference is.
pub fn verify(secret: &Secret, string_to_sign: &str, signature: &str) -> bool {
    let Ok(expected) = BASE64.decode(signature) else {
        return false;
    };
    let mut mac = hmac_for(secret);
    mac.update(string_to_sign.as_bytes());
    mac.verify_slice(&expected).is_ok()
}

/// `2016-02-23T12:46:24Z`.
pub fn format_timestamp(at: DateTime<Utc>) -> String {
    at.format(TIMESTAMP_FORMAT).to_string()
}

/// Reads a `Timestamp` parameter; `None` unless it has exactly the documented shape.
pub fn parse_timestamp(text: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(text, TIMESTAMP_FORMAT)
        .ok()
        .filter(|parsed| format_timestamp(parsed.and_utc()) == text)
        .map(|parsed| parsed.and_utc())
}

fn hmac_for(secret: &Secret) -> HmacSha1 {
    // The key is the AccessKey secret with an `&` appended (where OAuth 1.0 would put
    // a token secret, which this scheme does not have).
    let key = format!("{}&", secret.expose());
    HmacSha1::new_from_slice(key.as_bytes()).expect("HMAC takes a key of any length")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Alibaba's worked example, from "Request signatures", Example 1, in the ECS API
    /// reference (repository AlibabaCloudDocs/ecs, file `intl.en-US/API Reference/Getting
    /// started/Request signatures.md`): DescribeRegions with AccessKeyId `testid` and
    /// AccessKeySecret `testsecret`.
    const DOCUMENTED_PARAMETERS: [(&str, &str); 8] = [
        ("Timestamp", "2016-02-23T12:46:24Z"),
        ("Format", "XML"),
        ("AccessKeyId", "testid"),
        ("Action", "DescribeRegions"),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
        ("Version", "2014-05-26"),
        ("SignatureVersion", "1.0"),
    ];
    /// The page's step 2, verbatim.
    const DOCUMENTED_STRING_TO_SIGN: &str = "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26";
    /// The page's step 3: "The calculated signature is `OLeaidS1JvxuMvnyHOwuJ+uX5qY=`."
    const DOCUMENTED_SIGNATURE: &str = "OLeaidS1JvxuMvnyHOwuJ+uX5qY=";

    #[test]
    fn the_documented_describe_regions_example_is_reproduced_exactly() {
        let canonical = canonicalized_query(DOCUMENTED_PARAMETERS);
        let to_sign = string_to_sign("GET", &canonical);

        assert_eq!(to_sign, DOCUMENTED_STRING_TO_SIGN);
        assert_eq!(
            sign(&Secret::new("testsecret"), &to_sign),
            DOCUMENTED_SIGNATURE
        );
        // Step 4 of the page: the signature as it travels in the URL.
        assert_eq!(
            percent_encode(DOCUMENTED_SIGNATURE),
            "OLeaidS1JvxuMvnyHOwuJ%2BuX5qY%3D"
        );
    }

    #[test]
    fn the_older_edition_of_the_example_is_reproduced_too() {
        // The page's earlier edition (quoted on Alibaba's developer forum,
        // developer.aliyun.com/ask/210168, and in several product references) spelt the
        // parameter `TimeStamp`; it sorts after `SignatureVersion` all the same and signs
        // to `CT9X0VtwR86fNWSnsc6v8YGOjuE=`.
        let parameters = DOCUMENTED_PARAMETERS.map(|(name, value)| match name {
            "Timestamp" => ("TimeStamp", value),
            _ => (name, value),
        });
        let to_sign = string_to_sign("GET", &canonicalized_query(parameters));
        assert_eq!(
            sign(&Secret::new("testsecret"), &to_sign),
            "CT9X0VtwR86fNWSnsc6v8YGOjuE="
        );
    }

    #[test]
    fn a_signature_verifies_only_with_its_own_secret_and_text() {
        let secret = Secret::new("testsecret");
        assert!(verify(
            &secret,
            DOCUMENTED_STRING_TO_SIGN,
            DOCUMENTED_SIGNATURE
        ));
        assert!(!verify(
            &Secret::new("testsecreT"),
            DOCUMENTED_STRING_TO_SIGN,
            DOCUMENTED_SIGNATURE
        ));
        assert!(!verify(
            &secret,
            &DOCUMENTED_STRING_TO_SIGN.replace("testid", "testid2"),
            DOCUMENTED_SIGNATURE
        ));
        assert!(!verify(&secret, DOCUMENTED_STRING_TO_SIGN, "not base64!"));
    }

    #[test]
    fn a_signed_query_carries_the_common_parameters_and_verifies() {
        let key = AccessKey::new("testid", "testsecret");
        let at = parse_timestamp("2016-02-23T12:46:24Z").unwrap();
        let query = RpcRequest::new("DescribeApiMetering", "2015-11-01")
            .parameter("pageNum", "1")
            .parameter("productCode", "cmapi00037415")
            .signed_query(&key, at, "nonce 1*~");

        let pairs: Vec<(String, String)> = query
            .split('&')
            .map(|pair| {
                let (name, value) = pair.split_once('=').unwrap();
                (
                    percent_decode(name).unwrap(),
                    percent_decode(value).unwrap(),
                )
            })
            .collect();
        let names: Vec<&str> = pairs.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            [
                "AccessKeyId",
                "Action",
                "Format",
                "SignatureMethod",
                "SignatureNonce",
                "SignatureVersion",
                "Timestamp",
                "Version",
                "pageNum",
                "productCode",
                "Signature"
            ]
        );
        assert!(query.contains("SignatureNonce=nonce%201%2A~"), "{query}");
        assert!(
            query.contains("Timestamp=2016-02-23T12%3A46%3A24Z"),
            "{query}"
        );
        assert!(query.contains("Format=JSON"), "{query}");
        let (signature, rest) = pairs.split_last().unwrap();
        let canonical = canonicalized_query(rest.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        assert!(verify(
            &key.secret,
            &string_to_sign("GET", &canonical),
            &signature.1
        ));
    }

    #[test]
    fn encoding_follows_alibabas_rules_where_form_encoding_differs() {
        assert_eq!(percent_encode("a b"), "a%20b");
        assert_eq!(percent_encode("a*b"), "a%2Ab");
        assert_eq!(percent_encode("a~b"), "a~b");
        assert_eq!(percent_encode("a+b=c&d/e:f"), "a%2Bb%3Dc%26d%2Fe%3Af");
        assert_eq!(percent_encode("卡"), "%E5%8D%A1");
        assert_eq!(percent_encode("\""), "%22");
    }

    #[test]
    fn timestamps_have_exactly_the_documented_shape() {
        let at = parse_timestamp("2016-02-23T12:46:24Z").unwrap();
        assert_eq!(format_timestamp(at), "2016-02-23T12:46:24Z");
        for bad in [
            "2016-02-23T12:46:24",
            "2016-02-23 12:46:24Z",
            "2016-02-23T12:46:24.5Z",
            "2016-02-23T12:46:24+08:00",
            "2016-2-23T12:46:24Z",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad}");
        }
    }

    #[test]
    fn broken_escapes_do_not_decode() {
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%FF"), None, "not UTF-8");
        assert_eq!(percent_decode("%e5%8d%a1").as_deref(), Some("卡"));
    }

    proptest! {
        #[test]
        fn encoding_round_trips(text in any::<String>()) {
            prop_assert_eq!(percent_decode(&percent_encode(&text)), Some(text));
        }

        #[test]
        fn only_unreserved_characters_are_left_unencoded(text in any::<String>()) {
            let encoded = percent_encode(&text);
            let bytes = encoded.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'%' {
                    let hex = &encoded[i + 1..i + 3];
                    prop_assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)), "{}", encoded);
                    // Nothing unreserved hides behind an escape.
                    prop_assert!(!is_unreserved(u8::from_str_radix(hex, 16).unwrap()), "{}", encoded);
                    i += 3;
                } else {
                    prop_assert!(is_unreserved(bytes[i]), "{}", encoded);
                    i += 1;
                }
            }
        }

        #[test]
        fn unreserved_text_is_left_as_it_is(text in "[A-Za-z0-9._~-]*") {
            prop_assert_eq!(percent_encode(&text), text);
        }
    }
}
