//! What the HTTP notifiers share: a client that does not follow redirects (the webhook
//! and the robots), and posting a JSON message to a chat robot (DingTalk, WeCom, Feishu)
//! that answers `{"<code>": 0, …}` when it took it.

use std::time::Duration;

use crate::{url_origin, ConfigProblem, DeliveryError};

/// The HTTP client of the notifiers that POST (the robots and the webhook): the
/// notifier's timeout over the whole request, and no redirects. A receiver that answers
/// 3xx has not taken the message; following it would carry the body (and, for signed
/// requests, a valid signature) to wherever the `Location` points.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, ConfigProblem> {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| ConfigProblem::new("url", format!("cannot build the HTTP client: {e}")))
}

/// Where a robot's answer says whether it took the message.
#[derive(Debug, Clone, Copy)]
pub struct RobotAnswer {
    /// The status code field, tried in order (0 means taken).
    pub code_keys: &'static [&'static str],
    /// The field explaining a refusal.
    pub message_key: &'static str,
}

/// Sends `request` (a POST to the robot at `url`) and reads the robot's answer. Errors
/// name only the robot's origin: its URL holds its token.
pub async fn post_to_robot(
    request: reqwest::RequestBuilder,
    url: &str,
    answer: RobotAnswer,
) -> Result<(), DeliveryError> {
    let origin = url_origin(url);
    let response = request.send().await.map_err(|e| {
        let what = if e.is_timeout() {
            "timed out"
        } else if e.is_connect() {
            "cannot connect"
        } else {
            "request failed"
        };
        DeliveryError::new(format!("{origin}: {what}"))
    })?;
    let status = response.status();
    if !status.is_success() {
        return Err(DeliveryError::new(format!(
            "{origin} answered HTTP {status}"
        )));
    }
    let body: serde_json::Value = response
        .json()
        .await
        .map_err(|_| DeliveryError::new(format!("{origin} answered something not JSON")))?;
    let code = answer
        .code_keys
        .iter()
        .find_map(|key| body.get(*key))
        .and_then(serde_json::Value::as_i64);
    match code {
        Some(0) => Ok(()),
        code => Err(DeliveryError::new(format!(
            "{origin} refused the message: {} {} {}",
            answer.code_keys[0],
            code.map(|c| c.to_string())
                .unwrap_or_else(|| "missing".into()),
            body.get(answer.message_key)
                .and_then(|m| m.as_str())
                .unwrap_or_default()
        ))),
    }
}
