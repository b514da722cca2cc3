//! `system-presence`: who of the caller's tenant is connected, on every edge
//! (OpenClaw only: goclaw has no presence).
//!
//! The answer is the presence registry's live entries of the caller's tenant
//! (see [`crate::presence`] for what is listed), as OpenClaw `PresenceEntry`
//! objects, newest first: every entry of the tenant for a caller that sees the
//! whole tenant (`operator.admin`), only its own user's for any other.

use clawgate_proto::{Principal, ServiceError};
use serde_json::Value;

use super::decl::{Job, Method, Outcome, Request, Runs, Scope, job};
use crate::params::Style;
use crate::presence::{self, entry};
use crate::state::EdgeState;

pub const METHODS: &[Method] = &[Method::call(
    "system-presence",
    Some(Scope::Read),
    None,
    parse_list,
)];

/// A validated call of this family.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    List,
}

fn parse_list(request: &Request<'_>) -> Result<Box<dyn Job>, ServiceError> {
    if !request.params.is_null() {
        request.closed(&[])?;
    }
    Ok(job(Call::List))
}

impl Runs for Call {
    async fn execute(self, state: &EdgeState, principal: &Principal, _style: Style) -> Outcome {
        match self {
            Call::List => list(state, principal).await.into(),
        }
    }
}

async fn list(state: &EdgeState, principal: &Principal) -> Result<Value, ServiceError> {
    let list = state.presence.registry().list(&principal.tenant_id).await?;
    let entries = presence::entries_of(&list);
    Ok(Value::Array(entry::render_visible(
        &entries,
        &principal.user_id,
        principal.sees_tenant(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::methods::decl::parse_with;
    use serde_json::json;

    #[test]
    fn takes_no_params() {
        let principal = Principal::default();
        for params in [json!(null), json!({})] {
            let parsed = parse_with(
                "system-presence",
                &params,
                Style::Camel,
                &principal,
                parse_list,
            );
            assert!(parsed.is_ok(), "{params}");
        }
        let Err(err) = parse_with(
            "system-presence",
            &json!({"limit": 3}),
            Style::Camel,
            &principal,
            parse_list,
        ) else {
            panic!("an unknown param is refused");
        };
        assert!(
            err.message.starts_with("invalid system-presence params:"),
            "{}",
            err.message
        );
    }
}
