//! A diffusers JSON config read key by key, as `from_pretrained` reads it: an absent key (or one named in
//! `_use_default_values`) takes the default the caller gives, a null one is "not set" (which is not always the
//! default: `attention_head_dim` null means one head, absent means 8 channels per head), and every error names
//! the file and the key.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub struct Config {
    path: PathBuf,
    map: Map<String, Value>,
}

impl Config {
    pub fn read(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| Error::data(path, format!("not a readable JSON config: {e}")))?;
        let Value::Object(mut map) = value else {
            return Err(Error::data(path, "not a JSON object"));
        };
        // Keys saved only to say "this was the default" are read as absent, as diffusers does.
        if let Some(Value::Array(defaulted)) = map.remove("_use_default_values") {
            for key in defaulted.iter().filter_map(Value::as_str) {
                map.remove(key);
            }
        }
        Ok(Config {
            path: path.to_path_buf(),
            map,
        })
    }

    pub fn error(&self, message: impl Into<String>) -> Error {
        Error::data(&self.path, message)
    }

    /// The value of `key` as written, null included; None where absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    fn wrong(&self, key: &str, value: &Value, want: &str) -> Error {
        self.error(format!("\"{key}\" is {value}, not {want}"))
    }

    /// A whole number; None where null, or absent with no default.
    pub fn uint(&self, key: &str, default: Option<usize>) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(default),
            Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| self.wrong(key, v, "a whole number")),
        }
    }

    pub fn number(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.wrong(key, v, "a number")),
        }
    }

    pub fn boolean(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.wrong(key, v, "true or false")),
        }
    }

    /// A string; None where null, or absent with no default.
    pub fn string(&self, key: &str, default: Option<&str>) -> Result<Option<String>> {
        match self.get(key) {
            None => Ok(default.map(str::to_string)),
            Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_str()
                .map(|s| Some(s.to_string()))
                .ok_or_else(|| self.wrong(key, v, "a string")),
        }
    }

    pub fn strings(&self, key: &str, default: &[&str]) -> Result<Vec<String>> {
        match self.get(key) {
            None => Ok(default.iter().map(|s| s.to_string()).collect()),
            Some(v) => v
                .as_array()
                .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_string)).collect())
                .ok_or_else(|| self.wrong(key, v, "a list of strings")),
        }
    }

    pub fn uints(&self, key: &str, default: &[usize]) -> Result<Vec<usize>> {
        match self.get(key) {
            None => Ok(default.to_vec()),
            Some(v) => v
                .as_array()
                .and_then(|a| {
                    a.iter()
                        .map(|n| n.as_u64().and_then(|n| usize::try_from(n).ok()))
                        .collect()
                })
                .ok_or_else(|| self.wrong(key, v, "a list of whole numbers")),
        }
    }

    /// Refuses `key` unless its value (or, absent, `default`) is one of `allowed`; `why` says what diffuse lacks.
    pub fn only(&self, key: &str, default: &Value, allowed: &[Value], why: &str) -> Result<()> {
        let value = self.get(key).unwrap_or(default);
        if allowed.contains(value) {
            return Ok(());
        }
        Err(self.error(format!("\"{key}\" is {value}: {why}")))
    }
}
