//! Preparing a send: the raw request parsed and rated against its channel's rules,
//! before anything is reserved, so that a refused send costs nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::error::SendError;
use super::request::{MessageSource, Origin, SendRequest};
use super::route::{Circuit, Route};
use crate::config::{ChannelSettings, Settings, TemplateSettings};
use crate::domain::content::{rate_message, ContentRules, MessageBody, RatedMessage};
use crate::domain::mobile::Mobile;
use crate::domain::{ChannelKind, ChannelName, SendClass};
use crate::secret::Secret;
use crate::upstream::VendorMessage;

/// A configured channel, ready to send: its settings, content rules, AppCode and
/// circuit breaker.
pub(super) struct Channel {
    pub settings: ChannelSettings,
    pub rules: ContentRules,
    pub appcode: Secret,
    pub circuit: Circuit,
}

/// The channels, routes and templates sends are checked against, built once from the
/// settings.
pub(super) struct Catalog {
    channels: HashMap<String, Arc<Channel>>,
    routes: HashMap<String, Arc<Route>>,
    templates: HashMap<(String, String), TemplateSettings>,
}

/// What a send names: a channel, or a route over several.
pub(super) enum Target {
    Channel(Arc<Channel>),
    Route(Arc<Route>),
}

/// A request that passed every check and is rated, ready to reserve.
pub struct PreparedSend {
    pub(super) channel: Arc<Channel>,
    pub(super) mobile: Mobile,
    pub(super) rated: RatedMessage,
    pub(super) class: SendClass,
    /// What the vendor is given: the rated text, or its own template id and the
    /// parameters (a `format = "template"` channel).
    pub(super) payload: Payload,
}

/// The message as the channel's vendor takes it.
pub(super) enum Payload {
    Text,
    Template {
        template_id: String,
        params: BTreeMap<String, String>,
    },
}

impl PreparedSend {
    /// The message for the vendor call.
    pub(super) fn vendor_message(&self) -> VendorMessage<'_> {
        match &self.payload {
            Payload::Text => VendorMessage::Text(&self.rated.text),
            Payload::Template {
                template_id,
                params,
            } => VendorMessage::Template {
                template_id,
                params,
            },
        }
    }
}

impl PreparedSend {
    pub fn channel(&self) -> &ChannelName {
        &self.channel.settings.name
    }

    pub fn units(&self) -> u32 {
        self.rated.units.get()
    }

    pub fn class(&self) -> SendClass {
        self.class
    }
}

impl Catalog {
    pub fn new(
        settings: &Settings,
        appcodes: &HashMap<ChannelName, Secret>,
    ) -> anyhow::Result<Self> {
        let mut channels = HashMap::new();
        for channel in &settings.channels {
            let appcode = appcodes.get(&channel.name).cloned().ok_or_else(|| {
                anyhow::anyhow!(
                    "channel {}: environment variable {} (its AppCode) is not set",
                    channel.name,
                    channel.appcode_env
                )
            })?;
            let rules = ContentRules {
                kind: channel.kind,
                marketing: channel.kind == ChannelKind::SmsMarketing,
                signature: channel.signature.clone(),
                unsubscribe_suffix: channel.unsubscribe_suffix.clone(),
                sending_window: channel.sending_window.clone(),
                timezone: settings.server.timezone,
            };
            channels.insert(
                channel.name.to_string(),
                Arc::new(Channel {
                    settings: channel.clone(),
                    rules,
                    appcode,
                    circuit: Circuit::new(channel.circuit),
                }),
            );
        }
        let templates = settings
            .templates
            .iter()
            .map(|t| ((t.channel.to_string(), t.name.clone()), t.clone()))
            .collect();
        let routes = settings
            .routes
            .iter()
            .map(|route| {
                let members = route
                    .channels
                    .iter()
                    .filter_map(|name| channels.get(name.as_str()).cloned())
                    .collect();
                (
                    route.name.to_string(),
                    Arc::new(Route::new(route.clone(), members)),
                )
            })
            .collect();
        Ok(Self {
            channels,
            routes,
            templates,
        })
    }

    /// The channel or route a send names.
    pub fn target(&self, name: &str) -> Option<Target> {
        self.channels
            .get(name)
            .cloned()
            .map(Target::Channel)
            .or_else(|| self.routes.get(name).cloned().map(Target::Route))
    }

    /// The class of a text sent without naming a template (the drop-in proxy): the
    /// template's when it is the text of one of the channel's templates (the lowest, when
    /// several are), so that a bulk template's text is bulk by any path; the channel
    /// kind's otherwise. The text is compared with and without the channel's signature,
    /// which is added to a text that has none.
    fn class_of_text(
        &self,
        channel: &str,
        rules: &ContentRules,
        text: &str,
        kind: ChannelKind,
    ) -> SendClass {
        let signed = rules.signature.as_ref().map(|sig| format!("{sig}{text}"));
        let unsigned = rules
            .signature
            .as_deref()
            .and_then(|sig| text.strip_prefix(sig));
        let forms: Vec<&str> = [Some(text), signed.as_deref(), unsigned]
            .into_iter()
            .flatten()
            .collect();
        self.templates
            .values()
            .filter(|t| t.channel.as_str() == channel)
            .filter(|t| forms.iter().any(|form| t.body.matches(form)))
            .map(|t| t.class.unwrap_or_else(|| SendClass::default_for(kind)))
            .min()
            .unwrap_or_else(|| SendClass::default_for(kind))
    }

    /// Parses and rates a request for `channel`: every content rule is checked here.
    pub fn prepare(
        &self,
        request: &SendRequest,
        channel: &Arc<Channel>,
        now: DateTime<Utc>,
    ) -> Result<PreparedSend, SendError> {
        let channel = channel.clone();
        let channel_name = channel.settings.name.as_str();
        let mobile = Mobile::parse(&request.to)?;
        let kind = channel.settings.kind;
        // The class is the template's, else the channel kind's: nothing in the request
        // itself can raise it.
        let (class, rated, payload) = match &request.message {
            MessageSource::Template { name, params } => {
                let template = self
                    .templates
                    .get(&(channel_name.to_owned(), name.clone()))
                    .ok_or_else(|| SendError::UnknownTemplate {
                        channel: channel_name.to_owned(),
                        template: name.chars().take(64).collect(),
                    })?;
                let class = template
                    .class
                    .unwrap_or_else(|| SendClass::default_for(kind));
                let body = MessageBody::Template {
                    body: &template.body,
                    params,
                };
                let rated = rate_message(&channel.rules.for_class(class), body, now)?;
                // A template channel is given the vendor's id (the configuration makes
                // sure each of its templates has one) and the parameters as sent.
                let payload = match &template.vendor_template_id {
                    Some(id) if channel.settings.format.needs_vendor_template() => {
                        Payload::Template {
                            template_id: id.clone(),
                            params: params.clone(),
                        }
                    }
                    _ => Payload::Text,
                };
                (class, rated, payload)
            }
            MessageSource::Content(text) => {
                if kind.is_sms() && request.origin == Origin::Api {
                    return Err(SendError::TemplateRequired {
                        kind: kind.as_str(),
                    });
                }
                if channel.settings.format.needs_vendor_template() {
                    return Err(SendError::VendorTemplateRequired {
                        channel: channel_name.to_owned(),
                    });
                }
                let class = self.class_of_text(channel_name, &channel.rules, text, kind);
                let body = MessageBody::Text(text);
                let rated = rate_message(&channel.rules.for_class(class), body, now)?;
                (class, rated, Payload::Text)
            }
        };
        Ok(PreparedSend {
            class,
            channel,
            mobile,
            rated,
            payload,
        })
    }
}
