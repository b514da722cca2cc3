//! Small schema checks for request params, with AJV-style messages
//! (`at /client/id: must be string`), so OpenClaw clients see the kind of text the
//! reference server sends in `invalid <method> params: …`.
//!
//! [`Style`] is the naming convention of a dialect's params and answers
//! (OpenClaw: closed objects, camelCase; goclaw: lenient, snake_case).
//!
//! Invariant: a check either returns the typed value or a message naming the JSON
//! pointer of the offending field; nothing here panics on odd input.

use serde_json::{Map, Value};

/// The naming of a dialect's answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// OpenClaw: closed params, camelCase.
    Camel,
    /// goclaw: lenient params, snake_case.
    Snake,
}

impl Style {
    /// An object with each field named per this style: `(camel, snake, value)`.
    pub fn object<const N: usize>(self, fields: [(&str, &str, Value); N]) -> Map<String, Value> {
        fields
            .into_iter()
            .map(|(camel, snake, value)| {
                let name = if self == Self::Camel { camel } else { snake };
                (name.to_owned(), value)
            })
            .collect()
    }
}

/// A JSON object being checked, with the pointer it was found at.
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

fn at(path: &str) -> &str {
    if path.is_empty() { "root" } else { path }
}

impl<'a> Obj<'a> {
    /// `value` must be an object (`path` "" is the root).
    pub fn new(value: &'a Value, path: &str) -> Result<Self, String> {
        match value {
            Value::Object(map) => Ok(Self {
                map,
                path: path.to_owned(),
            }),
            _ => Err(format!("at {}: must be object", at(path))),
        }
    }

    fn child(&self, key: &str) -> String {
        format!("{}/{key}", self.path)
    }

    /// Fails on any key not in `allowed` (a closed object).
    pub fn closed(&self, allowed: &[&str]) -> Result<(), String> {
        match self.map.keys().find(|key| !allowed.contains(&key.as_str())) {
            Some(key) => Err(format!(
                "at {}: unexpected property '{key}'",
                at(&self.path)
            )),
            None => Ok(()),
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key)
    }

    fn required(&self, key: &str) -> Result<&'a Value, String> {
        self.get(key)
            .ok_or_else(|| format!("at {}: must have required property '{key}'", at(&self.path)))
    }

    /// The object's fields.
    pub fn entries(&self) -> impl Iterator<Item = (&'a String, &'a Value)> + use<'a> {
        self.map.iter()
    }

    pub fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&'a str>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("at {}: must be string", self.child(key))),
        }
    }

    /// An optional string that, when present, is not empty.
    pub fn opt_nonempty_str(&self, key: &str) -> Result<Option<&'a str>, String> {
        match self.opt_str(key)? {
            Some("") => Err(format!(
                "at {}: must NOT have fewer than 1 characters",
                self.child(key)
            )),
            other => Ok(other),
        }
    }

    pub fn req_str(&self, key: &str) -> Result<&'a str, String> {
        self.required(key)?;
        self.opt_str(key).map(|s| s.unwrap_or_default())
    }

    pub fn req_nonempty_str(&self, key: &str) -> Result<&'a str, String> {
        self.required(key)?;
        self.opt_nonempty_str(key).map(|s| s.unwrap_or_default())
    }

    /// A required string with at most `max` characters (and at least one).
    pub fn req_str_len(&self, key: &str, max: usize) -> Result<&'a str, String> {
        let value = self.req_nonempty_str(key)?;
        if value.chars().count() > max {
            return Err(format!(
                "at {}: must NOT have more than {max} characters",
                self.child(key)
            ));
        }
        Ok(value)
    }

    /// An optional string with at most `max` characters.
    pub fn opt_str_len(&self, key: &str, max: usize) -> Result<Option<&'a str>, String> {
        let value = self.opt_str(key)?;
        if value.is_some_and(|v| v.chars().count() > max) {
            return Err(format!(
                "at {}: must NOT have more than {max} characters",
                self.child(key)
            ));
        }
        Ok(value)
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(format!("at {}: must be boolean", self.child(key))),
        }
    }

    /// An optional integer within `[min, max]`.
    pub fn opt_int(&self, key: &str, min: i64, max: i64) -> Result<Option<i64>, String> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let Some(n) = value.as_i64().or_else(|| {
            value
                .as_f64()
                .filter(|f| f.fract() == 0.0 && f.is_finite())
                .map(|f| f as i64)
        }) else {
            return Err(format!("at {}: must be integer", self.child(key)));
        };
        if n < min {
            return Err(format!("at {}: must be >= {min}", self.child(key)));
        }
        if n > max {
            return Err(format!("at {}: must be <= {max}", self.child(key)));
        }
        Ok(Some(n))
    }

    pub fn req_int(&self, key: &str, min: i64, max: i64) -> Result<i64, String> {
        self.required(key)?;
        self.opt_int(key, min, max).map(|n| n.unwrap_or_default())
    }

    /// An optional array of strings.
    pub fn opt_str_array(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(format!("at {}/{i}: must be string", self.child(key))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(_) => Err(format!("at {}: must be array", self.child(key))),
        }
    }

    pub fn opt_array(&self, key: &str) -> Result<Option<&'a Vec<Value>>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items)),
            Some(_) => Err(format!("at {}: must be array", self.child(key))),
        }
    }

    /// A nested object at `key`, if present.
    pub fn opt_obj(&self, key: &str) -> Result<Option<Obj<'a>>, String> {
        match self.get(key) {
            None => Ok(None),
            Some(value) => Obj::new(value, &self.child(key)).map(Some),
        }
    }

    pub fn req_obj(&self, key: &str) -> Result<Obj<'a>, String> {
        let value = self.required(key)?;
        Obj::new(value, &self.child(key))
    }

    /// A required string that must be one of `allowed`.
    pub fn req_enum(&self, key: &str, allowed: &[&str]) -> Result<&'a str, String> {
        let value = self.req_str(key)?;
        if allowed.contains(&value) {
            Ok(value)
        } else {
            Err(format!(
                "at {}: must be equal to one of the allowed values",
                self.child(key)
            ))
        }
    }

    /// An optional object whose values are all booleans.
    pub fn opt_bool_map(&self, key: &str) -> Result<(), String> {
        let Some(obj) = self.opt_obj(key)? else {
            return Ok(());
        };
        for (name, value) in obj.map {
            if !value.is_boolean() {
                return Err(format!("at {}/{name}: must be boolean", obj.path));
            }
        }
        Ok(())
    }

    /// A field of any JSON type; only its presence is checked by the caller.
    pub fn raw(&self, key: &str) -> Option<&'a Value> {
        self.get(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_name_the_field() {
        let value = json!({"a": 1, "b": {"c": "x"}, "n": 1.5});
        let obj = Obj::new(&value, "").expect("object");
        assert_eq!(
            obj.req_str("a").unwrap_err(),
            "at /a: must be string".to_owned()
        );
        assert_eq!(
            obj.req_str("z").unwrap_err(),
            "at root: must have required property 'z'"
        );
        let inner = obj.req_obj("b").expect("b");
        assert_eq!(
            inner.req_enum("c", &["y"]).unwrap_err(),
            "at /b/c: must be equal to one of the allowed values"
        );
        assert_eq!(
            obj.opt_int("n", 0, 9).unwrap_err(),
            "at /n: must be integer"
        );
        assert_eq!(obj.opt_int("a", 2, 9).unwrap_err(), "at /a: must be >= 2");
        assert!(obj.closed(&["a", "b"]).unwrap_err().contains("'n'"));
        assert!(Obj::new(&json!([]), "").is_err());
    }
}
