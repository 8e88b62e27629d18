//! The notifier plugins tollgate is built with. [`PLUGINS`] is the one list a new
//! notifier is added to (besides its crate in `Cargo.toml`): `[[notifiers]] type` is
//! looked up in it, and messages list the types from it.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use tollgate_notify::{BuildNotifier, NotifierConfig, Problems};

/// Every notifier plugin, by its `type`.
pub const PLUGINS: &[Plugin] = &[
    Plugin::of::<tollgate_notify_email::EmailConfig>(),
    Plugin::of::<tollgate_notify_webhook::WebhookConfig>(),
    Plugin::of::<tollgate_notify_dingtalk::DingTalkConfig>(),
    Plugin::of::<tollgate_notify_wecom::WeComConfig>(),
    Plugin::of::<tollgate_notify_feishu::FeishuConfig>(),
    Plugin::of::<tollgate_notify_exec::ExecConfig>(),
];

/// One notifier plugin: its `type` and how its table is read and checked.
pub struct Plugin {
    pub kind: &'static str,
    check: fn(toml::Table, &mut Problems) -> Option<Arc<dyn BuildNotifier>>,
}

impl Plugin {
    const fn of<C>() -> Plugin
    where
        C: NotifierConfig + DeserializeOwned,
        C::Checked: 'static,
    {
        Plugin {
            kind: C::TYPE,
            check: check::<C>,
        }
    }

    /// The plugin whose `type` is `kind`.
    pub fn find(kind: &str) -> Option<&'static Plugin> {
        PLUGINS.iter().find(|plugin| plugin.kind == kind)
    }

    /// Reads `table` (the notifier's table without `name` and `type`) as this plugin's
    /// configuration and checks it; problems are recorded relative to the current scope.
    pub fn check(
        &self,
        table: toml::Table,
        problems: &mut Problems,
    ) -> Option<Arc<dyn BuildNotifier>> {
        (self.check)(table, problems)
    }
}

/// `email, webhook, …`, for messages.
pub fn type_list() -> String {
    PLUGINS
        .iter()
        .map(|plugin| plugin.kind)
        .collect::<Vec<_>>()
        .join(", ")
}

fn check<C>(table: toml::Table, problems: &mut Problems) -> Option<Arc<dyn BuildNotifier>>
where
    C: NotifierConfig + DeserializeOwned,
    C::Checked: 'static,
{
    // An unknown or missing key is serde's to name (the plugin's table refuses unknown
    // keys); the message names the key, and the problem the notifier's table.
    let config = match C::deserialize(toml::Value::Table(table)) {
        Ok(config) => config,
        Err(err) => {
            problems.add("", err.message());
            return None;
        }
    };
    let checked = config.validate(problems)?;
    Some(Arc::new(checked))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plugin_has_its_own_type() {
        let mut kinds: Vec<&str> = PLUGINS.iter().map(|p| p.kind).collect();
        kinds.sort();
        kinds.dedup();
        assert_eq!(kinds.len(), PLUGINS.len());
        assert_eq!(type_list(), "email, webhook, dingtalk, wecom, feishu, exec");
        assert!(Plugin::find("pager").is_none());
    }
}
