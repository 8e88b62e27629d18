//! How a template-format vendor takes the template's parameters: their encoding
//! (`params_style`) and where the request carries them (`params_in`).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// Characters a `pairs` value cannot carry: `,` separates the pairs, `:` a name from its
/// value and `*` delimits the name. The vendors' parsers are not published, so a value
/// holding one of them might be cut or misread, and the vendor bills the call anyway.
const PAIRS_FORBIDDEN: [char; 3] = [',', ':', '*'];

/// The encoding of the parameters in the one request field that carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParamsStyle {
    /// `**code**:12345,**minute**:5`, the marketplace samples' style (gyytz and others).
    #[default]
    Pairs,
    /// A JSON object of strings, `{"code":"12345","minute":"5"}`.
    Json,
}

/// Where the request carries the number, the template id and the parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParamsIn {
    /// In the query string, for GET and POST alike (a POST then has an empty form
    /// body), as the marketplace's samples send them.
    #[default]
    Query,
    /// In an `application/x-www-form-urlencoded` body; POST only.
    Form,
}

/// A parameter value the chosen style cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error(
        "the value of template parameter {name:?} contains ',', ':' or '*', which a \
         `**name**:value` list cannot carry; use params_style = \"json\" if the vendor accepts it"
    )]
    NotAPair { name: String },
}

impl ParamsStyle {
    pub fn as_str(&self) -> &'static str {
        match self {
            ParamsStyle::Pairs => "pairs",
            ParamsStyle::Json => "json",
        }
    }

    /// The parameters as the vendor reads them, in the map's (sorted, so stable) order.
    pub fn encode(&self, params: &BTreeMap<String, String>) -> Result<String, ParamsError> {
        match self {
            ParamsStyle::Pairs => {
                let mut pairs = Vec::with_capacity(params.len());
                for (name, value) in params {
                    if value.contains(PAIRS_FORBIDDEN) || name.contains(PAIRS_FORBIDDEN) {
                        return Err(ParamsError::NotAPair { name: name.clone() });
                    }
                    pairs.push(format!("**{name}**:{value}"));
                }
                Ok(pairs.join(","))
            }
            // A map of strings always serializes; serde_json escapes quotes and control
            // characters and keeps other characters (Chinese text) as they are.
            ParamsStyle::Json => {
                Ok(serde_json::to_string(params).expect("a map of strings serializes to JSON"))
            }
        }
    }
}

impl ParamsIn {
    pub fn as_str(&self) -> &'static str {
        match self {
            ParamsIn::Query => "query",
            ParamsIn::Form => "form",
        }
    }
}

impl fmt::Display for ParamsStyle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for ParamsIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither \"pairs\" nor \"json\"")]
pub struct UnknownParamsStyle(pub String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is neither \"query\" nor \"form\"")]
pub struct UnknownParamsIn(pub String);

impl FromStr for ParamsStyle {
    type Err = UnknownParamsStyle;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "pairs" => Ok(ParamsStyle::Pairs),
            "json" => Ok(ParamsStyle::Json),
            other => Err(UnknownParamsStyle(other.to_owned())),
        }
    }
}

impl FromStr for ParamsIn {
    type Err = UnknownParamsIn;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "query" => Ok(ParamsIn::Query),
            "form" => Ok(ParamsIn::Form),
            other => Err(UnknownParamsIn(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn pairs_are_starred_names_in_a_stable_order() {
        let encoded = ParamsStyle::Pairs
            .encode(&params(&[("minute", "5"), ("code", "12345")]))
            .unwrap();
        assert_eq!(encoded, "**code**:12345,**minute**:5");
    }

    #[test]
    fn pairs_refuse_values_they_cannot_carry() {
        for value in ["a,b", "10:30", "a*b"] {
            let err = ParamsStyle::Pairs
                .encode(&params(&[("code", "1"), ("time", value)]))
                .unwrap_err();
            assert_eq!(
                err,
                ParamsError::NotAPair {
                    name: "time".into()
                },
                "{value}"
            );
        }
    }

    #[test]
    fn pairs_carry_chinese_text() {
        let encoded = ParamsStyle::Pairs
            .encode(&params(&[("name", "张三")]))
            .unwrap();
        assert_eq!(encoded, "**name**:张三");
    }

    #[test]
    fn json_carries_commas_colons_quotes_and_chinese_text() {
        let encoded = ParamsStyle::Json
            .encode(&params(&[
                ("time", "10:30, 周五"),
                ("name", "张\"三\""),
                ("code", "1234"),
            ]))
            .unwrap();
        assert_eq!(
            encoded,
            r#"{"code":"1234","name":"张\"三\"","time":"10:30, 周五"}"#
        );
        let back: BTreeMap<String, String> = serde_json::from_str(&encoded).unwrap();
        assert_eq!(back["time"], "10:30, 周五");
    }

    #[test]
    fn no_parameters_encode_as_an_empty_list_or_object() {
        assert_eq!(ParamsStyle::Pairs.encode(&BTreeMap::new()).unwrap(), "");
        assert_eq!(ParamsStyle::Json.encode(&BTreeMap::new()).unwrap(), "{}");
    }

    #[test]
    fn styles_and_places_parse_from_their_names() {
        assert_eq!("pairs".parse(), Ok(ParamsStyle::Pairs));
        assert_eq!("json".parse(), Ok(ParamsStyle::Json));
        assert!("xml".parse::<ParamsStyle>().is_err());
        assert_eq!("query".parse(), Ok(ParamsIn::Query));
        assert_eq!("form".parse(), Ok(ParamsIn::Form));
        assert!("body".parse::<ParamsIn>().is_err());
        assert_eq!(ParamsStyle::default(), ParamsStyle::Pairs);
        assert_eq!(ParamsIn::default(), ParamsIn::Query);
    }
}
