//! A channel's vendor format (SPEC §13): `format` and the `template` format's keys, and
//! the `vendor_template_id` its templates need.
//!
//! Each check takes the raw table and the problem collector scoped to it
//! (`channels[3]`, `templates[0]`), and returns what it parsed.

use std::collections::BTreeMap;

use super::raw::{RawChannel, RawTemplate};
use super::settings::ChannelSettings;
use super::Problems;
use crate::domain::template::TemplateBody;
use crate::domain::VendorMethod;
use crate::upstream::format::{ParamsIn, ParamsStyle, TemplateFormat, VendorFormat};

const KAPOOL: &str = "kapool";
const TEMPLATE: &str = "template";

/// Parses `format` and, for `template`, its keys. Refuses an unknown format, a template
/// format without `mobile_param`, `template_id_param`, `success_field` or
/// `success_values`, an unknown `params_style` or `params_in`, `params_in = "form"` on
/// a GET channel, two request fields with one name, and template-format keys on a
/// kapool channel. A template format with problems is still returned, filled in as far
/// as it could be (the configuration is refused anyway), so that the checks of its
/// templates see the channel the file meant.
pub fn check_channel_format(raw: &RawChannel, problems: &mut Problems) -> VendorFormat {
    let mut check = Check { problems };
    let format = match raw.format.as_deref().map(str::trim) {
        None | Some(KAPOOL) => {
            for key in template_keys_present(raw) {
                check.problem(
                    key,
                    "is a key of format = \"template\"; this channel's format is \"kapool\"",
                );
            }
            VendorFormat::Kapool
        }
        Some(TEMPLATE) => VendorFormat::Template(check.template_format(raw)),
        Some(other) => {
            check.problem(
                "format",
                format!("{other:?} is neither \"{KAPOOL}\" nor \"{TEMPLATE}\""),
            );
            VendorFormat::Kapool
        }
    };
    format
}

/// A template's `vendor_template_id`: required when its channel has the template
/// format, refused otherwise. A template with variables also needs the channel's
/// `params_param` to send their values in.
pub fn check_vendor_template_id(
    raw: &RawTemplate,
    body: Option<&TemplateBody>,
    channel: &ChannelSettings,
    problems: &mut Problems,
) -> Option<String> {
    let mut check = Check { problems };
    let id = raw
        .vendor_template_id
        .as_deref()
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let VendorFormat::Template(format) = &channel.format else {
        if raw.vendor_template_id.is_some() {
            check.problem(
                "vendor_template_id",
                format!(
                    "is only for templates of a format = \"template\" channel; channel {} sends the full text",
                    channel.name
                ),
            );
        }
        return None;
    };
    if id.is_none() {
        check.problem(
            "vendor_template_id",
            format!(
                "is required: channel {} has format = \"template\" and sends the vendor's template id",
                channel.name
            ),
        );
    }
    if let Some(variable) = body.and_then(|body| body.variables().next()) {
        if format.params_param.is_none() {
            check.problem(
                "body",
                format!(
                    "has variables (#{variable}#) but channel {} sets no params_param to send their values in",
                    channel.name
                ),
            );
        }
    }
    id
}

/// The template format's keys that `raw` sets.
fn template_keys_present(raw: &RawChannel) -> Vec<&'static str> {
    [
        ("mobile_param", raw.mobile_param.is_some()),
        ("template_id_param", raw.template_id_param.is_some()),
        ("params_param", raw.params_param.is_some()),
        ("params_style", raw.params_style.is_some()),
        ("params_in", raw.params_in.is_some()),
        ("static_params", raw.static_params.is_some()),
        ("success_field", raw.success_field.is_some()),
        ("success_values", raw.success_values.is_some()),
        ("remaining_field", raw.remaining_field.is_some()),
    ]
    .into_iter()
    .filter_map(|(key, present)| present.then_some(key))
    .collect()
}

struct Check<'a> {
    problems: &'a mut Problems,
}

impl Check<'_> {
    fn problem(&mut self, field: &str, problem: impl Into<String>) {
        self.problems.add(field, problem);
    }

    /// A field name that must be given and not be blank.
    fn required(&mut self, field: &str, value: &Option<String>) -> Option<String> {
        match value.as_deref().map(str::trim) {
            Some(value) if !value.is_empty() => Some(value.to_owned()),
            _ => {
                self.problem(field, "is required for format = \"template\"");
                None
            }
        }
    }

    /// A field name that may be left out, but not given blank.
    fn optional(&mut self, field: &str, value: &Option<String>) -> Option<String> {
        let value = value.as_deref()?.trim();
        if value.is_empty() {
            self.problem(field, "may not be empty; leave it out instead");
            return None;
        }
        Some(value.to_owned())
    }

    fn template_format(&mut self, raw: &RawChannel) -> TemplateFormat {
        let mobile_param = self.required("mobile_param", &raw.mobile_param);
        let template_id_param = self.required("template_id_param", &raw.template_id_param);
        let params_param = self.optional("params_param", &raw.params_param);
        let params_style = match raw.params_style.as_deref() {
            None => ParamsStyle::default(),
            Some(style) => style.parse().unwrap_or_else(|err| {
                self.problem("params_style", format!("{err}"));
                ParamsStyle::default()
            }),
        };
        let params_in = match raw.params_in.as_deref() {
            None => ParamsIn::default(),
            Some(place) => place.parse().unwrap_or_else(|err| {
                self.problem("params_in", format!("{err}"));
                ParamsIn::default()
            }),
        };
        // The method's own problems are the channel check's; only a clear GET matters here.
        let method = raw
            .method
            .as_deref()
            .unwrap_or("GET")
            .parse::<VendorMethod>();
        if params_in == ParamsIn::Form && method == Ok(VendorMethod::Get) {
            self.problem(
                "params_in",
                "\"form\" needs method = \"POST\": a GET has no body",
            );
        }
        let static_params = self.static_params(raw.static_params.as_ref());
        let success_field = self.required("success_field", &raw.success_field);
        let success_values = self.success_values(raw.success_values.as_deref());
        let remaining_field = self.optional("remaining_field", &raw.remaining_field);

        // Every request field needs its own name: a second value under one name would
        // reach the vendor as whichever its parser picks.
        let mut names: Vec<(String, String)> = Vec::new();
        let named = [
            ("mobile_param", mobile_param.as_ref()),
            ("template_id_param", template_id_param.as_ref()),
            ("params_param", params_param.as_ref()),
        ];
        let statics = static_params
            .keys()
            .map(|name| (format!("static_params.{name}"), name));
        for (key, name) in named
            .into_iter()
            .filter_map(|(key, name)| name.map(|name| (key.to_owned(), name)))
            .chain(statics)
        {
            match names.iter().find(|(_, taken)| taken == name) {
                Some((first, _)) => self.problem(
                    &key,
                    format!("names the request field {name:?}, which {first} names already"),
                ),
                None => names.push((key, name.clone())),
            }
        }

        TemplateFormat {
            mobile_param: mobile_param.unwrap_or_default(),
            template_id_param: template_id_param.unwrap_or_default(),
            params_param,
            params_style,
            params_in,
            static_params,
            success_field: success_field.unwrap_or_default(),
            success_values: success_values.unwrap_or_default(),
            remaining_field,
        }
    }

    /// Values as text: strings as written, numbers and booleans as TOML writes them,
    /// since vendors take them as text anyway.
    fn static_params(&mut self, raw: Option<&toml::Table>) -> BTreeMap<String, String> {
        let mut params = BTreeMap::new();
        for (name, value) in raw.into_iter().flatten() {
            let key = format!("static_params.{name}");
            if name.trim().is_empty() {
                self.problem(&key, "needs a name");
                continue;
            }
            match scalar_text(value) {
                Some(text) => {
                    params.insert(name.clone(), text);
                }
                None => self.problem(&key, "must be a string, a number or a boolean"),
            }
        }
        params
    }

    fn success_values(&mut self, raw: Option<&[toml::Value]>) -> Option<Vec<String>> {
        let Some(raw) = raw else {
            self.problem(
                "success_values",
                "is required for format = \"template\": the values of success_field that mean sent, e.g. [\"0\"]",
            );
            return None;
        };
        if raw.is_empty() {
            self.problem(
                "success_values",
                "may not be empty: no answer would ever count as sent",
            );
            return None;
        }
        let mut values = Vec::new();
        for value in raw {
            match scalar_text(value) {
                Some(text) if !text.trim().is_empty() => values.push(text.trim().to_owned()),
                _ => {
                    self.problem(
                        "success_values",
                        "must be a list of strings or numbers, e.g. [\"0\"]",
                    );
                    return None;
                }
            }
        }
        Some(values)
    }
}

fn scalar_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigProblem;

    fn channel(text: &str) -> RawChannel {
        toml::from_str(text).unwrap()
    }

    fn keys(problems: &[ConfigProblem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    /// The channel's format and the problems found, with keys under `at`.
    fn checked_format(raw: &RawChannel, at: &str) -> (VendorFormat, Vec<ConfigProblem>) {
        let mut problems = Problems::new();
        let format = problems.scoped(at, |p| check_channel_format(raw, p));
        (format, problems.into_vec())
    }

    const SPEC_EXAMPLE: &str = r#"
        name = "backup_sms"
        kind = "sms_code"
        format = "template"
        url = "https://example.market.alicloudapi.com/sms/smsSend"
        method = "POST"
        mobile_param = "mobile"
        template_id_param = "templateId"
        params_param = "param"
        params_style = "pairs"
        static_params = { smsSignId = "2e65b1bb3d054466b82f0c9d125465e2" }
        success_field = "code"
        success_values = ["0"]
        remaining_field = "balance"
    "#;

    #[test]
    fn the_spec_example_is_a_template_format() {
        let (format, problems) = checked_format(&channel(SPEC_EXAMPLE), "channels[0]");
        assert!(problems.is_empty(), "{problems:?}");
        let VendorFormat::Template(format) = format else {
            panic!("{format:?}")
        };
        assert_eq!(format.mobile_param, "mobile");
        assert_eq!(format.template_id_param, "templateId");
        assert_eq!(format.params_param.as_deref(), Some("param"));
        assert_eq!(format.params_style, ParamsStyle::Pairs);
        assert_eq!(format.params_in, ParamsIn::Query);
        assert_eq!(
            format.static_params["smsSignId"],
            "2e65b1bb3d054466b82f0c9d125465e2"
        );
        assert_eq!(format.success_field, "code");
        assert_eq!(format.success_values, ["0"]);
        assert_eq!(format.remaining_field.as_deref(), Some("balance"));
    }

    #[test]
    fn no_format_is_kapool() {
        let (format, problems) =
            checked_format(&channel("name = \"a\"\nkind = \"sms_code\""), "channels[0]");
        assert_eq!(format, VendorFormat::Kapool);
        assert!(problems.is_empty());
    }

    #[test]
    fn numbers_are_read_as_text_in_static_params_and_success_values() {
        let text = format!(
            "{}\nparams_in = \"form\"\n",
            SPEC_EXAMPLE
                .replace(
                    "static_params = { smsSignId = \"2e65b1bb3d054466b82f0c9d125465e2\" }",
                    "static_params = { signId = 42 }"
                )
                .replace("success_values = [\"0\"]", "success_values = [0, \"OK\"]")
        );
        let (format, problems) = checked_format(&channel(&text), "channels[0]");
        assert!(problems.is_empty(), "{problems:?}");
        let VendorFormat::Template(format) = format else {
            panic!()
        };
        assert_eq!(format.static_params["signId"], "42");
        assert_eq!(format.success_values, ["0", "OK"]);
        assert_eq!(format.params_in, ParamsIn::Form);
    }

    #[test]
    fn a_template_format_names_each_missing_or_unknown_key() {
        let raw = channel(
            r#"
            format = "template"
            params_style = "xml"
            params_in = "form"
            static_params = { sign = [1] }
            success_values = []
            "#,
        );
        let (format, problems) = checked_format(&raw, "channels[2]");
        assert!(
            format.needs_vendor_template(),
            "still the format the file meant"
        );
        assert_eq!(
            keys(&problems),
            [
                "channels[2].mobile_param",
                "channels[2].template_id_param",
                "channels[2].params_style",
                "channels[2].params_in",
                "channels[2].static_params.sign",
                "channels[2].success_field",
                "channels[2].success_values",
            ]
        );
    }

    #[test]
    fn two_request_fields_with_one_name_are_refused() {
        let text = SPEC_EXAMPLE
            .replace(
                "template_id_param = \"templateId\"",
                "template_id_param = \"mobile\"",
            )
            .replace("smsSignId =", "param =");
        let (_, problems) = checked_format(&channel(&text), "channels[0]");
        assert_eq!(
            keys(&problems),
            [
                "channels[0].template_id_param",
                "channels[0].static_params.param"
            ]
        );
        assert!(problems[0].problem.contains("mobile_param"), "{problems:?}");
    }

    #[test]
    fn an_unknown_format_is_named() {
        let (format, problems) = checked_format(&channel("format = \"dysms\""), "channels[1]");
        assert_eq!(format, VendorFormat::Kapool);
        assert_eq!(keys(&problems), ["channels[1].format"]);
        assert!(problems[0].problem.contains("dysms"));
    }

    #[test]
    fn template_keys_on_a_kapool_channel_are_named() {
        let raw = channel("format = \"kapool\"\nsuccess_field = \"code\"\nparams_style = \"json\"");
        let (_, problems) = checked_format(&raw, "channels[0]");
        assert_eq!(
            keys(&problems),
            ["channels[0].params_style", "channels[0].success_field"]
        );
    }
}
