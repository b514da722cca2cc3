//! `Debug` for the messages that carry secrets (gateway, device and node
//! tokens, passwords, API keys, tenant secrets, channel credentials). The generated code
//! skips `Debug` for them (see `build.rs`); here every secret prints as
//! `<redacted>` (or `None`), everything else as usual.

use std::fmt;

use crate::pb::auth::v1::{
    ApproveNodePairingResponse, AuthenticateConnectResponse, CreateApiKeyResponse, DeviceTokenInfo,
    GoclawConnect, OpenClawConnect, SetSecretRequest, VerifyNodeRequest,
};
use crate::pb::channel::v1::{CreateAccountRequest, UpdateAccountRequest};

/// Shows whether a secret is present, never its value.
struct Secret<'a>(Option<&'a str>);

impl fmt::Debug for Secret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(value) if !value.is_empty() => f.write_str("<redacted>"),
            Some(_) => f.write_str("\"\""),
            None => f.write_str("None"),
        }
    }
}

fn secret(value: &str) -> Secret<'_> {
    Secret(Some(value))
}

fn secret_opt(value: &Option<String>) -> Secret<'_> {
    Secret(value.as_deref())
}

impl fmt::Debug for OpenClawConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenClawConnect")
            .field("client", &self.client)
            .field("role", &self.role)
            .field("scopes", &self.scopes)
            .field("token", &secret_opt(&self.token))
            .field("device_token", &secret_opt(&self.device_token))
            .field("bootstrap_token", &secret_opt(&self.bootstrap_token))
            .field("password", &secret_opt(&self.password))
            .field("device", &self.device)
            .field("challenge_nonce", &self.challenge_nonce)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for GoclawConnect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GoclawConnect")
            .field("token", &secret(&self.token))
            .field("user_id", &self.user_id)
            .field("sender_id", &self.sender_id)
            .field("tenant_id", &self.tenant_id)
            .field("locale", &self.locale)
            .finish_non_exhaustive()
    }
}

/// The oneof of a redacted message loses its generated `Debug` too; neither
/// variant holds a secret.
impl fmt::Debug for crate::pb::auth::v1::authenticate_connect_response::Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Principal(principal) => f.debug_tuple("Principal").field(principal).finish(),
            Self::Pairing(pairing) => f.debug_tuple("Pairing").field(pairing).finish(),
        }
    }
}

impl fmt::Debug for AuthenticateConnectResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::pb::auth::v1::authenticate_connect_response::Outcome;
        let outcome: &dyn fmt::Debug = match &self.outcome {
            Some(Outcome::Principal(principal)) => principal,
            Some(Outcome::Pairing(pairing)) => pairing,
            None => &"None",
        };
        f.debug_struct("AuthenticateConnectResponse")
            .field("outcome", outcome)
            .field("device_token", &secret(&self.device_token))
            .field("device_token_issued_at_ms", &self.device_token_issued_at_ms)
            .field("device_token_role", &self.device_token_role)
            .field("device_token_scopes", &self.device_token_scopes)
            .field("auto_approved", &self.auto_approved)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for DeviceTokenInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceTokenInfo")
            .field("device_id", &self.device_id)
            .field("role", &self.role)
            .field("scopes", &self.scopes)
            .field("rotated_at_ms", &self.rotated_at_ms)
            .field("revoked_at_ms", &self.revoked_at_ms)
            .field("token", &secret(&self.token))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for CreateApiKeyResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateApiKeyResponse")
            .field("key", &self.key)
            .field("secret", &secret(&self.secret))
            .finish()
    }
}

impl fmt::Debug for SetSecretRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetSecretRequest")
            .field("name", &self.name)
            .field("value", &secret(&self.value))
            .finish()
    }
}

impl fmt::Debug for ApproveNodePairingResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApproveNodePairingResponse")
            .field("request", &self.request)
            .field("node", &self.node)
            .field("token", &secret(&self.token))
            .finish()
    }
}

impl fmt::Debug for VerifyNodeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyNodeRequest")
            .field("node_id", &self.node_id)
            .field("token", &secret(&self.token))
            .finish()
    }
}

impl fmt::Debug for CreateAccountRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateAccountRequest")
            .field("account", &self.account)
            .field("credentials", &secret(&self.credentials))
            .finish()
    }
}

impl fmt::Debug for UpdateAccountRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpdateAccountRequest")
            .field("account_id", &self.account_id)
            .field("patch", &self.patch)
            .field("fields", &self.fields)
            .field("credentials", &secret_opt(&self.credentials))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let connect = OpenClawConnect {
            token: Some("shared-secret-value".into()),
            device_token: Some("device-secret-value".into()),
            ..Default::default()
        };
        let goclaw = GoclawConnect {
            token: "goclaw-secret-value".into(),
            user_id: "alice".into(),
            ..Default::default()
        };
        let response = AuthenticateConnectResponse {
            device_token: "issued-secret-value".into(),
            ..Default::default()
        };
        let key = CreateApiKeyResponse {
            secret: "clawgate_0123456789abcdef".into(),
            ..Default::default()
        };
        let approved = ApproveNodePairingResponse {
            token: "node-token-secret-value".into(),
            ..Default::default()
        };
        let verify = VerifyNodeRequest {
            node_id: "n1".into(),
            token: "node-verify-secret-value".into(),
        };
        let printed =
            format!("{connect:?} {goclaw:?} {response:?} {key:?} {approved:?} {verify:?}");
        for leaked in [
            "node-token-secret-value",
            "node-verify-secret-value",
            "shared-secret-value",
            "device-secret-value",
            "goclaw-secret-value",
            "issued-secret-value",
            "clawgate_0123456789abcdef",
        ] {
            assert!(!printed.contains(leaked), "{leaked} printed in {printed}");
        }
        assert!(printed.contains("alice"), "non-secret fields still print");
        assert!(printed.contains("<redacted>"));
    }
}
