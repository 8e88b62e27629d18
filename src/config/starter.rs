//! The commented `tollgate.toml` that `tollgate config init` writes: every section with
//! its defaults, the optional parts as commented-out examples, secrets by variable name.

/// The starter configuration, as written to disk.
pub const STARTER_CONFIG: &str = include_str!("starter.toml");

#[cfg(test)]
mod tests {
    use serde::de::{self, Deserialize, Deserializer, Visitor};

    use super::STARTER_CONFIG;
    use crate::config::load_str;

    /// The field names of a struct, as serde sees them: a deserializer that records what
    /// `deserialize_struct` is asked for and then gives up.
    fn field_names<'de, T: Deserialize<'de>>() -> Vec<&'static str> {
        struct Fields(Vec<&'static str>);

        #[derive(Debug)]
        struct Done;
        impl std::fmt::Display for Done {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("fields recorded")
            }
        }
        impl std::error::Error for Done {}
        impl de::Error for Done {
            fn custom<M: std::fmt::Display>(_: M) -> Self {
                Done
            }
        }

        impl<'de> Deserializer<'de> for &mut Fields {
            type Error = Done;

            fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Done> {
                Err(Done)
            }

            fn deserialize_struct<V: Visitor<'de>>(
                self,
                _name: &'static str,
                fields: &'static [&'static str],
                _visitor: V,
            ) -> Result<V::Value, Done> {
                self.0.extend_from_slice(fields);
                Err(Done)
            }

            serde::forward_to_deserialize_any! {
                bool i8 i16 i32 i64 u8 u16 u32 u64 f32 f64 char str string bytes byte_buf
                option unit unit_struct newtype_struct seq tuple tuple_struct map enum
                identifier ignored_any
            }
        }

        let mut fields = Fields(Vec::new());
        let _ = T::deserialize(&mut fields);
        fields.0
    }

    /// Whether a line is the header of table `name` (`[name]` or `[[name]]`), written or
    /// commented out.
    fn has_header(text: &str, name: &str) -> bool {
        text.lines().any(|line| {
            let line = line.trim_start_matches('#').trim();
            line == format!("[{name}]") || line == format!("[[{name}]]")
        })
    }

    #[test]
    fn every_table_the_configuration_knows_is_in_the_starter() {
        let tables = field_names::<crate::config::raw::RawConfig>();
        assert!(
            tables.contains(&"server") && tables.contains(&"marketplace"),
            "{tables:?}"
        );
        for table in tables {
            assert!(
                has_header(STARTER_CONFIG, table),
                "the starter configuration has no [{table}] (written or as an example)"
            );
        }
    }

    #[test]
    fn the_starter_loads_without_a_problem() {
        let settings = load_str("starter", STARTER_CONFIG, &|_| None).unwrap();
        assert_eq!(settings.channels.len(), 2);
        assert_eq!(settings.clients.len(), 2);
        assert!(settings.marketplace.is_none());
    }

    #[test]
    fn the_defaults_it_writes_are_the_defaults_tollgate_applies() {
        let written = load_str("starter", STARTER_CONFIG, &|_| None).unwrap();
        let defaults = load_str("empty", "", &|_| None).unwrap();
        let sections = |s: &crate::config::Settings| {
            let mut schedule = s.schedule.clone();
            schedule.report_notify.clear();
            vec![
                format!("{:?}", s.server),
                format!("{:?} {}", s.database, s.database.url.expose()),
                format!("{:?}", s.ledger),
                format!("{:?}", s.privacy),
                format!("{:?}", s.upstream),
                format!("{:?} {}", s.alerts.delivery, s.alerts.suggest_days),
                format!("{schedule:?}"),
                format!("{:?}", s.metrics),
            ]
        };
        assert_eq!(sections(&written), sections(&defaults));
    }
}
