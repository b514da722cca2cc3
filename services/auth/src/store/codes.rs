//! goclaw pairing: 8-character codes (browser login, channel DM pairing) and the
//! senders whose code was approved. Codes are unique across tenants (a collision
//! with another tenant's code is retried with a new code); a code and a paired
//! sender belong to the user they were requested for.

use clawgate_proto::ServiceError;
use clawgate_runtime::db::{Tx, is_unique_violation, service_error};
use sqlx::any::AnyRow;

use super::{Scope, Store, commit, int, text};

/// How often a code insert is retried (code collision, concurrent request).
const INSERT_ATTEMPTS: usize = 5;

/// Where a pairing code stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeStatus {
    Pending,
    Approved,
    Rejected,
    Expired,
}

impl CodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::Expired => "expired",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "rejected" => Self::Rejected,
            _ => Self::Expired,
        }
    }
}

/// A code to create.
#[derive(Clone, Debug)]
pub struct NewCode {
    pub tenant_id: String,
    pub user_id: String,
    pub sender_id: String,
    pub channel: String,
    pub chat_id: String,
    pub account_id: String,
    pub remote_ip: String,
    pub expires_at: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct PairingCode {
    pub request_id: String,
    pub code: String,
    pub tenant_id: String,
    pub user_id: String,
    pub sender_id: String,
    pub channel: String,
    pub chat_id: String,
    pub account_id: String,
    pub remote_ip: String,
    pub status: CodeStatus,
    pub created_at: i64,
    pub expires_at: i64,
    pub resolved_at: i64,
}

impl PairingCode {
    /// The status as of `now` (a pending code past its expiry is expired).
    pub fn status_at(&self, now: i64) -> CodeStatus {
        if self.status == CodeStatus::Pending && self.expires_at <= now {
            CodeStatus::Expired
        } else {
            self.status
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PairedSender {
    pub tenant_id: String,
    pub user_id: String,
    pub sender_id: String,
    pub channel: String,
    pub chat_id: String,
    pub account_id: String,
    pub paired_by: String,
    pub paired_at: i64,
    pub expires_at: i64,
}

const CODE_COLUMNS: &str = "request_id, code, tenant_id, user_id, sender_id, channel, chat_id, \
    account_id, remote_ip, status, created_at, expires_at, resolved_at";

const SENDER_COLUMNS: &str =
    "tenant_id, user_id, sender_id, channel, chat_id, account_id, paired_by, paired_at, expires_at";

impl Store {
    /// Returns the sender's live pending code in `new.tenant_id`, or creates one
    /// (`created` = true) unless the account already has `max_pending` live
    /// pending codes there.
    pub async fn put_code(
        &self,
        new: &NewCode,
        code: impl Fn() -> String,
        max_pending: i64,
        now: i64,
    ) -> Result<(PairingCode, bool), ServiceError> {
        let tenant = new.tenant_id.as_str();
        for _ in 0..INSERT_ATTEMPTS {
            let mut tx = self.tx(tenant).await?;
            sqlx::query(
                "UPDATE pairing_codes SET status = 'expired' \
                 WHERE tenant_id = $1 AND status = 'pending' AND expires_at <= $2",
            )
            .bind(tenant)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
            let sql = format!(
                "SELECT {CODE_COLUMNS} FROM pairing_codes WHERE tenant_id = $1 AND sender_id = $2 \
                 AND channel = $3 AND status = 'pending' AND expires_at > $4"
            );
            let existing = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(tenant)
                .bind(&new.sender_id)
                .bind(&new.channel)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(service_error)?;
            if let Some(existing) = existing {
                commit(tx).await?;
                return Ok((code_of(&existing)?, false));
            }
            let pending: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pairing_codes WHERE tenant_id = $1 AND channel = $2 \
                 AND account_id = $3 AND status = 'pending' AND expires_at > $4",
            )
            .bind(tenant)
            .bind(&new.channel)
            .bind(&new.account_id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(service_error)?;
            if pending >= max_pending {
                commit(tx).await?;
                return Err(ServiceError::new(
                    clawgate_proto::ErrorCode::ResourceExhausted,
                    "too many pending pairing requests; try again later",
                ));
            }
            let sql = format!(
                "INSERT INTO pairing_codes ({CODE_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', $10, $11, 0) \
                 RETURNING {CODE_COLUMNS}"
            );
            let inserted = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(uuid::Uuid::now_v7().to_string())
                .bind(code())
                .bind(tenant)
                .bind(&new.user_id)
                .bind(&new.sender_id)
                .bind(&new.channel)
                .bind(&new.chat_id)
                .bind(&new.account_id)
                .bind(&new.remote_ip)
                .bind(now)
                .bind(new.expires_at)
                .fetch_one(&mut *tx)
                .await;
            match inserted {
                Ok(row) => {
                    commit(tx).await?;
                    return Ok((code_of(&row)?, true));
                }
                // A code taken (in any tenant) or a concurrent request for this
                // sender: the transaction rolls back on drop; try again.
                Err(err) if is_unique_violation(&err) => continue,
                Err(err) => return Err(service_error(err)),
            }
        }
        Err(ServiceError::unavailable(
            "pairing code changed concurrently; retry",
        ))
    }

    /// The live pending code of `scope` with this request id or this code.
    pub async fn pending_code(
        &self,
        scope: Scope<'_>,
        request_id: &str,
        code: &str,
        now: i64,
    ) -> Result<Option<PairingCode>, ServiceError> {
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM pairing_codes WHERE tenant_id = $1 \
             AND ($2 = '' OR user_id = $2) \
             AND ((request_id = $3 AND $3 <> '') OR (code = $4 AND $4 <> '')) \
             AND status = 'pending' AND expires_at > $5"
        );
        let mut tx = self.tx(scope.tenant).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant)
            .bind(scope.user())
            .bind(request_id)
            .bind(code.to_ascii_uppercase())
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        row.as_ref().map(code_of).transpose()
    }

    /// The live pending codes of `scope`, oldest first.
    pub async fn pending_codes(
        &self,
        scope: Scope<'_>,
        now: i64,
    ) -> Result<Vec<PairingCode>, ServiceError> {
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM pairing_codes WHERE tenant_id = $1 \
             AND ($2 = '' OR user_id = $2) AND status = 'pending' AND expires_at > $3 \
             ORDER BY created_at, request_id"
        );
        let mut tx = self.tx(scope.tenant).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant)
            .bind(scope.user())
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        rows.iter().map(code_of).collect()
    }

    /// The newest code of `sender_id`, in whatever tenant (for the public status poll).
    /// Request ids are time-ordered (UUIDv7), which breaks ties within a millisecond.
    pub async fn latest_code_of_sender(
        &self,
        sender_id: &str,
    ) -> Result<Option<PairingCode>, ServiceError> {
        let Some(tenant) = self.latest_code_tenant(sender_id).await? else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM pairing_codes WHERE tenant_id = $1 AND sender_id = $2 \
             ORDER BY created_at DESC, request_id DESC LIMIT 1"
        );
        let mut tx = self.tx(&tenant).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&tenant)
            .bind(sender_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        row.as_ref().map(code_of).transpose()
    }

    /// Rejects the live pending code `request_id` of `scope`; whether it was pending.
    pub async fn reject_code(
        &self,
        scope: Scope<'_>,
        request_id: &str,
        now: i64,
    ) -> Result<bool, ServiceError> {
        let mut tx = self.tx(scope.tenant).await?;
        let result = sqlx::query(
            "UPDATE pairing_codes SET status = 'rejected', resolved_at = $4 \
             WHERE tenant_id = $1 AND ($2 = '' OR user_id = $2) AND request_id = $3 \
             AND status = 'pending' AND expires_at > $4",
        )
        .bind(scope.tenant)
        .bind(scope.user())
        .bind(request_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(service_error)?;
        commit(tx).await?;
        Ok(result.rows_affected() > 0)
    }

    /// Approves the live pending code `code` and pairs its sender as `sender`
    /// (same tenant), in one transaction. Fails with NOT_FOUND when the code
    /// was resolved meanwhile.
    pub async fn approve_code(
        &self,
        code: &PairingCode,
        sender: &PairedSender,
        now: i64,
    ) -> Result<(), ServiceError> {
        if sender.tenant_id != code.tenant_id {
            return Err(ServiceError::internal("sender and code disagree"));
        }
        let mut tx = self.tx(&code.tenant_id).await?;
        let claimed = sqlx::query(
            "UPDATE pairing_codes SET status = 'approved', resolved_at = $3 \
             WHERE tenant_id = $1 AND request_id = $2 AND status = 'pending' AND expires_at > $3",
        )
        .bind(&code.tenant_id)
        .bind(&code.request_id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(service_error)?;
        if claimed.rows_affected() == 0 {
            return Err(ServiceError::not_found("unknown pairing code"));
        }
        let sql = format!(
            "INSERT INTO paired_senders ({SENDER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (tenant_id, sender_id, channel) DO UPDATE SET user_id = excluded.user_id, \
                 chat_id = excluded.chat_id, account_id = excluded.account_id, \
                 paired_by = excluded.paired_by, paired_at = excluded.paired_at, \
                 expires_at = excluded.expires_at"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&sender.tenant_id)
            .bind(&sender.user_id)
            .bind(&sender.sender_id)
            .bind(&sender.channel)
            .bind(&sender.chat_id)
            .bind(&sender.account_id)
            .bind(&sender.paired_by)
            .bind(sender.paired_at)
            .bind(sender.expires_at)
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await
    }

    /// The live pairing of (`sender_id`, `channel`), in whatever tenant; when the
    /// sender is paired in several, only in `tenant_hint` (ambiguous ⇒ none).
    pub async fn paired_sender(
        &self,
        sender_id: &str,
        channel: &str,
        tenant_hint: &str,
        now: i64,
    ) -> Result<Option<PairedSender>, ServiceError> {
        let tenants = self.paired_sender_tenants(sender_id, channel, now).await?;
        let mut candidates = tenants
            .iter()
            .filter(|tenant| tenant_hint.is_empty() || *tenant == tenant_hint);
        let (Some(tenant), None) = (candidates.next(), candidates.next()) else {
            return Ok(None);
        };
        let sql = format!(
            "SELECT {SENDER_COLUMNS} FROM paired_senders WHERE tenant_id = $1 AND sender_id = $2 \
             AND channel = $3 AND expires_at > $4"
        );
        let mut tx = self.tx(tenant).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(sender_id)
            .bind(channel)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        row.as_ref().map(sender_of).transpose()
    }

    /// The live paired senders of `scope`.
    pub async fn paired_senders(
        &self,
        scope: Scope<'_>,
        now: i64,
    ) -> Result<Vec<PairedSender>, ServiceError> {
        let sql = format!(
            "SELECT {SENDER_COLUMNS} FROM paired_senders WHERE tenant_id = $1 \
             AND ($2 = '' OR user_id = $2) AND expires_at > $3 ORDER BY paired_at, sender_id"
        );
        let mut tx = self.tx(scope.tenant).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant)
            .bind(scope.user())
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        rows.iter().map(sender_of).collect()
    }

    /// Unpairs (`sender_id`, `channel`) in `scope`; whether it was paired.
    pub async fn delete_paired_sender(
        &self,
        scope: Scope<'_>,
        sender_id: &str,
        channel: &str,
    ) -> Result<bool, ServiceError> {
        let mut tx = self.tx(scope.tenant).await?;
        let result = sqlx::query(
            "DELETE FROM paired_senders WHERE tenant_id = $1 AND ($2 = '' OR user_id = $2) \
             AND sender_id = $3 AND channel = $4",
        )
        .bind(scope.tenant)
        .bind(scope.user())
        .bind(sender_id)
        .bind(channel)
        .execute(&mut *tx)
        .await
        .map_err(service_error)?;
        commit(tx).await?;
        Ok(result.rows_affected() > 0)
    }
}

/// Unpairs every sender of `user` in `tenant` and rejects its pending codes,
/// inside `tx`.
pub(super) async fn forget_user_senders(
    tx: &mut Tx,
    tenant: &str,
    user: &str,
    now: i64,
) -> Result<(), ServiceError> {
    sqlx::query("DELETE FROM paired_senders WHERE tenant_id = $1 AND user_id = $2")
        .bind(tenant)
        .bind(user)
        .execute(&mut **tx)
        .await
        .map_err(service_error)?;
    sqlx::query(
        "UPDATE pairing_codes SET status = 'rejected', resolved_at = $3 \
         WHERE tenant_id = $1 AND user_id = $2 AND status = 'pending'",
    )
    .bind(tenant)
    .bind(user)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(service_error)?;
    Ok(())
}

fn code_of(row: &AnyRow) -> Result<PairingCode, ServiceError> {
    Ok(PairingCode {
        request_id: text(row, "request_id")?,
        code: text(row, "code")?,
        tenant_id: text(row, "tenant_id")?,
        user_id: text(row, "user_id")?,
        sender_id: text(row, "sender_id")?,
        channel: text(row, "channel")?,
        chat_id: text(row, "chat_id")?,
        account_id: text(row, "account_id")?,
        remote_ip: text(row, "remote_ip")?,
        status: CodeStatus::parse(&text(row, "status")?),
        created_at: int(row, "created_at")?,
        expires_at: int(row, "expires_at")?,
        resolved_at: int(row, "resolved_at")?,
    })
}

fn sender_of(row: &AnyRow) -> Result<PairedSender, ServiceError> {
    Ok(PairedSender {
        tenant_id: text(row, "tenant_id")?,
        user_id: text(row, "user_id")?,
        sender_id: text(row, "sender_id")?,
        channel: text(row, "channel")?,
        chat_id: text(row, "chat_id")?,
        account_id: text(row, "account_id")?,
        paired_by: text(row, "paired_by")?,
        paired_at: int(row, "paired_at")?,
        expires_at: int(row, "expires_at")?,
    })
}
