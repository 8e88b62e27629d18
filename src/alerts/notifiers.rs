//! Building the configured notifiers: each plugin reads its secrets here, at start.

use std::collections::BTreeMap;
use std::sync::Arc;

use tollgate_notify::Notifier;

use crate::config::alerts::NotifierSettings;

/// The ready notifiers by name.
pub type Notifiers = Arc<BTreeMap<String, Arc<dyn Notifier>>>;

/// Builds every notifier; the first that cannot be built stops the start, named.
pub fn build_notifiers(
    settings: &[NotifierSettings],
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Notifiers> {
    let mut built = BTreeMap::new();
    for notifier in settings {
        let ready = notifier.plugin.build(env).map_err(|err| {
            anyhow::anyhow!("notifier {} ({}): {err}", notifier.name, notifier.kind)
        })?;
        built.insert(notifier.name.clone(), ready);
    }
    Ok(Arc::new(built))
}
