//! Reading and writing the console's cookies: `HttpOnly`, `SameSite=Strict`, scoped to
//! `/console`, and `Secure` when the request reached tollgate's proxy over HTTPS.

use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue};
use chrono::Duration;

/// The session's cookie.
pub const SESSION: &str = "tollgate_console";
/// The sign-in form's cookie (see `session::SignInChallenge`).
pub const SIGN_IN: &str = "tollgate_console_sign_in";

/// The value of the cookie `name` the request carries, if any.
pub fn read<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

/// What a response sets: cookies to write or to remove.
#[derive(Debug, Default)]
pub struct CookieJar {
    secure: bool,
    set: Vec<HeaderValue>,
}

impl CookieJar {
    /// Cookies for a response to this request: `Secure` when a proxy in front says the
    /// browser spoke HTTPS (tollgate itself serves plain HTTP; browsers refuse to store
    /// a `Secure` cookie over it).
    pub fn for_request(headers: &HeaderMap) -> Self {
        let secure = headers
            .get("x-forwarded-proto")
            .and_then(|value| value.to_str().ok())
            .is_some_and(|proto| proto.eq_ignore_ascii_case("https"));
        Self {
            secure,
            set: Vec::new(),
        }
    }

    /// Sets `name` to `value` (which must be cookie-safe: base64url, digits, dots) for
    /// `lifetime`.
    pub fn set(mut self, name: &str, value: &str, lifetime: Duration) -> Self {
        self.push(name, value, lifetime.num_seconds().max(0));
        self
    }

    /// Tells the browser to forget `name`.
    pub fn remove(mut self, name: &str) -> Self {
        self.push(name, "", 0);
        self
    }

    fn push(&mut self, name: &str, value: &str, max_age: i64) {
        let secure = if self.secure { "; Secure" } else { "" };
        let header = format!(
            "{name}={value}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
        );
        self.set
            .push(HeaderValue::from_str(&header).expect("cookie values are ASCII"));
    }

    /// Adds the `Set-Cookie` headers to `headers`.
    pub fn write_to(self, headers: &mut HeaderMap) {
        for value in self.set {
            headers.append(SET_COOKIE, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_found_among_others_and_in_any_cookie_header() {
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("a=1; tollgate_console=v1.x"),
        );
        headers.append(
            COOKIE,
            HeaderValue::from_static("tollgate_console_sign_in=n.5"),
        );
        assert_eq!(read(&headers, SESSION), Some("v1.x"));
        assert_eq!(read(&headers, SIGN_IN), Some("n.5"));
        assert_eq!(read(&headers, "b"), None);
    }

    #[test]
    fn cookies_are_http_only_strict_and_secure_behind_https() {
        let mut request = HeaderMap::new();
        request.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let mut response = HeaderMap::new();
        CookieJar::for_request(&request)
            .set(SESSION, "v", Duration::hours(1))
            .remove(SIGN_IN)
            .write_to(&mut response);
        let set: Vec<&str> = response
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            set,
            [
                "tollgate_console=v; Path=/console; Max-Age=3600; HttpOnly; SameSite=Strict; Secure",
                "tollgate_console_sign_in=; Path=/console; Max-Age=0; HttpOnly; SameSite=Strict; Secure",
            ]
        );
    }
}
