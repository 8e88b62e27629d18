//! [`VendorFormat`]: a channel's vendor format, and the one place that picks the
//! format's request builder and body reader.

use std::collections::BTreeMap;
use std::fmt;

use super::body::BodyFields;
use super::params::ParamsError;
use super::template::TemplateFormat;
use super::{kapool, template};
use crate::domain::mobile::mask_mobile_numbers;
use crate::domain::VendorMethod;

/// How a channel's vendor takes a message and says it was accepted (SPEC §13).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum VendorFormat {
    /// `content` (the full text) and `mobile`; sent when `ReturnStatus` is `Success`.
    #[default]
    Kapool,
    /// The vendor's own template id and parameters; sent when a configured field of the
    /// answer holds one of the configured values.
    Template(TemplateFormat),
}

/// The message of one call, as the channel's format needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VendorMessage<'a> {
    /// The full text, signature included: what a `kapool` vendor sends as it is.
    Text(&'a str),
    /// The vendor's template id and the values of its variables: what a `template`
    /// vendor fills in itself.
    Template {
        template_id: &'a str,
        params: &'a BTreeMap<String, String>,
    },
}

/// The request fields of one call; the client adds the method, URL and AppCode.
#[derive(Clone, PartialEq, Eq)]
pub struct VendorRequest {
    /// Appended to the URL's query string, in this order.
    pub query: Vec<(String, String)>,
    /// `Some` for a POST: the form body's fields (none for an empty body, which the
    /// vendors' POST samples send with the form content type). Always `None` for a GET.
    pub form: Option<Vec<(String, String)>>,
}

/// Why a call could not be built. Nothing was sent, so nothing is charged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error(
        "the channel's vendor takes a template id and parameters (format = \"template\"), \
         not the full text"
    )]
    TextForTemplateFormat,
    #[error("the channel's vendor takes the full text (format = \"kapool\"), not a template id")]
    TemplateForKapoolFormat,
    #[error("the vendor template id is empty")]
    EmptyTemplateId,
    #[error("params_in = \"form\" needs method = \"POST\": a GET has no body")]
    FormOnGet,
    #[error("the channel sets no params_param, so the vendor cannot be given template parameters")]
    ParamsWithoutField,
    #[error(transparent)]
    Params(#[from] ParamsError),
}

impl VendorFormat {
    /// The name `[[channels]] format` gives it.
    pub fn name(&self) -> &'static str {
        match self {
            VendorFormat::Kapool => "kapool",
            VendorFormat::Template(_) => "template",
        }
    }

    /// Whether a message for this channel must name a vendor template (and cannot be
    /// sent as free text), so that a caller can refuse a send before reserving for it.
    pub fn needs_vendor_template(&self) -> bool {
        matches!(self, VendorFormat::Template(_))
    }

    /// The request fields for one message to `mobile` (the 11-digit national number).
    pub fn request(
        &self,
        method: VendorMethod,
        mobile: &str,
        message: VendorMessage<'_>,
    ) -> Result<VendorRequest, RequestError> {
        match (self, message) {
            (VendorFormat::Kapool, VendorMessage::Text(content)) => {
                Ok(kapool::request(method, mobile, content))
            }
            (VendorFormat::Kapool, VendorMessage::Template { .. }) => {
                Err(RequestError::TemplateForKapoolFormat)
            }
            (
                VendorFormat::Template(format),
                VendorMessage::Template {
                    template_id,
                    params,
                },
            ) => format.request(method, mobile, template_id, params),
            (VendorFormat::Template(_), VendorMessage::Text(_)) => {
                Err(RequestError::TextForTemplateFormat)
            }
        }
    }

    /// Reads a vendor body by this format's rule: whether it says "sent", and what
    /// tollgate records of it. Any body is accepted; one without the format's fields
    /// reads as not sent.
    pub fn read_body(&self, body: &[u8]) -> BodyFields {
        match self {
            VendorFormat::Kapool => kapool::read_body(body),
            VendorFormat::Template(format) => template::read_body(format, body),
        }
    }
}

/// By hand, so that printing a request shows no mobile number.
impl fmt::Debug for VendorRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked = |pairs: &[(String, String)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(name, value)| (name.clone(), mask_mobile_numbers(value)))
                .collect()
        };
        f.debug_struct("VendorRequest")
            .field("query", &masked(&self.query))
            .field("form", &self.form.as_deref().map(masked))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_that_does_not_fit_the_format_is_never_built() {
        let params = BTreeMap::new();
        let template = VendorMessage::Template {
            template_id: "T1",
            params: &params,
        };
        assert_eq!(
            VendorFormat::Kapool.request(VendorMethod::Post, "13800138000", template),
            Err(RequestError::TemplateForKapoolFormat)
        );
        let format = VendorFormat::Template(TemplateFormat::example());
        assert_eq!(
            format.request(
                VendorMethod::Post,
                "13800138000",
                VendorMessage::Text("【卡池】hi")
            ),
            Err(RequestError::TextForTemplateFormat)
        );
        assert!(format.needs_vendor_template());
        assert!(!VendorFormat::Kapool.needs_vendor_template());
    }

    #[test]
    fn the_default_format_is_kapool() {
        assert_eq!(VendorFormat::default(), VendorFormat::Kapool);
        assert_eq!(VendorFormat::default().name(), "kapool");
        let template = VendorFormat::Template(TemplateFormat::example());
        assert_eq!(template.name(), "template");
    }

    #[test]
    fn a_printed_request_masks_the_number() {
        let request = VendorFormat::Kapool
            .request(
                VendorMethod::Get,
                "13800138000",
                VendorMessage::Text("【卡池】hi"),
            )
            .unwrap();
        let printed = format!("{request:?}");
        assert!(!printed.contains("13800138000"), "{printed}");
        assert!(printed.contains("138****8000"), "{printed}");
    }
}
