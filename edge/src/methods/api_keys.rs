//! `api_keys.create`, `api_keys.list`, `api_keys.revoke` for both dialects (a
//! goclaw method set, offered to OpenClaw admins as a clawgate extension).
//!
//! Invariants: only the auth service decides who may manage keys (admins) and
//! which tenant and user a key belongs to, never the params; the raw
//! key appears once, in the `create` answer, and nowhere else (not in `list`, not
//! in logs); goclaw answers use snake_case, OpenClaw ones camelCase.

use clawgate_proto::auth::{
    ApiKey, AuthApi, AuthClient, CreateApiKeyRequest, ListApiKeysRequest, RevokeApiKeyRequest,
};
use clawgate_proto::{Principal, ServiceError};
use clawgate_runtime::clock::now_ms;
use serde_json::{Value, json};

use super::decl::{Job, Method, Outcome, Request, Role, Runs, Scope, declared};
use crate::params::{Obj, Style};
use crate::state::EdgeState;

pub const METHODS: &[Method] = &[
    Method::call(
        "api_keys.create",
        Some(Scope::Admin),
        Some(Role::Admin),
        parse_call,
    ),
    Method::call(
        "api_keys.list",
        Some(Scope::Admin),
        Some(Role::Admin),
        parse_call,
    ),
    Method::call(
        "api_keys.revoke",
        Some(Scope::Admin),
        Some(Role::Admin),
        parse_call,
    ),
];

/// Longest accepted `expires_in`, in seconds (ten years).
const MAX_EXPIRES_IN_SECS: i64 = 10 * 366 * 24 * 3600;

/// A validated API key call.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Create {
        name: String,
        scopes: Vec<String>,
        owner_id: String,
        /// Seconds from now, or an absolute time (epoch ms); at most one is set.
        expires_in_secs: Option<i64>,
        expires_at_ms: Option<i64>,
    },
    List,
    Revoke {
        id: String,
    },
}

const CAMEL_CREATE_KEYS: [&str; 5] = ["name", "scopes", "userId", "expiresAtMs", "expiresIn"];

fn bad(method: &str) -> impl Fn(String) -> ServiceError + '_ {
    move |why| ServiceError::invalid(format!("invalid {method} params: {why}"))
}

/// Validates `params` of `method`; `Ok(None)` when `method` is not an API key method.
pub fn parse(method: &str, params: &Value, style: Style) -> Result<Option<Call>, ServiceError> {
    let bad = bad(method);
    let obj = Obj::new(params, "").map_err(&bad)?;
    let call = match method {
        "api_keys.create" => {
            if style == Style::Camel {
                obj.closed(&CAMEL_CREATE_KEYS).map_err(&bad)?;
            }
            let name = obj.req_str_len("name", 100).map_err(&bad)?.to_owned();
            let scopes = obj
                .opt_str_array("scopes")
                .map_err(&bad)?
                .unwrap_or_default();
            let (owner_keys, in_key, at_key): (&[&str], &str, &str) = match style {
                Style::Camel => (&["userId"], "expiresIn", "expiresAtMs"),
                Style::Snake => (
                    &["owner_id", "user_id", "userId"],
                    "expires_in",
                    "expires_at_ms",
                ),
            };
            let mut owner_id = String::new();
            for key in owner_keys {
                if let Some(owner) = obj.opt_str(key).map_err(&bad)?
                    && owner_id.is_empty()
                {
                    owner_id = owner.trim().to_owned();
                }
            }
            let expires_in_secs = obj.opt_int(in_key, 1, MAX_EXPIRES_IN_SECS).map_err(&bad)?;
            let expires_at_ms = obj.opt_int(at_key, 1, i64::MAX).map_err(&bad)?;
            if expires_in_secs.is_some() && expires_at_ms.is_some() {
                return Err(bad(format!("give {in_key} or {at_key}, not both")));
            }
            Call::Create {
                name,
                scopes,
                owner_id,
                expires_in_secs,
                expires_at_ms,
            }
        }
        "api_keys.list" => {
            if style == Style::Camel {
                obj.closed(&[]).map_err(&bad)?;
            }
            Call::List
        }
        "api_keys.revoke" => {
            if style == Style::Camel {
                obj.closed(&["id"]).map_err(&bad)?;
            }
            Call::Revoke {
                id: obj.req_nonempty_str("id").map_err(&bad)?.to_owned(),
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

fn key_json(key: &ApiKey, style: Style) -> Value {
    let fields: [(&str, &str, Value); 11] = [
        ("id", "id", json!(key.id)),
        ("name", "name", json!(key.name)),
        ("prefix", "prefix", json!(key.prefix)),
        ("scopes", "scopes", json!(key.scopes)),
        ("tenantId", "tenant_id", json!(key.tenant_id)),
        ("ownerId", "owner_id", json!(key.owner_id)),
        ("createdBy", "created_by", json!(key.created_by)),
        ("createdAtMs", "created_at", json!(key.created_at_ms)),
        ("expiresAtMs", "expires_at", json!(key.expires_at_ms)),
        ("revokedAtMs", "revoked_at", json!(key.revoked_at_ms)),
        ("lastUsedAtMs", "last_used_at", json!(key.last_used_at_ms)),
    ];
    let mut map = style.object(fields);
    let revoked = key.revoked_at_ms > 0;
    map.insert("revoked".to_owned(), json!(revoked));
    Value::Object(map)
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
        Call::Create {
            name,
            scopes,
            owner_id,
            expires_in_secs,
            expires_at_ms,
        } => {
            let expires_at_ms = match (expires_in_secs, expires_at_ms) {
                (Some(secs), _) => now_ms().saturating_add(secs.saturating_mul(1000)),
                (None, Some(at)) => at,
                (None, None) => 0,
            };
            let request = CreateApiKeyRequest {
                name,
                scopes,
                owner_id,
                expires_at_ms,
            };
            let response = auth.create_api_key(principal, request).await?;
            let key = response
                .key
                .ok_or_else(|| ServiceError::internal("api key missing from the answer"))?;
            let mut out = key_json(&key, style);
            out["key"] = json!(response.secret);
            Ok(out)
        }
        Call::List => {
            let response = auth.list_api_keys(principal, ListApiKeysRequest {}).await?;
            let keys: Vec<Value> = response.keys.iter().map(|k| key_json(k, style)).collect();
            Ok(json!({ "keys": keys }))
        }
        Call::Revoke { id } => {
            let key = auth
                .revoke_api_key(principal, RevokeApiKeyRequest { id })
                .await?;
            let mut out = key_json(&key, style);
            out["revoked"] = json!(true);
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_params_per_dialect() {
        let call = parse(
            "api_keys.create",
            &json!({"name": "ci", "scopes": ["operator.read"], "owner_id": "carol", "expires_in": 60, "extra": 1}),
            Style::Snake,
        )
        .expect("valid");
        assert_eq!(
            call,
            Some(Call::Create {
                name: "ci".into(),
                scopes: vec!["operator.read".into()],
                owner_id: "carol".into(),
                expires_in_secs: Some(60),
                expires_at_ms: None,
            })
        );
        assert!(
            parse(
                "api_keys.create",
                &json!({"name": "ci", "scopes": [], "owner_id": "x"}),
                Style::Camel
            )
            .is_err()
        );
        assert!(parse("api_keys.create", &json!({"scopes": []}), Style::Snake).is_err());
        assert!(
            parse(
                "api_keys.create",
                &json!({"name": "n", "expires_in": 1, "expires_at_ms": 5}),
                Style::Snake
            )
            .is_err()
        );
        assert!(parse("api_keys.revoke", &json!({}), Style::Snake).is_err());
        assert_eq!(
            parse("api_keys.list", &json!({}), Style::Camel),
            Ok(Some(Call::List))
        );
        assert_eq!(parse("chat.send", &json!({}), Style::Camel), Ok(None));
    }

    #[test]
    fn key_json_names_per_dialect() {
        let key = ApiKey {
            id: "k".into(),
            owner_id: "carol".into(),
            ..Default::default()
        };
        assert_eq!(key_json(&key, Style::Snake)["owner_id"], "carol");
        assert_eq!(key_json(&key, Style::Camel)["ownerId"], "carol");
        assert_eq!(key_json(&key, Style::Camel)["revoked"], false);
    }
}
