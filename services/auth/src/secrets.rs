//! Tenant secrets (provider API keys, channel bot tokens): set, listed and
//! deleted by a tenant's admins (and owners), sealed at rest with the
//! configured [`Keyring`], opened only in-process by
//! [`AuthService::open_secret`].
//!
//! Invariants: a value is sealed (AES-256-GCM, associated data
//! `"{tenant_id}/{name}"`, so a ciphertext moved to another row or tenant does
//! not open) before it reaches the store; no RPC ever returns a value, and no
//! value is logged; names match `[A-Za-z0-9_.-]{1,64}`, values are at most
//! [`MAX_SECRET_VALUE_BYTES`]; without a keyring, setting and revealing fail
//! with FAILED_PRECONDITION naming `CLAWGATE_ENCRYPTION_KEY`.

use crate::keyring::{Keyring, Sealed};
use clawgate_proto::auth::{
    DeleteSecretRequest, DeleteSecretResponse, ListSecretsResponse, SecretInfo, SetSecretRequest,
};
use clawgate_proto::{ErrorCode, Principal, ServiceError};

use crate::access::require_admin;
use crate::{AuthService, convert};

/// Largest secret value accepted, in bytes.
pub const MAX_SECRET_VALUE_BYTES: usize = 16 * 1024;
const MAX_NAME_LEN: usize = 64;

fn check_name(name: &str) -> Result<(), ServiceError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "invalid secret name (expected [A-Za-z0-9_.-]{1,64})",
        ))
    }
}

/// What a sealed value is bound to: its tenant and name.
fn associated(tenant: &str, name: &str) -> Vec<u8> {
    format!("{tenant}/{name}").into_bytes()
}

impl AuthService {
    fn keyring(&self) -> Result<&Keyring, ServiceError> {
        self.config.keyring.as_ref().ok_or_else(|| {
            ServiceError::new(
                ErrorCode::FailedPrecondition,
                "secrets need an encryption key: set CLAWGATE_ENCRYPTION_KEY",
            )
        })
    }

    /// The plaintext of secret `name` of `tenant_id`, for in-process consumers
    /// (never an RPC). `None` when there is no such secret; an error when it
    /// does not open with the configured keys (never garbage).
    pub async fn open_secret(
        &self,
        tenant_id: &str,
        name: &str,
    ) -> Result<Option<String>, ServiceError> {
        check_name(name)?;
        let keyring = self.keyring()?;
        let Some(record) = self.store.secret(tenant_id, name).await? else {
            return Ok(None);
        };
        let cannot_open = || {
            ServiceError::new(
                ErrorCode::FailedPrecondition,
                format!(
                    "secret {name} does not open with the configured keys \
                     (CLAWGATE_ENCRYPTION_KEY must include key {})",
                    record.key_id
                ),
            )
        };
        let sealed =
            Sealed::from_base64(&record.key_id, &record.ciphertext).map_err(|_| cannot_open())?;
        let plaintext = keyring
            .open(&sealed, &associated(tenant_id, name))
            .map_err(|_| cannot_open())?;
        String::from_utf8(plaintext)
            .map(Some)
            .map_err(|_| ServiceError::internal("stored secret is not UTF-8"))
    }
}

pub async fn set(
    svc: &AuthService,
    principal: &Principal,
    request: SetSecretRequest,
) -> Result<SecretInfo, ServiceError> {
    require_admin(principal)?;
    check_name(&request.name)?;
    if request.value.len() > MAX_SECRET_VALUE_BYTES {
        return Err(ServiceError::invalid("secret value larger than 16 KiB"));
    }
    let keyring = svc.keyring()?;
    let tenant = principal.tenant_id.as_str();
    let sealed = keyring
        .seal(request.value.as_bytes(), &associated(tenant, &request.name))
        .map_err(|_| ServiceError::internal("sealing a secret failed"))?;
    let record = svc
        .store
        .put_secret(
            tenant,
            &request.name,
            &sealed.key_id,
            &sealed.bytes_base64(),
            svc.now(),
        )
        .await?;
    tracing::info!(tenant = %tenant, name = %record.name, key = %record.key_id, "secret set");
    Ok(convert::secret_info(&record))
}

pub async fn list(
    svc: &AuthService,
    principal: &Principal,
) -> Result<ListSecretsResponse, ServiceError> {
    require_admin(principal)?;
    let secrets = svc.store.secrets(&principal.tenant_id).await?;
    Ok(ListSecretsResponse {
        secrets: secrets.iter().map(convert::secret_info).collect(),
    })
}

pub async fn delete(
    svc: &AuthService,
    principal: &Principal,
    request: DeleteSecretRequest,
) -> Result<DeleteSecretResponse, ServiceError> {
    require_admin(principal)?;
    check_name(&request.name)?;
    let deleted = svc
        .store
        .delete_secret(&principal.tenant_id, &request.name)
        .await?;
    if deleted {
        tracing::info!(tenant = %principal.tenant_id, name = %request.name, "secret deleted");
    }
    Ok(DeleteSecretResponse { deleted })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("OPENAI_API_KEY").is_ok());
        assert!(check_name("telegram.bot-token").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a/b").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
    }
}
