//! Message templates in the vendor's `#name#` syntax, parsed at start-up and rendered per send.
//!
//! A template such as `【卡池】你的验证码是：#code#，3分钟内有效！` is parsed once, when the
//! configuration is loaded, so that a malformed template stops start-up instead of failing
//! sends. Rendering then only has to check the client's parameters (SPEC §3): every
//! variable must be given, no unknown parameter is accepted, and values may not contain
//! `#`, `【` or `】`, which would let a client forge a variable or a signature.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The longest variable name the vendor's syntax is taken to allow.
const MAX_VARIABLE_NAME_LEN: usize = 32;

/// How much of a client-supplied parameter name an error repeats back.
const MAX_ECHOED_NAME_CHARS: usize = 64;

/// Characters a parameter value may not contain: `#` delimits variables, and `【】`
/// delimit the signature that identifies the sender to the handset's owner.
const FORBIDDEN_VALUE_CHARS: [char; 3] = ['#', '【', '】'];

/// A parsed template body: its text, and the text split into literals and variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateBody {
    text: String,
    parts: Vec<Part>,
    /// Distinct variable names, in order of first appearance.
    variables: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Variable(String),
}

/// Why a template body from the configuration is not usable. Positions count characters
/// from 1, as an editor shows them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("the template body is empty")]
    Empty,
    #[error(
        "the '#' at character {position} has no closing '#'; variables are written #name# \
         and a template cannot contain a literal '#'"
    )]
    UnclosedVariable { position: usize },
    #[error("the template has an empty variable '##' at character {position}; variables are written #name#")]
    EmptyVariableName { position: usize },
    #[error(
        "the template variable #{name}# at character {position} is not a valid name: use 1-32 \
         characters of A-Z, a-z, 0-9 or '_' (a template cannot contain a literal '#')"
    )]
    InvalidVariableName { name: String, position: usize },
}

impl TemplateError {
    /// The SPEC §5 error code: a bad template is a bad request (or a bad configuration).
    pub fn code(&self) -> &'static str {
        "invalid_request"
    }
}

/// Why a template could not be rendered with a client's parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("template parameter {0:?} is missing: every #name# variable of the template must be given a value")]
    MissingParam(String),
    #[error("template parameter {0:?} is not a variable of this template")]
    UnknownParam(String),
    #[error("the value of template parameter {name:?} may not contain '#', '【' or '】'")]
    InvalidParamValue { name: String },
}

impl RenderError {
    /// The SPEC §5 error code.
    pub fn code(&self) -> &'static str {
        match self {
            RenderError::MissingParam(_) => "missing_template_param",
            RenderError::UnknownParam(_) => "unknown_template_param",
            RenderError::InvalidParamValue { .. } => "invalid_request",
        }
    }
}

impl TemplateBody {
    /// Parses a body in the vendor's syntax. Every `#` must open or close a variable whose
    /// name is 1-32 characters of `[A-Za-z0-9_]`; the body must not be blank.
    pub fn parse(raw: &str) -> Result<TemplateBody, TemplateError> {
        if raw.trim().is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut parts = Vec::new();
        let mut variables: Vec<String> = Vec::new();
        // Splitting on '#' alternates literal, name, literal, name, ..., literal, so every
        // variable takes two '#' and an odd count means one was left unclosed.
        let pieces: Vec<&str> = raw.split('#').collect();
        let hash_count = pieces.len() - 1;
        if hash_count % 2 == 1 {
            let last_hash = raw.rfind('#').unwrap_or(0);
            return Err(TemplateError::UnclosedVariable {
                position: char_position(raw, last_hash),
            });
        }
        let mut byte_offset = 0;
        for (index, piece) in pieces.iter().enumerate() {
            let is_variable = index % 2 == 1;
            if is_variable {
                // The opening '#' sits just before this piece.
                let position = char_position(raw, byte_offset - 1);
                validate_variable_name(piece, position)?;
                if !variables.iter().any(|known| known == piece) {
                    variables.push((*piece).to_owned());
                }
                parts.push(Part::Variable((*piece).to_owned()));
            } else if !piece.is_empty() {
                parts.push(Part::Literal((*piece).to_owned()));
            }
            byte_offset += piece.len() + '#'.len_utf8();
        }
        Ok(TemplateBody {
            text: raw.to_owned(),
            parts,
            variables,
        })
    }

    /// The distinct variable names, in order of first appearance.
    pub fn variables(&self) -> impl Iterator<Item = &str> {
        self.variables.iter().map(String::as_str)
    }

    /// The template as written, variables included.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `text` is this template rendered with some values, each a run of the
    /// characters [`TemplateBody::render`] accepts in a value (no `#`, `【` or `】`).
    /// Linear in the text for each part, whatever the variables.
    pub fn matches(&self, text: &str) -> bool {
        // The byte offsets of `text` at which the parts so far can end.
        let mut ends = vec![false; text.len() + 1];
        ends[0] = true;
        for part in &self.parts {
            let mut next = vec![false; text.len() + 1];
            match part {
                Part::Literal(literal) => {
                    for at in (0..=text.len()).filter(|&at| ends[at]) {
                        if text[at..].starts_with(literal.as_str()) {
                            next[at + literal.len()] = true;
                        }
                    }
                }
                Part::Variable(_) => {
                    // From any end so far, on over every character a value may hold.
                    let mut open = false;
                    let boundaries = text
                        .char_indices()
                        .map(|(at, c)| (at, Some(c)))
                        .chain(std::iter::once((text.len(), None)));
                    for (at, c) in boundaries {
                        open |= ends[at];
                        next[at] = open;
                        if c.is_some_and(|c| FORBIDDEN_VALUE_CHARS.contains(&c)) {
                            open = false;
                        }
                    }
                }
            }
            ends = next;
        }
        ends[text.len()]
    }

    /// Substitutes every variable. The checks run in a fixed, documented order so that a
    /// client sees the same error for the same request: first a missing parameter (in
    /// variable order), then an unknown one (in name order), then a forbidden value (in
    /// variable order).
    pub fn render(&self, params: &BTreeMap<String, String>) -> Result<String, RenderError> {
        if let Some(missing) = self.variables().find(|name| !params.contains_key(*name)) {
            return Err(RenderError::MissingParam(missing.to_owned()));
        }
        if let Some(unknown) = params
            .keys()
            .find(|name| !self.variables.iter().any(|known| known == *name))
        {
            // The name comes from the client and is echoed back in the error; a bounded
            // prefix is enough to recognise it.
            return Err(RenderError::UnknownParam(
                unknown.chars().take(MAX_ECHOED_NAME_CHARS).collect(),
            ));
        }
        if let Some(name) = self
            .variables()
            .find(|name| params[*name].contains(FORBIDDEN_VALUE_CHARS))
        {
            return Err(RenderError::InvalidParamValue {
                name: name.to_owned(),
            });
        }
        let mut rendered = String::with_capacity(self.text.len());
        for part in &self.parts {
            match part {
                Part::Literal(text) => rendered.push_str(text),
                Part::Variable(name) => rendered.push_str(&params[name]),
            }
        }
        Ok(rendered)
    }
}

impl fmt::Display for TemplateBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for TemplateBody {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// Configuration files hold templates as plain strings; deserializing parses them, so a
/// loaded configuration never holds a malformed template.
impl<'de> Deserialize<'de> for TemplateBody {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

fn validate_variable_name(name: &str, position: usize) -> Result<(), TemplateError> {
    if name.is_empty() {
        return Err(TemplateError::EmptyVariableName { position });
    }
    let valid = name.len() <= MAX_VARIABLE_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(())
    } else {
        // A stray '#' can pair with a far-away one and capture a whole sentence, so only a
        // prefix of the would-be name is repeated in the error.
        Err(TemplateError::InvalidVariableName {
            name: name.chars().take(MAX_ECHOED_NAME_CHARS).collect(),
            position,
        })
    }
}

/// The 1-based character position of the character starting at `byte_offset`.
fn char_position(text: &str, byte_offset: usize) -> usize {
    text[..byte_offset].chars().count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LOGIN_CODE: &str = "【卡池】你的验证码是：#code#，3分钟内有效！";

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn the_vendor_sample_template_parses_and_renders() {
        let template = TemplateBody::parse(LOGIN_CODE).unwrap();
        assert_eq!(template.as_str(), LOGIN_CODE);
        assert_eq!(template.to_string(), LOGIN_CODE);
        assert_eq!(template.variables().collect::<Vec<_>>(), ["code"]);
        assert_eq!(
            template.render(&params(&[("code", "482913")])).unwrap(),
            "【卡池】你的验证码是：482913，3分钟内有效！"
        );
    }

    #[test]
    fn a_text_matches_a_template_it_is_a_rendering_of() {
        let template = TemplateBody::parse("【卡池】您的订单#order#已发货，#n#件").unwrap();
        assert!(template.matches("【卡池】您的订单A1024已发货，3件"));
        assert!(
            template.matches("【卡池】您的订单已发货，件"),
            "values may be empty"
        );
        assert!(!template.matches("【卡池】您的订单A1024已发货，3件！"));
        assert!(!template.matches("您的订单A1024已发货，3件"));
        assert!(
            !template.matches("【卡池】您的订单【别家】已发货，3件"),
            "a value cannot hold a signature"
        );
        let plain = TemplateBody::parse("【卡池】双十一全场五折，退订回N").unwrap();
        assert!(plain.matches("【卡池】双十一全场五折，退订回N"));
        assert!(!plain.matches("【卡池】双十一全场五折"));
        let adjacent = TemplateBody::parse("#a##b#x").unwrap();
        assert!(adjacent.matches(&format!("{}x", "y".repeat(10_000))));
        assert!(!adjacent.matches(&"y".repeat(10_000)));
    }

    #[test]
    fn variables_are_distinct_and_in_first_appearance_order() {
        let template = TemplateBody::parse("#b# #a# #b# #c_1# #a#").unwrap();
        assert_eq!(template.variables().collect::<Vec<_>>(), ["b", "a", "c_1"]);
    }

    #[test]
    fn a_repeated_variable_is_substituted_everywhere() {
        let template = TemplateBody::parse("#name#, hello #name#!").unwrap();
        assert_eq!(
            template.render(&params(&[("name", "Li")])).unwrap(),
            "Li, hello Li!"
        );
    }

    #[test]
    fn a_template_may_be_a_variable_alone_or_have_none() {
        let only_variable = TemplateBody::parse("#code#").unwrap();
        assert_eq!(
            only_variable.render(&params(&[("code", "1234")])).unwrap(),
            "1234"
        );
        let no_variables = TemplateBody::parse("【卡池】系统维护通知").unwrap();
        assert_eq!(no_variables.variables().count(), 0);
        assert_eq!(
            no_variables.render(&BTreeMap::new()).unwrap(),
            "【卡池】系统维护通知"
        );
    }

    #[test]
    fn adjacent_variables_are_allowed() {
        let template = TemplateBody::parse("#a##b#").unwrap();
        assert_eq!(template.variables().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            template.render(&params(&[("a", "1"), ("b", "2")])).unwrap(),
            "12"
        );
    }

    #[test]
    fn blank_bodies_are_refused() {
        assert_eq!(TemplateBody::parse(""), Err(TemplateError::Empty));
        assert_eq!(
            TemplateBody::parse(" \n\u{3000}"),
            Err(TemplateError::Empty)
        );
    }

    #[test]
    fn an_unclosed_hash_is_refused_with_its_position() {
        assert_eq!(
            TemplateBody::parse("验证码#code"),
            Err(TemplateError::UnclosedVariable { position: 4 })
        );
        assert_eq!(
            TemplateBody::parse("#a# and #"),
            Err(TemplateError::UnclosedVariable { position: 9 })
        );
    }

    #[test]
    fn an_empty_variable_is_refused() {
        assert_eq!(
            TemplateBody::parse("code ## here"),
            Err(TemplateError::EmptyVariableName { position: 6 })
        );
    }

    #[test]
    fn invalid_variable_names_are_refused() {
        assert_eq!(
            TemplateBody::parse("a #验证码# b"),
            Err(TemplateError::InvalidVariableName {
                name: "验证码".to_owned(),
                position: 3
            })
        );
        assert!(TemplateBody::parse("#my-code#").is_err());
        assert!(TemplateBody::parse("#my code#").is_err());
        assert!(TemplateBody::parse(&format!("#{}#", "a".repeat(33))).is_err());
        assert!(TemplateBody::parse(&format!("#{}#", "a".repeat(32))).is_ok());
    }

    #[test]
    fn every_template_error_is_an_invalid_request() {
        let errors = [
            TemplateError::Empty,
            TemplateError::UnclosedVariable { position: 1 },
            TemplateError::EmptyVariableName { position: 1 },
            TemplateError::InvalidVariableName {
                name: "x-y".to_owned(),
                position: 1,
            },
        ];
        for error in errors {
            assert_eq!(error.code(), "invalid_request");
            assert!(!error.to_string().is_empty());
        }
    }

    #[test]
    fn a_missing_parameter_is_refused() {
        let template = TemplateBody::parse("#a# #b#").unwrap();
        let error = template.render(&params(&[("a", "1")])).unwrap_err();
        assert_eq!(error, RenderError::MissingParam("b".to_owned()));
        assert_eq!(error.code(), "missing_template_param");
        assert!(error.to_string().contains("\"b\""));
    }

    #[test]
    fn an_unknown_parameter_is_refused() {
        let template = TemplateBody::parse("#code#").unwrap();
        let error = template
            .render(&params(&[("code", "1234"), ("minutes", "5")]))
            .unwrap_err();
        assert_eq!(error, RenderError::UnknownParam("minutes".to_owned()));
        assert_eq!(error.code(), "unknown_template_param");
    }

    #[test]
    fn a_missing_parameter_is_reported_before_an_unknown_one() {
        let template = TemplateBody::parse("#code#").unwrap();
        let error = template.render(&params(&[("cod", "1234")])).unwrap_err();
        assert_eq!(error, RenderError::MissingParam("code".to_owned()));
    }

    #[test]
    fn an_unknown_parameter_name_is_echoed_only_in_part() {
        let template = TemplateBody::parse("#code#").unwrap();
        let long_name = "x".repeat(10_000);
        let error = template
            .render(&params(&[("code", "1"), (&long_name, "2")]))
            .unwrap_err();
        assert_eq!(error, RenderError::UnknownParam("x".repeat(64)));
    }

    #[test]
    fn values_with_hash_or_signature_brackets_are_refused() {
        let template = TemplateBody::parse("#code#").unwrap();
        for value in ["12#4", "#code#", "【假冒】", "x】", "【"] {
            let error = template.render(&params(&[("code", value)])).unwrap_err();
            assert_eq!(
                error,
                RenderError::InvalidParamValue {
                    name: "code".to_owned()
                },
                "{value}"
            );
            assert_eq!(error.code(), "invalid_request");
        }
    }

    #[test]
    fn templates_deserialize_by_parsing() {
        let template: TemplateBody = serde_json::from_str("\"hi #name#\"").unwrap();
        assert_eq!(template.variables().collect::<Vec<_>>(), ["name"]);
        assert_eq!(serde_json::to_string(&template).unwrap(), "\"hi #name#\"");
        assert!(serde_json::from_str::<TemplateBody>("\"hi #name\"").is_err());
    }

    /// One piece of a generated template: literal text (never containing '#') or a
    /// variable drawn from a small pool so that repeats happen.
    fn template_pieces() -> impl Strategy<Value = Vec<Result<String, String>>> {
        let literal = "[a-z 【】，：验证码0-9]{1,6}".prop_map(Ok);
        let variable = "(code|name|n_1|minutes|X)".prop_map(Err);
        proptest::collection::vec(prop_oneof![literal, variable], 1..10)
    }

    fn template_source(pieces: &[Result<String, String>]) -> String {
        pieces
            .iter()
            .map(|piece| match piece {
                Ok(literal) => literal.clone(),
                Err(name) => format!("#{name}#"),
            })
            .collect()
    }

    fn value() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9 中文，。]{0,8}"
    }

    proptest! {
        #[test]
        fn rendering_with_every_parameter_leaves_no_variable(
            pieces in template_pieces(),
            values in proptest::collection::vec(value(), 5),
        ) {
            let source = template_source(&pieces);
            prop_assume!(!source.trim().is_empty());
            let template = TemplateBody::parse(&source).unwrap();
            let given: BTreeMap<String, String> = template
                .variables()
                .zip(values.iter())
                .map(|(name, value)| (name.to_owned(), value.clone()))
                .collect();
            let rendered = template.render(&given).unwrap();
            // Literals never hold '#' and neither do the values, so no variable survives.
            prop_assert!(!rendered.contains('#'));

            // The rendered length is the literals plus one copy of the value per use.
            let expected_len: usize = pieces
                .iter()
                .map(|piece| match piece {
                    Ok(literal) => literal.chars().count(),
                    Err(name) => given[name].chars().count(),
                })
                .sum();
            prop_assert_eq!(rendered.chars().count(), expected_len);
        }

        #[test]
        fn any_value_containing_a_hash_is_refused(
            pieces in template_pieces(),
            before in value(),
            after in value(),
            forbidden in prop::sample::select(vec!['#', '【', '】']),
        ) {
            let source = template_source(&pieces);
            prop_assume!(!source.trim().is_empty());
            let template = TemplateBody::parse(&source).unwrap();
            prop_assume!(template.variables().count() > 0);
            let bad_value = format!("{before}{forbidden}{after}");
            let given: BTreeMap<String, String> = template
                .variables()
                .map(|name| (name.to_owned(), bad_value.clone()))
                .collect();
            let is_invalid_value = matches!(
                template.render(&given),
                Err(RenderError::InvalidParamValue { .. })
            );
            prop_assert!(is_invalid_value);
        }

        #[test]
        fn text_without_hashes_is_a_template_of_itself(text in "[^#]{1,40}") {
            prop_assume!(!text.trim().is_empty());
            let template = TemplateBody::parse(&text).unwrap();
            prop_assert_eq!(template.variables().count(), 0);
            prop_assert_eq!(template.render(&BTreeMap::new()).unwrap(), text);
        }

        #[test]
        fn an_odd_number_of_hashes_never_parses(text in "[a-z#]{1,30}") {
            let hashes = text.matches('#').count();
            if hashes % 2 == 1 {
                prop_assert!(TemplateBody::parse(&text).is_err());
            }
        }
    }
}
