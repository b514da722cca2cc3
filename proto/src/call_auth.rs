//! How a gRPC hop proves who it is calling for.
//!
//! Every gRPC call between clawgate processes carries a short-lived signed token
//! (`authorization: Bearer <token>`) that holds the caller's [`Principal`]. The
//! client side signs it with a [`CallSigner`]; the server adapter checks it with a
//! [`CallVerifier`] and takes the principal from the token only, so no service
//! has to trust the network. This module owns the two traits and the metadata
//! convention; the token format (JWT, keys, rotation) lives with the
//! implementations in the runtime crate.
//!
//! Invariants:
//! - a server adapter never serves a call whose token is missing, malformed,
//!   expired or signed by an unknown key: it answers `UNAUTHENTICATED`, also for
//!   the `public` RPCs (which run before a user principal exists, so their token
//!   carries an empty principal);
//! - in-process (local) calls carry no token: nothing crosses a network.
//!
//! Construction is explicit: a signer is handed to each gRPC client and a
//! verifier to each adapter; there is no global key.

use std::sync::Arc;

use tonic::metadata::{MetadataMap, MetadataValue};

use crate::{Principal, ServiceError};

/// Metadata key of the call token (the standard HTTP header).
pub const CALL_TOKEN_METADATA: &str = "authorization";

/// Scheme prefix of the metadata value.
const BEARER: &str = "Bearer ";

/// Signs the principal of an outgoing gRPC call.
pub trait CallSigner: Send + Sync + 'static {
    /// A token carrying exactly `principal`. Implementations may cache tokens.
    fn sign(&self, principal: &Principal) -> Result<String, ServiceError>;
}

/// Checks the token of an incoming gRPC call.
pub trait CallVerifier: Send + Sync + 'static {
    /// The principal the token carries, or `Unauthorized` when the token is
    /// malformed, expired or not signed by a trusted key.
    fn verify(&self, token: &str) -> Result<Principal, ServiceError>;
}

/// Shared handle on a signer, as held by gRPC clients.
pub type SharedSigner = Arc<dyn CallSigner>;

/// Shared handle on a verifier, as held by gRPC server adapters.
pub type SharedVerifier = Arc<dyn CallVerifier>;

/// Signs `principal` and attaches the token to `metadata`.
pub fn attach(
    signer: &dyn CallSigner,
    principal: &Principal,
    metadata: &mut MetadataMap,
) -> Result<(), ServiceError> {
    let token = signer.sign(principal)?;
    let mut value = MetadataValue::try_from(format!("{BEARER}{token}"))
        .map_err(|_| ServiceError::internal("call token is not valid metadata"))?;
    value.set_sensitive(true);
    metadata.insert(CALL_TOKEN_METADATA, value);
    Ok(())
}

/// The principal of an incoming call, from its verified token.
pub fn authenticate(
    verifier: &dyn CallVerifier,
    metadata: &MetadataMap,
) -> Result<Principal, ServiceError> {
    let Some(value) = metadata.get(CALL_TOKEN_METADATA) else {
        return Err(ServiceError::unauthorized("missing call token"));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|value| value.strip_prefix(BEARER))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or_else(|| ServiceError::unauthorized("malformed call token"))?;
    verifier.verify(token)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::ErrorCode;

    /// Encodes the user id as the "token"; rejects anything else.
    struct Plain;

    impl CallSigner for Plain {
        fn sign(&self, principal: &Principal) -> Result<String, ServiceError> {
            Ok(format!("ok.{}", principal.user_id))
        }
    }

    impl CallVerifier for Plain {
        fn verify(&self, token: &str) -> Result<Principal, ServiceError> {
            let user = token
                .strip_prefix("ok.")
                .ok_or_else(|| ServiceError::unauthorized("invalid call token"))?;
            Ok(Principal {
                user_id: user.into(),
                ..Default::default()
            })
        }
    }

    #[test]
    fn round_trip_through_metadata() {
        let mut metadata = MetadataMap::new();
        let alice = Principal {
            user_id: "alice".into(),
            ..Default::default()
        };
        attach(&Plain, &alice, &mut metadata).unwrap();
        assert_eq!(
            metadata.get(CALL_TOKEN_METADATA).unwrap(),
            "Bearer ok.alice"
        );
        assert_eq!(authenticate(&Plain, &metadata).unwrap(), alice);
    }

    #[test]
    fn missing_or_malformed_tokens_are_unauthorized() {
        let metadata = MetadataMap::new();
        assert_eq!(
            authenticate(&Plain, &metadata).unwrap_err().code,
            ErrorCode::Unauthorized
        );
        for bad in ["ok.alice", "Basic ok.alice", "Bearer ", "Bearer nope"] {
            let mut metadata = MetadataMap::new();
            metadata.insert(CALL_TOKEN_METADATA, bad.parse().unwrap());
            assert_eq!(
                authenticate(&Plain, &metadata).unwrap_err().code,
                ErrorCode::Unauthorized,
                "{bad}"
            );
        }
    }
}
