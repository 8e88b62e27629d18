//! The content rules for one send: the final text for the vendor and what it costs (SPEC §3).
//!
//! `rate_message` is the single place where a channel's kind decides what a message may
//! say and how many units it is rated at. It is pure (the clock is passed in), so the
//! HTTP handler, the drop-in proxy and the CLI all refuse and rate a message identically,
//! before any unit is reserved or the vendor is called.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::domain::sms::{rate_sms, signature_of, sms_length, SmsError};
use crate::domain::template::{RenderError, TemplateBody};
use crate::domain::voice::{VoiceCode, VoiceCodeError, VOICE_NOTICE_MAX_LEN};
use crate::domain::window::SendingWindow;
use crate::domain::{ChannelKind, SendClass, Units};

/// The unsubscribe text a marketing SMS must end with unless the channel configures another.
pub const DEFAULT_UNSUBSCRIBE_SUFFIX: &str = "退订回N";

/// A channel's content rules, built from its configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentRules {
    pub kind: ChannelKind,
    /// Whether the marketing rules apply: the sending window and, for SMS, the
    /// unsubscribe suffix. On for a marketing channel, and for every `bulk` send
    /// (SPEC §11; see [`ContentRules::for_class`]).
    pub marketing: bool,
    /// The channel's `【…】` signature, added to SMS texts that carry none of their own.
    pub signature: Option<String>,
    /// What a marketing SMS must end with; ignored unless `marketing`.
    pub unsubscribe_suffix: String,
    /// When marketing sends may be sent; ignored unless `marketing`.
    pub sending_window: SendingWindow,
    /// The timezone the sending window is read in.
    pub timezone: Tz,
}

impl ContentRules {
    /// The SPEC defaults for a kind: no channel signature, the `退订回N` suffix and the
    /// 09:00-20:00 window.
    pub fn with_defaults(kind: ChannelKind, timezone: Tz) -> ContentRules {
        ContentRules {
            kind,
            marketing: kind == ChannelKind::SmsMarketing,
            signature: None,
            unsubscribe_suffix: DEFAULT_UNSUBSCRIBE_SUFFIX.to_owned(),
            sending_window: SendingWindow::default_marketing(),
            timezone,
        }
    }

    /// The rules for a send of `class`: a `bulk` send is marketing whatever its
    /// channel's kind.
    pub fn for_class(&self, class: SendClass) -> std::borrow::Cow<'_, ContentRules> {
        if class == SendClass::Bulk && !self.marketing {
            std::borrow::Cow::Owned(ContentRules {
                marketing: true,
                ..self.clone()
            })
        } else {
            std::borrow::Cow::Borrowed(self)
        }
    }
}

/// What the client asked to send: a configured template with its parameters, or text.
#[derive(Debug, Clone, Copy)]
pub enum MessageBody<'a> {
    Template {
        body: &'a TemplateBody,
        params: &'a BTreeMap<String, String>,
    },
    Text(&'a str),
}

/// A message that passed its channel's rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RatedMessage {
    /// Exactly what goes in the vendor's `content` parameter.
    pub text: String,
    /// What the send costs: SMS segments, or one voice call.
    pub units: Units,
}

/// Why a message breaks its channel's content rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("the message is empty")]
    Empty,
    #[error(
        "the message is {len} characters long (signature included; emoji count 2) and the \
         maximum is {max}"
    )]
    TooLong { len: usize, max: usize },
    #[error(
        "an SMS must carry a signature such as 【name】 at its start or end, and this channel \
         has no signature configured to add"
    )]
    MissingSignature,
    #[error("a marketing SMS must end with the unsubscribe text {suffix:?}")]
    MissingUnsubscribeSuffix { suffix: String },
    #[error("a voice verification code is 4 to 6 ASCII digits (0-9) and nothing else")]
    InvalidVoiceCode,
    #[error("marketing SMS may only be sent between {window} ({timezone} time); try again inside that window")]
    OutsideSendingWindow { window: String, timezone: String },
}

impl ContentError {
    /// The SPEC §5 error code.
    pub fn code(&self) -> &'static str {
        match self {
            ContentError::Render(error) => error.code(),
            ContentError::Empty => "content_empty",
            ContentError::TooLong { .. } => "content_too_long",
            ContentError::MissingSignature => "missing_signature",
            ContentError::MissingUnsubscribeSuffix { .. } => "missing_unsubscribe_suffix",
            ContentError::InvalidVoiceCode => "invalid_voice_code",
            ContentError::OutsideSendingWindow { .. } => "outside_sending_window",
        }
    }
}

impl From<SmsError> for ContentError {
    fn from(error: SmsError) -> Self {
        match error {
            SmsError::Empty => ContentError::Empty,
            SmsError::TooLong { len, max } => ContentError::TooLong { len, max },
        }
    }
}

impl From<VoiceCodeError> for ContentError {
    fn from(_: VoiceCodeError) -> Self {
        ContentError::InvalidVoiceCode
    }
}

/// Applies the channel's rules to one message and rates it.
///
/// The order is part of the contract: a marketing send outside its window is refused
/// with `outside_sending_window` whatever it says, so a client retrying later is not sent
/// chasing content errors first; then the template is rendered; then the content rules of
/// the kind apply. Leading and trailing whitespace of SMS and voice notice texts is
/// dropped, because it would only add billed length and hide where a signature sits.
pub fn rate_message(
    rules: &ContentRules,
    body: MessageBody<'_>,
    now: DateTime<Utc>,
) -> Result<RatedMessage, ContentError> {
    if rules.marketing && !rules.sending_window.contains(now, rules.timezone) {
        return Err(ContentError::OutsideSendingWindow {
            window: rules.sending_window.to_string(),
            timezone: rules.timezone.name().to_owned(),
        });
    }
    let text = match body {
        MessageBody::Template { body, params } => body.render(params)?,
        MessageBody::Text(text) => text.to_owned(),
    };
    if text.trim().is_empty() {
        return Err(ContentError::Empty);
    }
    match rules.kind {
        ChannelKind::SmsCode | ChannelKind::SmsNotice | ChannelKind::SmsMarketing => {
            rate_sms_message(rules, text.trim())
        }
        ChannelKind::VoiceCode => {
            // A voice code is taken as given, untrimmed: " 1234" is a client bug to report,
            // not to paper over.
            let code = VoiceCode::parse(&text)?;
            Ok(RatedMessage {
                text: code.as_str().to_owned(),
                units: Units::ONE,
            })
        }
        ChannelKind::VoiceNotice => {
            let text = text.trim();
            let len = sms_length(text);
            if len > VOICE_NOTICE_MAX_LEN {
                return Err(ContentError::TooLong {
                    len,
                    max: VOICE_NOTICE_MAX_LEN,
                });
            }
            Ok(RatedMessage {
                text: text.to_owned(),
                units: Units::ONE,
            })
        }
    }
}

/// The SMS rules: a signature (the text's own or the channel's), the unsubscribe suffix
/// for marketing, then segment rating of the full text.
fn rate_sms_message(rules: &ContentRules, text: &str) -> Result<RatedMessage, ContentError> {
    let text = match (signature_of(text), &rules.signature) {
        (Some(_), _) => text.to_owned(),
        (None, Some(channel_signature)) => format!("{channel_signature}{text}"),
        (None, None) => return Err(ContentError::MissingSignature),
    };
    // Checked again because a misconfigured channel signature (say, without its 【】)
    // must not slip an unsigned text through.
    let Some(signature) = signature_of(&text) else {
        return Err(ContentError::MissingSignature);
    };
    let without_signature = text
        .strip_prefix(signature)
        .or_else(|| text.strip_suffix(signature))
        .unwrap_or(&text);
    if without_signature.trim().is_empty() {
        // A signature alone says nothing to the recipient.
        return Err(ContentError::Empty);
    }
    if rules.marketing && !text.ends_with(&rules.unsubscribe_suffix) {
        return Err(ContentError::MissingUnsubscribeSuffix {
            suffix: rules.unsubscribe_suffix.clone(),
        });
    }
    let units = rate_sms(&text)?;
    Ok(RatedMessage { text, units })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    const SHANGHAI: Tz = chrono_tz::Asia::Shanghai;

    /// 10:00 in Shanghai: inside the default marketing window.
    fn office_hours() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 14, 2, 0, 0).unwrap()
    }

    /// 23:00 in Shanghai: outside the default marketing window.
    fn late_evening() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 3, 14, 15, 0, 0).unwrap()
    }

    fn rules(kind: ChannelKind) -> ContentRules {
        ContentRules {
            signature: Some("【卡池】".to_owned()),
            ..ContentRules::with_defaults(kind, SHANGHAI)
        }
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    fn rate_text(rules: &ContentRules, text: &str) -> Result<RatedMessage, ContentError> {
        rate_message(rules, MessageBody::Text(text), office_hours())
    }

    #[test]
    fn a_signed_code_template_renders_to_one_unit() {
        let template = TemplateBody::parse("【卡池】你的验证码是：#code#，3分钟内有效！").unwrap();
        let given = params(&[("code", "482913")]);
        let rated = rate_message(
            &rules(ChannelKind::SmsCode),
            MessageBody::Template {
                body: &template,
                params: &given,
            },
            office_hours(),
        )
        .unwrap();
        assert_eq!(rated.text, "【卡池】你的验证码是：482913，3分钟内有效！");
        assert_eq!(rated.units, Units::ONE);
    }

    #[test]
    fn the_channel_signature_is_added_to_an_unsigned_text() {
        let rated = rate_text(&rules(ChannelKind::SmsNotice), "您的订单已发货").unwrap();
        assert_eq!(rated.text, "【卡池】您的订单已发货");
    }

    #[test]
    fn a_text_with_its_own_signature_keeps_it() {
        let leading = rate_text(&rules(ChannelKind::SmsNotice), "【商城】您的订单已发货").unwrap();
        assert_eq!(leading.text, "【商城】您的订单已发货");
        let trailing = rate_text(&rules(ChannelKind::SmsNotice), "您的订单已发货【商城】").unwrap();
        assert_eq!(trailing.text, "您的订单已发货【商城】");
    }

    #[test]
    fn surrounding_whitespace_is_dropped_before_rating() {
        let rated = rate_text(&rules(ChannelKind::SmsNotice), "  【商城】发货了 \n").unwrap();
        assert_eq!(rated.text, "【商城】发货了");
    }

    #[test]
    fn the_signature_counts_towards_the_segments() {
        // 66 characters of body fit one segment alone, and still do with a 4-character
        // signature (70); one more character makes two segments.
        let sms = rules(ChannelKind::SmsNotice);
        assert_eq!(rate_text(&sms, &"字".repeat(66)).unwrap().units.get(), 1);
        assert_eq!(rate_text(&sms, &"字".repeat(67)).unwrap().units.get(), 2);
        assert_eq!(rate_text(&sms, &"字".repeat(156)).unwrap().units.get(), 3);
    }

    #[test]
    fn an_unsigned_text_on_a_channel_without_signature_is_refused() {
        let unsigned = ContentRules::with_defaults(ChannelKind::SmsCode, SHANGHAI);
        let error = rate_text(&unsigned, "你的验证码是1234").unwrap_err();
        assert_eq!(error, ContentError::MissingSignature);
        assert_eq!(error.code(), "missing_signature");
    }

    #[test]
    fn a_channel_signature_without_brackets_does_not_sign() {
        let misconfigured = ContentRules {
            signature: Some("卡池".to_owned()),
            ..ContentRules::with_defaults(ChannelKind::SmsCode, SHANGHAI)
        };
        assert_eq!(
            rate_text(&misconfigured, "你的验证码是1234"),
            Err(ContentError::MissingSignature)
        );
    }

    #[test]
    fn empty_texts_are_refused_for_every_kind() {
        for kind in ChannelKind::ALL {
            for text in ["", "   ", "\n"] {
                let error = rate_text(&rules(kind), text).unwrap_err();
                assert_eq!(error, ContentError::Empty, "{kind} {text:?}");
                assert_eq!(error.code(), "content_empty");
            }
        }
    }

    #[test]
    fn a_signature_alone_is_empty() {
        assert_eq!(
            rate_text(&rules(ChannelKind::SmsNotice), "【商城】"),
            Err(ContentError::Empty)
        );
        assert_eq!(
            rate_text(&rules(ChannelKind::SmsNotice), "【商城】  "),
            Err(ContentError::Empty)
        );
    }

    #[test]
    fn a_template_rendering_to_blank_is_empty() {
        let template = TemplateBody::parse("#a#").unwrap();
        let given = params(&[("a", " ")]);
        let error = rate_message(
            &rules(ChannelKind::SmsNotice),
            MessageBody::Template {
                body: &template,
                params: &given,
            },
            office_hours(),
        )
        .unwrap_err();
        assert_eq!(error, ContentError::Empty);
    }

    #[test]
    fn an_sms_above_500_is_refused() {
        let error = rate_text(&rules(ChannelKind::SmsNotice), &"字".repeat(497)).unwrap_err();
        assert_eq!(error, ContentError::TooLong { len: 501, max: 500 });
        assert_eq!(error.code(), "content_too_long");
        assert_eq!(
            rate_text(&rules(ChannelKind::SmsNotice), &"字".repeat(496))
                .unwrap()
                .units
                .get(),
            8
        );
    }

    #[test]
    fn render_errors_keep_their_codes() {
        let template = TemplateBody::parse("【卡池】#code#").unwrap();
        let cases = [
            (params(&[]), "missing_template_param"),
            (
                params(&[("code", "1"), ("extra", "2")]),
                "unknown_template_param",
            ),
            (params(&[("code", "【假冒】")]), "invalid_request"),
        ];
        for (given, code) in cases {
            let error = rate_message(
                &rules(ChannelKind::SmsCode),
                MessageBody::Template {
                    body: &template,
                    params: &given,
                },
                office_hours(),
            )
            .unwrap_err();
            assert!(matches!(error, ContentError::Render(_)));
            assert_eq!(error.code(), code);
        }
    }

    #[test]
    fn a_marketing_sms_must_end_with_the_unsubscribe_suffix() {
        let marketing = rules(ChannelKind::SmsMarketing);
        let rated = rate_text(&marketing, "春季大促全场五折，退订回N").unwrap();
        assert_eq!(rated.text, "【卡池】春季大促全场五折，退订回N");

        let trailing_space = rate_text(&marketing, "春季大促全场五折，退订回N  ").unwrap();
        assert_eq!(trailing_space.text, "【卡池】春季大促全场五折，退订回N");

        let error = rate_text(&marketing, "春季大促全场五折").unwrap_err();
        assert_eq!(
            error,
            ContentError::MissingUnsubscribeSuffix {
                suffix: "退订回N".to_owned()
            }
        );
        assert_eq!(error.code(), "missing_unsubscribe_suffix");
        assert!(error.to_string().contains("退订回N"));
    }

    #[test]
    fn a_configured_unsubscribe_suffix_replaces_the_default() {
        let marketing = ContentRules {
            unsubscribe_suffix: "拒收请回复R".to_owned(),
            ..rules(ChannelKind::SmsMarketing)
        };
        assert!(rate_text(&marketing, "大促，拒收请回复R").is_ok());
        assert!(rate_text(&marketing, "大促，退订回N").is_err());
    }

    #[test]
    fn other_kinds_need_no_unsubscribe_suffix() {
        assert!(rate_text(&rules(ChannelKind::SmsNotice), "您的订单已发货").is_ok());
    }

    #[test]
    fn a_marketing_sms_outside_its_window_is_always_refused() {
        let marketing = rules(ChannelKind::SmsMarketing);
        for text in ["春季大促，退订回N", "no suffix", ""] {
            let error =
                rate_message(&marketing, MessageBody::Text(text), late_evening()).unwrap_err();
            assert_eq!(
                error,
                ContentError::OutsideSendingWindow {
                    window: "09:00-20:00".to_owned(),
                    timezone: "Asia/Shanghai".to_owned()
                }
            );
            assert_eq!(error.code(), "outside_sending_window");
            assert!(error.to_string().contains("09:00-20:00"));
        }
    }

    #[test]
    fn the_window_only_applies_to_marketing() {
        for kind in [ChannelKind::SmsCode, ChannelKind::SmsNotice] {
            assert!(rate_message(&rules(kind), MessageBody::Text("通知"), late_evening()).is_ok());
        }
        assert!(rate_message(
            &rules(ChannelKind::VoiceCode),
            MessageBody::Text("1234"),
            late_evening()
        )
        .is_ok());
    }

    #[test]
    fn a_bulk_send_on_a_notice_channel_keeps_the_marketing_rules() {
        let notice = rules(ChannelKind::SmsNotice);
        let bulk = notice.for_class(SendClass::Bulk);
        let late = rate_message(&bulk, MessageBody::Text("大促"), late_evening()).unwrap_err();
        assert_eq!(late.code(), "outside_sending_window");
        let unsuffixed =
            rate_message(&bulk, MessageBody::Text("大促"), office_hours()).unwrap_err();
        assert_eq!(unsuffixed.code(), "missing_unsubscribe_suffix");
        assert!(rate_message(&bulk, MessageBody::Text("大促，退订回N"), office_hours()).is_ok());
        // A normal send on the same channel is not marketing.
        assert!(notice.for_class(SendClass::Normal).marketing == notice.marketing);
        assert!(rate_message(&notice, MessageBody::Text("通知"), late_evening()).is_ok());
    }

    #[test]
    fn a_voice_code_is_one_unit_and_sent_as_is() {
        let rated = rate_text(&rules(ChannelKind::VoiceCode), "482913").unwrap();
        assert_eq!(rated.text, "482913");
        assert_eq!(rated.units, Units::ONE);

        let template = TemplateBody::parse("#code#").unwrap();
        let given = params(&[("code", "1234")]);
        let from_template = rate_message(
            &rules(ChannelKind::VoiceCode),
            MessageBody::Template {
                body: &template,
                params: &given,
            },
            office_hours(),
        )
        .unwrap();
        assert_eq!(from_template.text, "1234");
    }

    #[test]
    fn anything_but_4_to_6_digits_is_an_invalid_voice_code() {
        for text in [
            "123",
            "1234567",
            " 1234",
            "12a4",
            "【卡池】1234",
            "１２３４",
        ] {
            let error = rate_text(&rules(ChannelKind::VoiceCode), text).unwrap_err();
            assert_eq!(error, ContentError::InvalidVoiceCode, "{text:?}");
            assert_eq!(error.code(), "invalid_voice_code");
        }
    }

    #[test]
    fn a_voice_notice_is_one_unit_up_to_500_characters() {
        let voice = rules(ChannelKind::VoiceNotice);
        let rated = rate_text(&voice, &"字".repeat(500)).unwrap();
        assert_eq!(rated.units, Units::ONE);
        // No signature is required or added for a voice call.
        assert_eq!(rated.text, "字".repeat(500));

        let error = rate_text(&voice, &"字".repeat(501)).unwrap_err();
        assert_eq!(error, ContentError::TooLong { len: 501, max: 500 });
        assert_eq!(error.code(), "content_too_long");
    }

    #[test]
    fn sms_errors_convert_to_content_errors() {
        assert_eq!(ContentError::from(SmsError::Empty), ContentError::Empty);
        assert_eq!(
            ContentError::from(SmsError::TooLong { len: 600, max: 500 }),
            ContentError::TooLong { len: 600, max: 500 }
        );
    }

    proptest! {
        #[test]
        fn a_rated_sms_is_signed_and_costs_its_segments(
            body in "[a-z0-9 ，。中文字😀]{1,520}",
            kind in prop::sample::select(vec![ChannelKind::SmsCode, ChannelKind::SmsNotice]),
        ) {
            prop_assume!(!body.trim().is_empty());
            match rate_text(&rules(kind), &body) {
                Ok(rated) => {
                    prop_assert!(signature_of(&rated.text).is_some());
                    prop_assert_eq!(Ok(rated.units), rate_sms(&rated.text));
                    prop_assert!(sms_length(&rated.text) <= 500);
                }
                Err(error) => {
                    let too_long = matches!(error, ContentError::TooLong { len, max: 500 } if len > 500);
                    prop_assert!(too_long, "{:?}", error);
                }
            }
        }

        #[test]
        fn a_rated_marketing_sms_ends_with_its_suffix(body in "[a-z0-9 ，。中文]{0,40}") {
            let text = format!("{body}退订回N");
            let rated = rate_text(&rules(ChannelKind::SmsMarketing), &text).unwrap();
            prop_assert!(rated.text.ends_with(DEFAULT_UNSUBSCRIBE_SUFFIX));
            prop_assert!(rated.text.starts_with("【卡池】"));
        }

        #[test]
        fn marketing_outside_the_window_is_refused_whatever_the_text(
            text in "\\PC{0,40}",
            minutes_after_eight_pm in 0i64..(13 * 60),
        ) {
            // 20:00 Shanghai is 12:00 UTC; the 13 hours after it are all outside 09:00-20:00.
            let now = Utc.with_ymd_and_hms(2025, 3, 14, 12, 0, 0).unwrap()
                + chrono::Duration::minutes(minutes_after_eight_pm);
            let error = rate_message(&rules(ChannelKind::SmsMarketing), MessageBody::Text(&text), now)
                .unwrap_err();
            prop_assert_eq!(error.code(), "outside_sending_window");
        }
    }
}
