//! The auth service: decides who a connection is.
//!
//! It owns credential checks and the building of the [`Principal`] that every later
//! call carries. The edge only asks and enforces the answer. Invariants:
//! - tenant and user come only from verified credentials and server configuration,
//!   never from what a client asks for (a goclaw `user_id` is honoured only after
//!   the shared gateway token, which is an owner/admin credential, was verified);
//! - secrets are compared in constant time and never logged.
//!
//! Implemented now: the shared gateway token for both dialects. Device identity,
//! pairing, device tokens and API keys come with the pairing work.

mod token;

use async_trait::async_trait;
use clawgate_proto::auth::{
    AuthApi, AuthenticateConnectRequest, AuthenticateConnectResponse, GoclawConnect,
    OpenClawConnect, authenticate_connect_request::Connect, authenticate_connect_response::Outcome,
};
use clawgate_proto::principal::{Dialect, SCOPE_ADMIN};
use clawgate_proto::{Principal, ServiceError};
use serde_json::json;

pub use token::GatewayToken;

/// Settings of the auth service.
#[derive(Clone, Debug)]
pub struct AuthConfig {
    /// The shared gateway token.
    pub gateway_token: GatewayToken,
    /// Tenant of connections authenticated by the gateway token.
    pub default_tenant_id: String,
    /// User of connections that authenticate without naming one (OpenClaw clients).
    pub default_user_id: String,
    /// goclaw users who get the `owner` role; the others get `admin`.
    pub owner_ids: Vec<String>,
}

/// Longest accepted goclaw `user_id`.
const MAX_USER_ID_LEN: usize = 255;

pub struct AuthService {
    config: AuthConfig,
}

impl AuthService {
    pub fn new(config: AuthConfig) -> Self {
        Self { config }
    }

    fn openclaw(
        &self,
        connection_id: String,
        connect: OpenClawConnect,
    ) -> Result<Principal, ServiceError> {
        // OpenClaw signs and sends the shared secret as `auth.token`.
        let Some(token) = connect.token.as_deref().filter(|t| !t.is_empty()) else {
            return Err(auth_error(
                "gateway token missing",
                "AUTH_TOKEN_MISSING",
                "update_auth_configuration",
            ));
        };
        if !self.config.gateway_token.matches(token) {
            return Err(auth_error(
                "gateway token mismatch",
                "AUTH_TOKEN_MISMATCH",
                "update_auth_credentials",
            ));
        }
        let role = if connect.role.is_empty() {
            "operator".to_owned()
        } else {
            connect.role
        };
        Ok(Principal {
            tenant_id: self.config.default_tenant_id.clone(),
            user_id: self.config.default_user_id.clone(),
            role,
            scopes: connect.scopes,
            device_id: String::new(),
            connection_id,
            dialect: Dialect::Openclaw as i32,
        })
    }

    fn goclaw(
        &self,
        connection_id: String,
        connect: GoclawConnect,
    ) -> Result<Principal, ServiceError> {
        if connect.token.is_empty() {
            return Err(ServiceError::unauthorized("token required"));
        }
        if !self.config.gateway_token.matches(&connect.token) {
            return Err(ServiceError::unauthorized("invalid token"));
        }
        let user_id = match connect.user_id.trim() {
            "" => self.config.default_user_id.clone(),
            user if user.len() > MAX_USER_ID_LEN => {
                return Err(ServiceError::invalid("user_id longer than 255 characters"));
            }
            user => user.to_owned(),
        };
        let role = if self.config.owner_ids.contains(&user_id) {
            "owner"
        } else {
            "admin"
        };
        Ok(Principal {
            tenant_id: self.config.default_tenant_id.clone(),
            user_id,
            role: role.to_owned(),
            scopes: vec![SCOPE_ADMIN.to_owned()],
            device_id: String::new(),
            connection_id,
            dialect: Dialect::Goclaw as i32,
        })
    }
}

fn auth_error(reason: &str, code: &str, next_step: &str) -> ServiceError {
    ServiceError::unauthorized(format!("unauthorized: {reason}")).with_details(json!({
        "code": code,
        "authReason": reason,
        "canRetryWithDeviceToken": false,
        "recommendedNextStep": next_step,
    }))
}

#[async_trait]
impl AuthApi for AuthService {
    async fn authenticate_connect(
        &self,
        _principal: &Principal,
        request: AuthenticateConnectRequest,
    ) -> Result<AuthenticateConnectResponse, ServiceError> {
        let principal = match request.connect {
            Some(Connect::Openclaw(connect)) => self.openclaw(request.connection_id, connect)?,
            Some(Connect::Goclaw(connect)) => self.goclaw(request.connection_id, connect)?,
            None => return Err(ServiceError::invalid("connect parameters missing")),
        };
        tracing::debug!(
            tenant = %principal.tenant_id,
            user = %principal.user_id,
            role = %principal.role,
            "connection authenticated"
        );
        Ok(AuthenticateConnectResponse {
            outcome: Some(Outcome::Principal(principal)),
            device_token: String::new(),
            device_token_issued_at_ms: 0,
        })
    }
}

#[cfg(test)]
mod tests;
