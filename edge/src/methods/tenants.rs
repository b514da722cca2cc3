//! Tenant and membership methods for both dialects (clawgate extensions):
//! `tenants.list`, `tenants.get`, `tenants.create`, `tenants.update`,
//! `tenants.users.list`, `tenants.users.add`, `tenants.users.remove`.
//!
//! Params: OpenClaw objects are closed and camelCase; goclaw objects are
//! lenient (unknown keys ignored) and take the snake_case names goclaw uses
//! (`tenant_id`, `user_id`, `display_name`) as well as the camelCase ones.
//! Answers: a tenant is `{id, slug, name, status, createdAtMs, updatedAtMs}`, a
//! user `{tenantId, userId, role, displayName, createdAtMs, updatedAtMs}`
//! (goclaw: the same in snake_case).
//!
//! Invariants: only the auth service decides who may see or change which tenant
//! and membership (owners manage tenants; admins their tenant's users; an
//! operator sees itself); the edge never widens a call beyond the caller's
//! principal. Removing a user disconnects every socket of that user of that
//! tenant on every edge (close 4001 "user removed", see
//! [`crate::notify::disconnect_user`]), after the answer is queued; disabling a
//! tenant closes every socket of that tenant the same way ("tenant disabled").

use clawgate_proto::auth::{
    AuthApi, AuthClient, CreateTenantRequest, GetTenantRequest, ListTenantsRequest,
    ListUsersRequest, PutUserRequest, RemoveUserRequest, Tenant, UpdateTenantRequest, User,
};
use clawgate_proto::{Principal, ServiceError};
use serde_json::{Value, json};

use super::decl::{Job, Method, Outcome, Request, Role, Runs, Scope, declared};
use crate::notify;
use crate::params::{Obj, Style};
use crate::state::EdgeState;

/// Longest tenant id, slug or user id accepted.
const MAX_ID_CHARS: usize = 128;
/// Longest tenant or display name accepted.
const MAX_NAME_CHARS: usize = 200;
/// Tenant statuses (`tenants.update {status}`).
const STATUSES: [&str; 2] = ["active", "disabled"];
/// Roles of a tenant's user (`tenants.users.add {role}`).
const ROLES: [&str; 3] = ["admin", "operator", "viewer"];

/// `tenants.list`, `tenants.get` and `tenants.users.list` are for any
/// member (read only), the others for admins; the auth service narrows what
/// each caller sees and narrows tenant changes to owners.
pub const METHODS: &[Method] = &[
    Method::call(
        "tenants.list",
        Some(Scope::Read),
        Some(Role::Viewer),
        parse_call,
    ),
    Method::call(
        "tenants.get",
        Some(Scope::Read),
        Some(Role::Viewer),
        parse_call,
    ),
    Method::call(
        "tenants.create",
        Some(Scope::Admin),
        Some(Role::Admin),
        parse_call,
    ),
    Method::call(
        "tenants.update",
        Some(Scope::Admin),
        Some(Role::Admin),
        parse_call,
    ),
    Method::call(
        "tenants.users.list",
        Some(Scope::Read),
        Some(Role::Viewer),
        parse_call,
    ),
    Method::call(
        "tenants.users.add",
        Some(Scope::Admin),
        Some(Role::Admin),
        parse_call,
    ),
    Method::call(
        "tenants.users.remove",
        Some(Scope::Admin),
        Some(Role::Admin),
        parse_call,
    ),
];

/// A validated call.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    List,
    Get {
        tenant_id: String,
    },
    Create {
        id: String,
        slug: String,
        name: String,
    },
    Update {
        tenant_id: String,
        name: Option<String>,
        status: Option<String>,
    },
    ListUsers {
        tenant_id: String,
    },
    AddUser {
        tenant_id: String,
        user_id: String,
        role: String,
        display_name: String,
    },
    RemoveUser {
        tenant_id: String,
        user_id: String,
    },
}

/// A param's accepted names per style: OpenClaw takes the camelCase one only,
/// goclaw the snake_case one first, then the camelCase one.
struct Key {
    camel: &'static str,
    snake: &'static str,
}

const TENANT_ID: Key = Key {
    camel: "tenantId",
    snake: "tenant_id",
};
const USER_ID: Key = Key {
    camel: "userId",
    snake: "user_id",
};
const DISPLAY_NAME: Key = Key {
    camel: "displayName",
    snake: "display_name",
};

/// Reads params of one call in one style.
struct Params<'a> {
    obj: Obj<'a>,
    style: Style,
}

impl<'a> Params<'a> {
    fn new(params: &'a Value, style: Style, allowed: &[&str]) -> Result<Self, String> {
        let obj = Obj::new(params, "")?;
        if style == Style::Camel {
            obj.closed(allowed)?;
        }
        Ok(Self { obj, style })
    }

    /// The names `key` goes by in this style.
    fn names(&self, key: &Key) -> Vec<&'static str> {
        match self.style {
            Style::Camel => vec![key.camel],
            Style::Snake if key.camel == key.snake => vec![key.snake],
            Style::Snake => vec![key.snake, key.camel],
        }
    }

    /// An optional string of at most `max` characters, trimmed; the first name
    /// present wins.
    fn opt(&self, key: &Key, max: usize) -> Result<Option<String>, String> {
        for name in self.names(key) {
            if self.obj.has(name) {
                return self.opt_named(name, max);
            }
        }
        Ok(None)
    }

    fn opt_named(&self, name: &str, max: usize) -> Result<Option<String>, String> {
        let Some(value) = self.obj.opt_str(name)? else {
            return Ok(None);
        };
        if value.chars().count() > max {
            return Err(format!(
                "at /{name}: must NOT have more than {max} characters"
            ));
        }
        Ok(Some(value.trim().to_owned()))
    }

    /// A required, non-empty string of at most `max` characters.
    fn req(&self, key: &Key, max: usize) -> Result<String, String> {
        let names = self.names(key);
        match self.opt(key, max)? {
            Some(value) if !value.is_empty() => Ok(value),
            Some(_) => {
                let name = names.iter().find(|n| self.obj.has(n)).unwrap_or(&names[0]);
                Err(format!("at /{name}: must NOT have fewer than 1 characters"))
            }
            None => Err(format!(
                "at root: must have required property '{}'",
                names[0]
            )),
        }
    }

    /// An optional string that must be one of `allowed`.
    fn opt_enum(&self, key: &Key, allowed: &[&str]) -> Result<Option<String>, String> {
        let value = self.opt(key, MAX_NAME_CHARS)?;
        match value {
            Some(value) if !allowed.contains(&value.as_str()) => {
                let name = self
                    .names(key)
                    .into_iter()
                    .find(|n| self.obj.has(n))
                    .unwrap_or(key.camel);
                Err(format!(
                    "at /{name}: must be equal to one of the allowed values"
                ))
            }
            other => Ok(other),
        }
    }
}

const fn plain(name: &'static str) -> Key {
    Key {
        camel: name,
        snake: name,
    }
}

/// Validates `params` of `method`; `Ok(None)` when `method` is not one of this
/// module's.
pub fn parse(method: &str, params: &Value, style: Style) -> Result<Option<Call>, ServiceError> {
    let bad = |why: String| ServiceError::invalid(format!("invalid {method} params: {why}"));
    let call = match method {
        "tenants.list" => {
            Params::new(params, style, &[]).map_err(bad)?;
            Call::List
        }
        "tenants.get" => {
            let p = Params::new(params, style, &["tenantId"]).map_err(bad)?;
            Call::Get {
                tenant_id: p
                    .opt(&TENANT_ID, MAX_ID_CHARS)
                    .map_err(bad)?
                    .unwrap_or_default(),
            }
        }
        "tenants.create" => {
            let p = Params::new(params, style, &["id", "slug", "name"]).map_err(bad)?;
            Call::Create {
                id: p
                    .opt(&plain("id"), MAX_ID_CHARS)
                    .map_err(bad)?
                    .unwrap_or_default(),
                slug: p.req(&plain("slug"), MAX_ID_CHARS).map_err(bad)?,
                name: p.req(&plain("name"), MAX_NAME_CHARS).map_err(bad)?,
            }
        }
        "tenants.update" => {
            let p = Params::new(params, style, &["tenantId", "name", "status"]).map_err(bad)?;
            let name = p.opt(&plain("name"), MAX_NAME_CHARS).map_err(bad)?;
            if name.as_deref() == Some("") {
                return Err(bad("at /name: must NOT have fewer than 1 characters".into()));
            }
            Call::Update {
                tenant_id: p.req(&TENANT_ID, MAX_ID_CHARS).map_err(bad)?,
                name,
                status: p.opt_enum(&plain("status"), &STATUSES).map_err(bad)?,
            }
        }
        "tenants.users.list" => {
            let p = Params::new(params, style, &["tenantId"]).map_err(bad)?;
            Call::ListUsers {
                tenant_id: p
                    .opt(&TENANT_ID, MAX_ID_CHARS)
                    .map_err(bad)?
                    .unwrap_or_default(),
            }
        }
        "tenants.users.add" => {
            let allowed = ["tenantId", "userId", "role", "displayName"];
            let p = Params::new(params, style, &allowed).map_err(bad)?;
            let role = p.opt_enum(&plain("role"), &ROLES).map_err(bad)?;
            Call::AddUser {
                tenant_id: p
                    .opt(&TENANT_ID, MAX_ID_CHARS)
                    .map_err(bad)?
                    .unwrap_or_default(),
                user_id: p.req(&USER_ID, MAX_ID_CHARS).map_err(bad)?,
                role: role
                    .ok_or_else(|| bad("at root: must have required property 'role'".into()))?,
                display_name: p
                    .opt(&DISPLAY_NAME, MAX_NAME_CHARS)
                    .map_err(bad)?
                    .unwrap_or_default(),
            }
        }
        "tenants.users.remove" => {
            let p = Params::new(params, style, &["tenantId", "userId"]).map_err(bad)?;
            Call::RemoveUser {
                tenant_id: p
                    .opt(&TENANT_ID, MAX_ID_CHARS)
                    .map_err(bad)?
                    .unwrap_or_default(),
                user_id: p.req(&USER_ID, MAX_ID_CHARS).map_err(bad)?,
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

/// A tenant as both dialects show it.
pub fn tenant_json(tenant: &Tenant, style: Style) -> Value {
    Value::Object(style.object([
        ("id", "id", json!(tenant.id)),
        ("slug", "slug", json!(tenant.slug)),
        ("name", "name", json!(tenant.name)),
        ("status", "status", json!(tenant.status)),
        ("createdAtMs", "created_at_ms", json!(tenant.created_at_ms)),
        ("updatedAtMs", "updated_at_ms", json!(tenant.updated_at_ms)),
    ]))
}

/// A user (membership) as both dialects show it.
pub fn user_json(user: &User, style: Style) -> Value {
    Value::Object(style.object([
        ("tenantId", "tenant_id", json!(user.tenant_id)),
        ("userId", "user_id", json!(user.user_id)),
        ("role", "role", json!(user.role)),
        ("displayName", "display_name", json!(user.display_name)),
        ("createdAtMs", "created_at_ms", json!(user.created_at_ms)),
        ("updatedAtMs", "updated_at_ms", json!(user.updated_at_ms)),
    ]))
}

impl Runs for Call {
    async fn execute(self, state: &EdgeState, principal: &Principal, style: Style) -> Outcome {
        run(self, &state.services.auth, principal, style).await
    }
}

/// Runs a validated call; returns the answer and what to publish once it is sent.
pub async fn run(call: Call, auth: &AuthClient, principal: &Principal, style: Style) -> Outcome {
    let result = match call {
        Call::List => auth
            .list_tenants(principal, ListTenantsRequest {})
            .await
            .map(|list| {
                let tenants: Vec<Value> =
                    list.tenants.iter().map(|t| tenant_json(t, style)).collect();
                json!({ "tenants": tenants })
            }),
        Call::Get { tenant_id } => auth
            .get_tenant(principal, GetTenantRequest { tenant_id })
            .await
            .map(|tenant| tenant_json(&tenant, style)),
        Call::Create { id, slug, name } => auth
            .create_tenant(principal, CreateTenantRequest { id, slug, name })
            .await
            .map(|tenant| tenant_json(&tenant, style)),
        Call::Update {
            tenant_id,
            name,
            status,
        } => {
            let request = UpdateTenantRequest {
                tenant_id,
                name,
                status,
            };
            let updated = auth.update_tenant(principal, request).await;
            // A disabled tenant's live sockets close, on every edge.
            let notices = match &updated {
                Ok(tenant) if tenant.status == "disabled" => {
                    vec![notify::disconnect_tenant(&tenant.id).into()]
                }
                _ => Vec::new(),
            };
            let result = updated.map(|tenant| tenant_json(&tenant, style));
            return Outcome { result, notices };
        }
        Call::ListUsers { tenant_id } => auth
            .list_users(principal, ListUsersRequest { tenant_id })
            .await
            .map(|list| {
                let users: Vec<Value> = list.users.iter().map(|u| user_json(u, style)).collect();
                json!({ "users": users })
            }),
        Call::AddUser {
            tenant_id,
            user_id,
            role,
            display_name,
        } => {
            let request = PutUserRequest {
                tenant_id,
                user_id,
                role,
                display_name,
            };
            auth.put_user(principal, request)
                .await
                .map(|user| user_json(&user, style))
        }
        Call::RemoveUser { tenant_id, user_id } => {
            return remove_user(auth, principal, style, tenant_id, user_id).await;
        }
    };
    result.into()
}

/// `tenants.users.remove`: the answer, and the disconnect of every socket of
/// the removed user.
async fn remove_user(
    auth: &AuthClient,
    principal: &Principal,
    style: Style,
    tenant_id: String,
    user_id: String,
) -> Outcome {
    let request = RemoveUserRequest {
        tenant_id: tenant_id.clone(),
        user_id: user_id.clone(),
    };
    let response = match auth.remove_user(principal, request).await {
        Ok(response) => response,
        Err(err) => return Err(err).into(),
    };
    // The service names whose sockets to close; the request (the caller's
    // tenant by default) stands in for what it left empty.
    let pick = |answer: &str, asked: &str| -> String {
        if answer.is_empty() {
            asked.to_owned()
        } else {
            answer.to_owned()
        }
    };
    let default_tenant = if tenant_id.is_empty() {
        principal.tenant_id.as_str()
    } else {
        tenant_id.as_str()
    };
    let tenant = pick(&response.tenant_id, default_tenant);
    let user = pick(&response.user_id, &user_id);
    let payload = Value::Object(style.object([
        ("removed", "removed", json!(response.removed)),
        ("tenantId", "tenant_id", json!(tenant)),
        ("userId", "user_id", json!(user)),
    ]));
    let notices = vec![notify::disconnect_user(&tenant, &user).into()];
    Outcome {
        result: Ok(payload),
        notices,
    }
}

#[cfg(test)]
#[path = "tenants_tests.rs"]
mod tests;
