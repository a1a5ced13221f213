//! Reading several YAML files and merging them as Knot Resolver's manager does: mappings
//! recursively; any other value set in two files is an error naming the key and both files.

use super::ConfigError;
use serde_yaml_ng::{Mapping, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Read `paths` in order and merge them into one mapping.
pub fn read_merged(paths: &[PathBuf]) -> Result<Mapping, ConfigError> {
    let mut merged = Mapping::new();
    let mut origins = BTreeMap::new();
    for path in paths {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let value: Value = serde_yaml_ng::from_str(&text).map_err(|source| ConfigError::Yaml {
            path: path.clone(),
            source,
        })?;
        let mapping = match value {
            Value::Mapping(m) => m,
            Value::Null => Mapping::new(),
            _ => return Err(ConfigError::NotMapping { path: path.clone() }),
        };
        merge(&mut merged, mapping, "", path, &mut origins)?;
    }
    Ok(merged)
}

/// Merge `from` into `into`: mappings recursively, any other value set twice is a conflict.
fn merge(
    into: &mut Mapping,
    from: Mapping,
    prefix: &str,
    path: &Path,
    origins: &mut BTreeMap<String, PathBuf>,
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
                merge(existing, incoming, &full, path, origins)?;
            }
            (Some(_), _) => {
                return Err(ConfigError::Conflict {
                    first: origins.get(&full).cloned().unwrap_or_default(),
                    key: full,
                    second: path.to_owned(),
                });
            }
            (None, value) => {
                record_origins(&value, &full, path, origins);
                into.insert(key, value);
            }
        }
    }
    Ok(())
}

fn record_origins(value: &Value, key: &str, path: &Path, origins: &mut BTreeMap<String, PathBuf>) {
    origins.insert(key.to_owned(), path.to_owned());
    if let Value::Mapping(m) = value {
        for (k, v) in m {
            if let Value::String(k) = k {
                record_origins(v, &format!("{key}.{k}"), path, origins);
            }
        }
    }
}
