//! Reading several YAML files and merging them as Knot Resolver's manager does: mappings
//! recursively; any other value set in two files is an error naming the key and both places.
//! Each file's text is kept, and which file set each key, so that an error found after the
//! merge can still point at the line that caused it (see `locate`).

use super::{ConfigError, locate};
use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One configuration file: its path, its text, and its top-level mapping.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub text: String,
    mapping: Mapping,
}

impl Source {
    /// Read and parse the file at `path`.
    pub fn read(path: &Path) -> Result<Source, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Source::parse(path.to_owned(), text)
    }

    /// Parse `text`, read from `path`.
    pub fn parse(path: PathBuf, text: String) -> Result<Source, ConfigError> {
        let value: Value = serde_yaml_ng::from_str(&text).map_err(|e| match e.location() {
            Some(l) => ConfigError::At {
                path: path.clone(),
                line: l.line(),
                column: l.column(),
                message: format!("not valid YAML: {e}"),
            },
            None => ConfigError::InFile {
                path: path.clone(),
                message: format!("not valid YAML: {e}"),
            },
        })?;
        let mapping = match value {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            _ => {
                return Err(ConfigError::InFile {
                    path,
                    message: "expected a mapping (key: value) at the top level".into(),
                });
            }
        };
        Ok(Source {
            path,
            text,
            mapping,
        })
    }

    /// `path:line:column` of `key`'s value in this file, or the path alone.
    pub fn place(&self, key: &str) -> String {
        match locate::find(&self.text, key) {
            Some((line, column)) => format!("{}:{line}:{column}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }
}

/// The files merged, and which of them set each key (a dotted path) and every key under it.
#[derive(Debug, Default)]
pub struct Merged {
    pub mapping: Mapping,
    pub origins: BTreeMap<String, usize>,
}

/// Merge `sources` in order.
pub fn merge(sources: &[Source]) -> Result<Merged, ConfigError> {
    let mut merged = Merged::default();
    for (index, source) in sources.iter().enumerate() {
        merge_into(
            &mut merged.mapping,
            source.mapping.clone(),
            "",
            index,
            sources,
            &mut merged.origins,
        )?;
    }
    Ok(merged)
}

/// Merge `from` (of `sources[index]`) into `into`: mappings recursively, any other value set
/// twice is a conflict.
fn merge_into(
    into: &mut Mapping,
    from: Mapping,
    prefix: &str,
    index: usize,
    sources: &[Source],
    origins: &mut BTreeMap<String, usize>,
) -> Result<(), ConfigError> {
    for (key, value) in from {
        let name = match &key {
            Value::String(s) => s.clone(),
            other => serde_yaml_ng::to_string(other)
                .unwrap_or_default()
                .trim()
                .to_owned(),
        };
        let full = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        match (into.get_mut(&key), value) {
            (Some(Value::Mapping(existing)), Value::Mapping(incoming)) => {
                merge_into(existing, incoming, &full, index, sources, origins)?;
            }
            (Some(_), _) => {
                let first = origins
                    .get(&full)
                    .map_or_else(String::new, |first| sources[*first].place(&full));
                let second = &sources[index];
                let message = format!("{full} is also set in {first}: set it in one file only");
                return Err(match locate::find(&second.text, &full) {
                    Some((line, column)) => ConfigError::At {
                        path: second.path.clone(),
                        line,
                        column,
                        message,
                    },
                    None => ConfigError::InFile {
                        path: second.path.clone(),
                        message,
                    },
                });
            }
            (None, value) => {
                record_origins(&value, &full, index, origins);
                into.insert(key, value);
            }
        }
    }
    Ok(())
}

fn record_origins(value: &Value, key: &str, index: usize, origins: &mut BTreeMap<String, usize>) {
    origins.insert(key.to_owned(), index);
    if let Value::Mapping(m) = value {
        for (k, v) in m {
            if let Value::String(k) = k {
                record_origins(v, &format!("{key}.{k}"), index, origins);
            }
        }
    }
}
