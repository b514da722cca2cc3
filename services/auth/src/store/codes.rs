//! goclaw pairing: 8-character codes (browser login, channel DM pairing) and the
//! senders whose code was approved.

use clawgate_proto::ServiceError;
use clawgate_runtime::db::{is_unique_violation, service_error};
use sqlx::any::AnyRow;

use super::{Store, int, text};

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
    /// The live pending code of (`sender_id`, `channel`) in `tenant`.
    pub async fn pending_code_of_sender(
        &self,
        tenant: &str,
        sender_id: &str,
        channel: &str,
        now: i64,
    ) -> Result<Option<PairingCode>, ServiceError> {
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM pairing_codes WHERE tenant_id = $1 AND sender_id = $2 \
             AND channel = $3 AND status = 'pending' AND expires_at > $4"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(sender_id)
            .bind(channel)
            .bind(now)
            .fetch_optional(self.db.pool())
            .await
            .map_err(service_error)?;
        row.as_ref().map(code_of).transpose()
    }

    /// Returns the sender's live pending code, or creates one (`created` = true)
    /// unless the account already has `max_pending` live pending codes.
    pub async fn put_code(
        &self,
        new: &NewCode,
        code: impl Fn() -> String,
        max_pending: i64,
        now: i64,
    ) -> Result<(PairingCode, bool), ServiceError> {
        sqlx::query(
            "UPDATE pairing_codes SET status = 'expired' \
             WHERE tenant_id = $1 AND status = 'pending' AND expires_at <= $2",
        )
        .bind(&new.tenant_id)
        .bind(now)
        .execute(self.db.pool())
        .await
        .map_err(service_error)?;
        for _ in 0..INSERT_ATTEMPTS {
            if let Some(existing) = self
                .pending_code_of_sender(&new.tenant_id, &new.sender_id, &new.channel, now)
                .await?
            {
                return Ok((existing, false));
            }
            let pending: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM pairing_codes WHERE tenant_id = $1 AND channel = $2 \
                 AND account_id = $3 AND status = 'pending' AND expires_at > $4",
            )
            .bind(&new.tenant_id)
            .bind(&new.channel)
            .bind(&new.account_id)
            .bind(now)
            .fetch_one(self.db.pool())
            .await
            .map_err(service_error)?;
            if pending >= max_pending {
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
                .bind(&new.tenant_id)
                .bind(&new.user_id)
                .bind(&new.sender_id)
                .bind(&new.channel)
                .bind(&new.chat_id)
                .bind(&new.account_id)
                .bind(&new.remote_ip)
                .bind(now)
                .bind(new.expires_at)
                .fetch_one(self.db.pool())
                .await;
            match inserted {
                Ok(row) => return Ok((code_of(&row)?, true)),
                Err(err) if is_unique_violation(&err) => continue,
                Err(err) => return Err(service_error(err)),
            }
        }
        Err(ServiceError::unavailable(
            "pairing code changed concurrently; retry",
        ))
    }

    /// The live pending code of `tenant` with this request id or this code.
    pub async fn pending_code(
        &self,
        tenant: &str,
        request_id: &str,
        code: &str,
        now: i64,
    ) -> Result<Option<PairingCode>, ServiceError> {
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM pairing_codes WHERE tenant_id = $1 \
             AND ((request_id = $2 AND $2 <> '') OR (code = $3 AND $3 <> '')) \
             AND status = 'pending' AND expires_at > $4"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(request_id)
            .bind(code.to_ascii_uppercase())
            .bind(now)
            .fetch_optional(self.db.pool())
            .await
            .map_err(service_error)?;
        row.as_ref().map(code_of).transpose()
    }

    /// The live pending codes of `tenant`, oldest first.
    pub async fn pending_codes(
        &self,
        tenant: &str,
        now: i64,
    ) -> Result<Vec<PairingCode>, ServiceError> {
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM pairing_codes WHERE tenant_id = $1 \
             AND status = 'pending' AND expires_at > $2 ORDER BY created_at, request_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(now)
            .fetch_all(self.db.pool())
            .await
            .map_err(service_error)?;
        rows.iter().map(code_of).collect()
    }

    /// The newest code of `sender_id`, in whatever tenant (for the public status poll).
    /// Request ids are time-ordered (UUIDv7), which breaks ties within a millisecond.
    pub async fn latest_code_of_sender(
        &self,
        sender_id: &str,
    ) -> Result<Option<PairingCode>, ServiceError> {
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM pairing_codes WHERE sender_id = $1 \
             ORDER BY created_at DESC, request_id DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(sender_id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(service_error)?;
        row.as_ref().map(code_of).transpose()
    }

    /// Rejects the live pending code `request_id` of `tenant`; whether it was pending.
    pub async fn reject_code(
        &self,
        tenant: &str,
        request_id: &str,
        now: i64,
    ) -> Result<bool, ServiceError> {
        let result = sqlx::query(
            "UPDATE pairing_codes SET status = 'rejected', resolved_at = $3 \
             WHERE tenant_id = $1 AND request_id = $2 AND status = 'pending' AND expires_at > $3",
        )
        .bind(tenant)
        .bind(request_id)
        .bind(now)
        .execute(self.db.pool())
        .await
        .map_err(service_error)?;
        Ok(result.rows_affected() > 0)
    }

    /// Approves the live pending code `code` and pairs its sender as `sender`, in
    /// one transaction. Fails with NOT_FOUND when the code was resolved meanwhile.
    pub async fn approve_code(
        &self,
        code: &PairingCode,
        sender: &PairedSender,
        now: i64,
    ) -> Result<(), ServiceError> {
        let mut tx = self.db.pool().begin().await.map_err(service_error)?;
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
        tx.commit().await.map_err(service_error)?;
        Ok(())
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
        let sql = format!(
            "SELECT {SENDER_COLUMNS} FROM paired_senders WHERE sender_id = $1 AND channel = $2 \
             AND ($3 = '' OR tenant_id = $3) AND expires_at > $4 LIMIT 2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(sender_id)
            .bind(channel)
            .bind(tenant_hint)
            .bind(now)
            .fetch_all(self.db.pool())
            .await
            .map_err(service_error)?;
        match rows.as_slice() {
            [row] => Ok(Some(sender_of(row)?)),
            _ => Ok(None),
        }
    }

    /// The live paired senders of `tenant`.
    pub async fn paired_senders(
        &self,
        tenant: &str,
        now: i64,
    ) -> Result<Vec<PairedSender>, ServiceError> {
        let sql = format!(
            "SELECT {SENDER_COLUMNS} FROM paired_senders WHERE tenant_id = $1 AND expires_at > $2 \
             ORDER BY paired_at, sender_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(now)
            .fetch_all(self.db.pool())
            .await
            .map_err(service_error)?;
        rows.iter().map(sender_of).collect()
    }

    /// Unpairs (`sender_id`, `channel`) in `tenant`; whether it was paired.
    pub async fn delete_paired_sender(
        &self,
        tenant: &str,
        sender_id: &str,
        channel: &str,
    ) -> Result<bool, ServiceError> {
        let result = sqlx::query(
            "DELETE FROM paired_senders WHERE tenant_id = $1 AND sender_id = $2 AND channel = $3",
        )
        .bind(tenant)
        .bind(sender_id)
        .bind(channel)
        .execute(self.db.pool())
        .await
        .map_err(service_error)?;
        Ok(result.rows_affected() > 0)
    }
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
