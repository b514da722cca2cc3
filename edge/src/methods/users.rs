//! `users.list` (OpenClaw v4): the user profiles of the caller's tenant, as
//! the auth service lets the caller see them (an admin every user of its
//! tenant, anyone else only itself; see `ListUsers`).
//!
//! A profile is `{id, displayName|null, avatarMime:null, mergedInto:null,
//! createdAt, updatedAt, emails:[], githubIdentity:null, hasAvatar:false,
//! role}`: users have no avatar, e-mail address, linked identity or merge
//! history here, so those say so. Params: the closed empty object.

use clawgate_proto::auth::{AuthApi, ListUsersRequest};
use clawgate_proto::{Principal, ServiceError};
use serde_json::{Value, json};

use super::decl::{Method, Outcome, Runs, Scope, job};
use crate::params::Style;
use crate::state::EdgeState;

pub const METHODS: &[Method] = &[
    Method::call("users.list", Some(Scope::Read), None, |request| {
        request.closed(&[])?;
        Ok(job(UsersList))
    })
    .since_v4(),
];

/// A validated `users.list`.
#[derive(Debug, Clone, PartialEq)]
pub struct UsersList;

impl Runs for UsersList {
    async fn execute(self, state: &EdgeState, principal: &Principal, _style: Style) -> Outcome {
        list(state, principal).await.into()
    }
}

async fn list(state: &EdgeState, principal: &Principal) -> Result<Value, ServiceError> {
    // The caller's own tenant (an empty tenant id), never one from params.
    let users = state
        .services
        .auth
        .list_users(principal, ListUsersRequest::default())
        .await?
        .users;
    let profiles: Vec<Value> = users
        .iter()
        .map(|user| {
            json!({
                "id": user.user_id,
                "displayName": (!user.display_name.is_empty()).then_some(&user.display_name),
                "avatarMime": null,
                "mergedInto": null,
                "createdAt": user.created_at_ms,
                "updatedAt": user.updated_at_ms,
                "emails": [],
                "githubIdentity": null,
                "hasAvatar": false,
                "role": user.role,
            })
        })
        .collect();
    Ok(json!({ "profiles": profiles }))
}
