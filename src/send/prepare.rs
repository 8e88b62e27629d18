//! Preparing a send: the raw request parsed and rated against its channel's rules,
//! before anything is reserved, so that a refused send costs nothing.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::error::SendError;
use super::request::{MessageSource, Origin, SendRequest};
use crate::config::{ChannelSettings, Settings, TemplateSettings};
use crate::domain::content::{rate_message, ContentRules, MessageBody, RatedMessage};
use crate::domain::mobile::Mobile;
use crate::domain::{ChannelKind, ChannelName, SendClass};
use crate::secret::Secret;

/// A configured channel, ready to send: its settings, content rules and AppCode.
pub(super) struct Channel {
    pub settings: ChannelSettings,
    pub rules: ContentRules,
    pub appcode: Secret,
}

/// The channels and templates sends are checked against, built once from the settings.
pub(super) struct Catalog {
    channels: HashMap<String, Arc<Channel>>,
    templates: HashMap<(String, String), TemplateSettings>,
}

/// A request that passed every check and is rated, ready to reserve.
pub struct PreparedSend {
    pub(super) channel: Arc<Channel>,
    pub(super) mobile: Mobile,
    pub(super) rated: RatedMessage,
    pub(super) class: SendClass,
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
                }),
            );
        }
        let templates = settings
            .templates
            .iter()
            .map(|t| ((t.channel.to_string(), t.name.clone()), t.clone()))
            .collect();
        Ok(Self {
            channels,
            templates,
        })
    }

    pub fn channel(&self, name: &str) -> Option<&Arc<Channel>> {
        self.channels.get(name)
    }

    /// Parses and rates a request: every content rule is checked here.
    pub fn prepare(
        &self,
        request: &SendRequest,
        now: DateTime<Utc>,
    ) -> Result<PreparedSend, SendError> {
        let channel = self
            .channels
            .get(&request.channel)
            .ok_or_else(|| SendError::UnknownChannel(request.channel.chars().take(64).collect()))?
            .clone();
        let mobile = Mobile::parse(&request.to)?;
        let kind = channel.settings.kind;
        // The class is the template's, else the channel kind's: nothing in the request
        // itself can raise it.
        let (class, rated) = match &request.message {
            MessageSource::Template { name, params } => {
                let template = self
                    .templates
                    .get(&(request.channel.clone(), name.clone()))
                    .ok_or_else(|| SendError::UnknownTemplate {
                        channel: request.channel.clone(),
                        template: name.chars().take(64).collect(),
                    })?;
                let class = template
                    .class
                    .unwrap_or_else(|| SendClass::default_for(kind));
                let body = MessageBody::Template {
                    body: &template.body,
                    params,
                };
                (
                    class,
                    rate_message(&channel.rules.for_class(class), body, now)?,
                )
            }
            MessageSource::Content(text) => {
                if kind.is_sms() && request.origin == Origin::Api {
                    return Err(SendError::TemplateRequired {
                        kind: kind.as_str(),
                    });
                }
                let class = SendClass::default_for(kind);
                let body = MessageBody::Text(text);
                (
                    class,
                    rate_message(&channel.rules.for_class(class), body, now)?,
                )
            }
        };
        Ok(PreparedSend {
            class,
            channel,
            mobile,
            rated,
        })
    }
}
