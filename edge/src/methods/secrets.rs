//! Tenant secrets for both dialects (clawgate extensions): `secrets.set {name,
//! value}`, `secrets.list`, `secrets.delete {name}`. The secrets (provider API
//! keys, channel bot tokens) belong to the caller's tenant; the auth service
//! seals them at rest and decides who may manage them (admins).
//!
//! Answers: a secret is `{name, keyId, createdAtMs, updatedAtMs}` (goclaw:
//! `{name, key_id, created_at_ms, updated_at_ms}`), `secrets.list` is
//! `{secrets: [...]}`, `secrets.delete` is `{deleted, name}`.
//!
//! Invariants: a secret's value goes from the params to the auth service and
//! nowhere else: no answer carries it (not even `secrets.set`'s), [`Call`]'s
//! `Debug` prints it as `<redacted>`, and the edge never logs request params;
//! OpenClaw params are closed objects, goclaw ones lenient.

use std::fmt;

use clawgate_proto::auth::{
    AuthApi, AuthClient, DeleteSecretRequest, ListSecretsRequest, SecretInfo, SetSecretRequest,
};
use clawgate_proto::{Principal, ServiceError};
use serde_json::{Value, json};

use super::decl::{Job, Method, Outcome, Request, Role, Runs, Scope, declared};
use crate::params::{Obj, Style};
use crate::state::EdgeState;

/// Longest secret name accepted.
const MAX_NAME_CHARS: usize = 128;
/// Longest secret value accepted, in characters.
const MAX_VALUE_CHARS: usize = 64 * 1024;

/// Every method of this family is for admins.
pub const METHODS: &[Method] = &[
    Method::call(
        "secrets.set",
        Some(Scope::Admin),
        Some(Role::Admin),
        parse_call,
    ),
    Method::call(
        "secrets.list",
        Some(Scope::Admin),
        Some(Role::Admin),
        parse_call,
    ),
    Method::call(
        "secrets.delete",
        Some(Scope::Admin),
        Some(Role::Admin),
        parse_call,
    ),
];

/// A validated call.
#[derive(Clone, PartialEq)]
pub enum Call {
    Set { name: String, value: String },
    List,
    Delete { name: String },
}

impl fmt::Debug for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Set { name, .. } => f
                .debug_struct("Set")
                .field("name", name)
                .field("value", &"<redacted>")
                .finish(),
            Self::List => f.write_str("List"),
            Self::Delete { name } => f.debug_struct("Delete").field("name", name).finish(),
        }
    }
}

/// Validates `params` of `method`; `Ok(None)` when `method` is not a secrets
/// method. Errors never quote the value.
pub fn parse(method: &str, params: &Value, style: Style) -> Result<Option<Call>, ServiceError> {
    let bad = |why: String| ServiceError::invalid(format!("invalid {method} params: {why}"));
    let obj = Obj::new(params, "").map_err(bad)?;
    let closed = |allowed: &[&str]| match style {
        Style::Camel => obj.closed(allowed).map_err(bad),
        Style::Snake => Ok(()),
    };
    let call = match method {
        "secrets.set" => {
            closed(&["name", "value"])?;
            let name = obj.req_str_len("name", MAX_NAME_CHARS).map_err(bad)?;
            let value = obj.req_str_len("value", MAX_VALUE_CHARS).map_err(bad)?;
            Call::Set {
                name: name.trim().to_owned(),
                value: value.to_owned(),
            }
        }
        "secrets.list" => {
            closed(&[])?;
            Call::List
        }
        "secrets.delete" => {
            closed(&["name"])?;
            let name = obj.req_str_len("name", MAX_NAME_CHARS).map_err(bad)?;
            Call::Delete {
                name: name.trim().to_owned(),
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(call))
}

/// The table's parser: [`parse`] for the declared method.
fn parse_call(request: &Request<'_>) -> Result<Box<dyn Job>, ServiceError> {
    declared(parse(request.method, request.params, request.style)?)
}

/// A secret as both dialects show it: never its value.
pub fn secret_json(secret: &SecretInfo, style: Style) -> Value {
    let fields = [
        ("name", "name", json!(secret.name)),
        ("keyId", "key_id", json!(secret.key_id)),
        ("createdAtMs", "created_at_ms", json!(secret.created_at_ms)),
        ("updatedAtMs", "updated_at_ms", json!(secret.updated_at_ms)),
    ];
    Value::Object(style.object(fields))
}

impl Runs for Call {
    async fn execute(self, state: &EdgeState, principal: &Principal, style: Style) -> Outcome {
        run(self, &state.services.auth, principal, style)
            .await
            .into()
    }
}

/// Runs a validated call.
pub async fn run(
    call: Call,
    auth: &AuthClient,
    principal: &Principal,
    style: Style,
) -> Result<Value, ServiceError> {
    match call {
        Call::Set { name, value } => auth
            .set_secret(principal, SetSecretRequest { name, value })
            .await
            .map(|info| secret_json(&info, style)),
        Call::List => auth
            .list_secrets(principal, ListSecretsRequest {})
            .await
            .map(|list| {
                let secrets: Vec<Value> =
                    list.secrets.iter().map(|s| secret_json(s, style)).collect();
                json!({ "secrets": secrets })
            }),
        Call::Delete { name } => auth
            .delete_secret(principal, DeleteSecretRequest { name: name.clone() })
            .await
            .map(|res| json!({ "deleted": res.deleted, "name": name })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_redaction() {
        let set = parse(
            "secrets.set",
            &json!({"name": " openai ", "value": "sk-very-secret"}),
            Style::Camel,
        )
        .expect("valid")
        .expect("a secrets call");
        assert_eq!(
            set,
            Call::Set {
                name: "openai".into(),
                value: "sk-very-secret".into()
            }
        );
        let printed = format!("{set:?}");
        assert!(!printed.contains("sk-very-secret"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");

        let extra = json!({"name": "n", "value": "sk-very-secret", "x": 1});
        let err = parse("secrets.set", &extra, Style::Camel).unwrap_err();
        assert!(err.message.contains("'x'"), "{}", err.message);
        assert!(!err.message.contains("sk-very-secret"));
        assert!(parse("secrets.set", &extra, Style::Snake).is_ok());
        let typed = parse(
            "secrets.set",
            &json!({"name": "n", "value": 5}),
            Style::Snake,
        );
        assert_eq!(
            typed.unwrap_err().message,
            "invalid secrets.set params: at /value: must be string"
        );
        assert!(
            parse(
                "secrets.set",
                &json!({"name": "n", "value": ""}),
                Style::Camel
            )
            .is_err()
        );
        assert!(parse("secrets.set", &json!({"value": "v"}), Style::Camel).is_err());
        let huge = json!({"name": "n", "value": "x".repeat(MAX_VALUE_CHARS + 1)});
        assert!(parse("secrets.set", &huge, Style::Camel).is_err());

        assert_eq!(
            parse("secrets.list", &json!({}), Style::Camel),
            Ok(Some(Call::List))
        );
        assert!(parse("secrets.list", &json!({"x": 1}), Style::Camel).is_err());
        assert_eq!(
            parse("secrets.delete", &json!({"name": "openai"}), Style::Snake),
            Ok(Some(Call::Delete {
                name: "openai".into()
            }))
        );
        assert!(parse("secrets.delete", &json!({}), Style::Snake).is_err());
        assert_eq!(parse("chat.send", &json!({}), Style::Camel), Ok(None));
    }

    #[test]
    fn answers_name_fields_per_dialect_and_hold_no_value() {
        let info = SecretInfo {
            name: "openai".into(),
            key_id: "k1".into(),
            created_at_ms: 1,
            updated_at_ms: 2,
        };
        assert_eq!(
            secret_json(&info, Style::Camel),
            json!({"name": "openai", "keyId": "k1", "createdAtMs": 1, "updatedAtMs": 2})
        );
        assert_eq!(
            secret_json(&info, Style::Snake),
            json!({"name": "openai", "key_id": "k1", "created_at_ms": 1, "updated_at_ms": 2})
        );
    }
}
