//! Node pairing: pending node pairing requests and paired nodes (tables
//! `node_pairing_requests` and `paired_nodes`, migration `node_pairing`).
//!
//! Invariants:
//! - every statement runs in the transaction of the tenant it is about and
//!   filters `tenant_id` itself; a [`Scope`] with a user adds `user_id`;
//! - at most one pending request per (tenant, node) (a unique index) and one
//!   paired record per (tenant, node) (the primary key); an expired request
//!   is invisible and is cleared by the node's next request;
//! - a node's token is stored as a SHA-256 digest only (the protobuf
//!   conversion drops it; it is only compared, in constant time);
//! - an approval claims its request in the same transaction that writes the
//!   paired record, and only in the state the approver checked (same declared
//!   commands, same user), so a request merged meanwhile is never approved
//!   unseen; a caller limited to its own user never overwrites a paired record
//!   of another user.

use clawgate_proto::ServiceError;
use clawgate_runtime::db::{Tx, service_error};
use sqlx::any::AnyRow;

use super::{Columns, Scope, Store, commit, list_to_text};

/// What a node declares about itself (the approved set, on a paired record).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeFacts {
    pub node_id: String,
    pub display_name: String,
    pub platform: String,
    pub version: String,
    pub core_version: String,
    pub ui_version: String,
    pub device_family: String,
    pub model_identifier: String,
    pub caps: Vec<String>,
    /// Declared commands (on a request) or approved ones (on a paired record).
    pub commands: Vec<String>,
    pub remote_ip: String,
}

/// A pending node pairing request.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRequestRecord {
    pub request_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub node: NodeFacts,
    pub silent: bool,
    pub is_repair: bool,
    pub created_at: i64,
    pub expires_at: i64,
}

/// An approved node.
#[derive(Clone, Debug, PartialEq)]
pub struct PairedNodeRecord {
    pub tenant_id: String,
    pub user_id: String,
    /// `commands` are the approved commands.
    pub node: NodeFacts,
    /// SHA-256 hex digest of the node's token; never leaves the service.
    pub token_hash: String,
    pub created_at: i64,
    pub approved_at: i64,
}

/// What a request or a node's connect asks to have approved.
#[derive(Clone, Debug)]
pub struct NewNodeRequest {
    pub tenant_id: String,
    pub user_id: String,
    pub node: NodeFacts,
    pub silent: bool,
    pub is_repair: bool,
    pub expires_at: i64,
}

/// Whose a live request of another user becomes when a new one is merged into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeOwner {
    /// Refuse the merge (a caller limited to its own user's nodes).
    Refuse,
    /// The request keeps its user (an admin asking on the owner's behalf).
    Keep,
    /// The request becomes the new user's (the node itself, whose device
    /// pairing names its user).
    TakeOver,
}

const REQUEST_COLUMNS: &str = "request_id, tenant_id, user_id, node_id, display_name, platform, \
    version, core_version, ui_version, device_family, model_identifier, caps, commands, \
    remote_ip, silent, is_repair, created_at, expires_at";

const PAIRED_COLUMNS: &str = "tenant_id, node_id, user_id, display_name, platform, version, \
    core_version, ui_version, device_family, model_identifier, caps, approved_commands, \
    remote_ip, created_at, approved_at, token_hash";

/// How often a request write is retried after the request changed under it.
const WRITE_ATTEMPTS: usize = 3;

impl Store {
    /// The live pending requests of `scope`, newest first: all of them, or
    /// only those of node `node_id` and/or with id `request_id` (when not empty).
    pub async fn node_requests(
        &self,
        scope: Scope<'_>,
        node_id: &str,
        request_id: &str,
        now: i64,
    ) -> Result<Vec<NodeRequestRecord>, ServiceError> {
        let sql = format!(
            "SELECT {REQUEST_COLUMNS} FROM node_pairing_requests \
             WHERE tenant_id = $1 AND ($2 = '' OR user_id = $2) AND ($3 = '' OR node_id = $3) \
             AND ($4 = '' OR request_id = $4) AND expires_at > $5 \
             ORDER BY created_at DESC, request_id DESC"
        );
        let mut tx = self.read_tx(scope.tenant).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant)
            .bind(scope.user())
            .bind(node_id)
            .bind(request_id)
            .bind(now)
            .fetch_all(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        rows.iter().map(request_of).collect()
    }

    /// The live pending request `request_id` of `scope`.
    pub async fn node_request(
        &self,
        scope: Scope<'_>,
        request_id: &str,
        now: i64,
    ) -> Result<Option<NodeRequestRecord>, ServiceError> {
        if request_id.is_empty() {
            return Ok(None);
        }
        let found = self.node_requests(scope, "", request_id, now).await?;
        Ok(found.into_iter().next())
    }

    /// The paired nodes of `scope` (or only `node_id`), most recently approved first.
    pub async fn paired_nodes(
        &self,
        scope: Scope<'_>,
        only_node: Option<&str>,
    ) -> Result<Vec<PairedNodeRecord>, ServiceError> {
        let sql = format!(
            "SELECT {PAIRED_COLUMNS} FROM paired_nodes \
             WHERE tenant_id = $1 AND ($2 = '' OR user_id = $2) AND ($3 = '' OR node_id = $3) \
             ORDER BY approved_at DESC, node_id"
        );
        let mut tx = self.read_tx(scope.tenant).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant)
            .bind(scope.user())
            .bind(only_node.unwrap_or(""))
            .fetch_all(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        rows.iter().map(paired_of).collect()
    }

    /// The paired node `node_id` of `scope`.
    pub async fn paired_node(
        &self,
        scope: Scope<'_>,
        node_id: &str,
    ) -> Result<Option<PairedNodeRecord>, ServiceError> {
        if node_id.is_empty() {
            return Ok(None);
        }
        let found = self.paired_nodes(scope, Some(node_id)).await?;
        Ok(found.into_iter().next())
    }

    /// Creates the node's pending request in `new.tenant_id`, or merges `new`
    /// into the live one (its facts, flags and expiry replace the request's;
    /// its id and creation time stay; its user follows `owner`). Returns the
    /// request and whether this call created it. Fails with FORBIDDEN when
    /// `owner` is [`MergeOwner::Refuse`] and the live request is another user's.
    pub async fn put_node_request(
        &self,
        new: &NewNodeRequest,
        owner: MergeOwner,
        now: i64,
    ) -> Result<(NodeRequestRecord, bool), ServiceError> {
        let tenant = new.tenant_id.as_str();
        let node_id = new.node.node_id.as_str();
        for _ in 0..WRITE_ATTEMPTS {
            let mut tx = self.tx(tenant).await?;
            // An expired leftover is no request to merge into.
            sqlx::query(
                "DELETE FROM node_pairing_requests \
                 WHERE tenant_id = $1 AND node_id = $2 AND expires_at <= $3",
            )
            .bind(tenant)
            .bind(node_id)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(service_error)?;
            let existing: Option<String> = sqlx::query_scalar(
                "SELECT user_id FROM node_pairing_requests WHERE tenant_id = $1 AND node_id = $2",
            )
            .bind(tenant)
            .bind(node_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(service_error)?;
            let user = match (&existing, owner) {
                (Some(user), _) if *user == new.user_id => user,
                (Some(_), MergeOwner::Refuse) => {
                    return Err(ServiceError::forbidden("node pairing denied"));
                }
                (Some(user), MergeOwner::Keep) => user,
                _ => &new.user_id,
            };
            let request_id = uuid::Uuid::now_v7().to_string();
            // A merge happens only into the request read above (same user).
            let sql = format!(
                "INSERT INTO node_pairing_requests ({REQUEST_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                         $17, $18) \
                 ON CONFLICT (tenant_id, node_id) DO UPDATE SET user_id = excluded.user_id, \
                     display_name = excluded.display_name, platform = excluded.platform, \
                     version = excluded.version, core_version = excluded.core_version, \
                     ui_version = excluded.ui_version, device_family = excluded.device_family, \
                     model_identifier = excluded.model_identifier, caps = excluded.caps, \
                     commands = excluded.commands, remote_ip = excluded.remote_ip, \
                     silent = excluded.silent, is_repair = excluded.is_repair, \
                     expires_at = excluded.expires_at \
                 WHERE node_pairing_requests.user_id = $19 \
                 RETURNING {REQUEST_COLUMNS}"
            );
            let query = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&request_id)
                .bind(tenant)
                .bind(user)
                .bind(node_id);
            let row = bind_facts(query, &new.node)
                .bind(i64::from(new.silent))
                .bind(i64::from(new.is_repair))
                .bind(now)
                .bind(new.expires_at)
                .bind(existing.as_deref().unwrap_or(""))
                .fetch_optional(&mut *tx)
                .await
                .map_err(service_error)?;
            // None: the request changed meanwhile; read it again.
            if let Some(row) = row {
                commit(tx).await?;
                let request = request_of(&row)?;
                let created = request.request_id == request_id;
                return Ok((request, created));
            }
        }
        Err(ServiceError::unavailable(
            "node pairing request changed concurrently; retry",
        ))
    }

    /// Deletes the live pending request `request_id` of `scope` and returns it.
    pub async fn take_node_request(
        &self,
        scope: Scope<'_>,
        request_id: &str,
        now: i64,
    ) -> Result<Option<NodeRequestRecord>, ServiceError> {
        let mut tx = self.tx(scope.tenant).await?;
        let taken = claim(&mut tx, scope, request_id, "", now).await?;
        commit(tx).await?;
        Ok(taken)
    }

    /// Approves `request` (as read by the approver in `scope`) in one
    /// transaction: claims it unchanged (same declared commands; of the
    /// scope's user when it has one), then writes the paired record of the
    /// request's user with the declared commands approved and `token_hash`,
    /// keeping the creation time of an earlier pairing. NOT_FOUND when the
    /// request is gone, UNAVAILABLE when it changed meanwhile, FORBIDDEN when
    /// a scope of one user would overwrite another user's paired node.
    pub async fn approve_node(
        &self,
        scope: Scope<'_>,
        request: &NodeRequestRecord,
        token_hash: &str,
        now: i64,
    ) -> Result<PairedNodeRecord, ServiceError> {
        let mut tx = self.tx(scope.tenant).await?;
        let commands = list_to_text(&request.node.commands);
        let claimed = claim(&mut tx, scope, &request.request_id, &commands, now).await?;
        let Some(claimed) = claimed else {
            drop(tx);
            return Err(
                match self.node_request(scope, &request.request_id, now).await? {
                    Some(_) => ServiceError::unavailable(
                        "node pairing request changed concurrently; retry",
                    ),
                    None => ServiceError::not_found("unknown requestId"),
                },
            );
        };
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT user_id FROM paired_nodes WHERE tenant_id = $1 AND node_id = $2",
        )
        .bind(scope.tenant)
        .bind(&claimed.node.node_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(service_error)?;
        if let (Some(owner), Some(user)) = (&owner, scope.user)
            && owner != user
        {
            // The claim rolls back with the transaction.
            return Err(ServiceError::forbidden("node pairing approval denied"));
        }
        let sql = format!(
            "INSERT INTO paired_nodes ({PAIRED_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (tenant_id, node_id) DO UPDATE SET user_id = excluded.user_id, \
                 display_name = excluded.display_name, platform = excluded.platform, \
                 version = excluded.version, core_version = excluded.core_version, \
                 ui_version = excluded.ui_version, device_family = excluded.device_family, \
                 model_identifier = excluded.model_identifier, caps = excluded.caps, \
                 approved_commands = excluded.approved_commands, \
                 remote_ip = excluded.remote_ip, token_hash = excluded.token_hash, \
                 approved_at = excluded.approved_at \
             RETURNING {PAIRED_COLUMNS}"
        );
        let node = &claimed.node;
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&claimed.tenant_id)
            .bind(&node.node_id)
            .bind(&claimed.user_id);
        let row = bind_facts(query, node)
            .bind(now)
            .bind(now)
            .bind(token_hash)
            .fetch_one(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        paired_of(&row)
    }

    /// Removes the paired node `node_id` of `scope` and its pending requests.
    /// The user of what was removed, if there was a paired node or a live request.
    pub async fn delete_node(
        &self,
        scope: Scope<'_>,
        node_id: &str,
        now: i64,
    ) -> Result<Option<String>, ServiceError> {
        let mut tx = self.tx(scope.tenant).await?;
        let paired: Option<String> = sqlx::query_scalar(
            "DELETE FROM paired_nodes WHERE tenant_id = $1 AND ($2 = '' OR user_id = $2) \
             AND node_id = $3 RETURNING user_id",
        )
        .bind(scope.tenant)
        .bind(scope.user())
        .bind(node_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(service_error)?;
        let requests: Vec<(String, i64)> = sqlx::query_as(
            "DELETE FROM node_pairing_requests \
             WHERE tenant_id = $1 AND ($2 = '' OR user_id = $2) AND node_id = $3 \
             RETURNING user_id, expires_at",
        )
        .bind(scope.tenant)
        .bind(scope.user())
        .bind(node_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(service_error)?;
        commit(tx).await?;
        // An expired request alone is nothing to remove.
        Ok(paired.or_else(|| {
            requests
                .into_iter()
                .find(|(_, expires_at)| *expires_at > now)
                .map(|(user, _)| user)
        }))
    }

    /// Sets the display name of the paired node `node_id` of `scope`; the
    /// updated record, or `None` when there is no such node.
    pub async fn rename_node(
        &self,
        scope: Scope<'_>,
        node_id: &str,
        display_name: &str,
    ) -> Result<Option<PairedNodeRecord>, ServiceError> {
        let sql = format!(
            "UPDATE paired_nodes SET display_name = $4 \
             WHERE tenant_id = $1 AND ($2 = '' OR user_id = $2) AND node_id = $3 \
             RETURNING {PAIRED_COLUMNS}"
        );
        let mut tx = self.tx(scope.tenant).await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(scope.tenant)
            .bind(scope.user())
            .bind(node_id)
            .bind(display_name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(service_error)?;
        commit(tx).await?;
        row.as_ref().map(paired_of).transpose()
    }
}

/// Deletes and returns the live request `request_id` of `scope` (only if it
/// declares `commands`, as stored, when that is not empty).
async fn claim(
    tx: &mut Tx,
    scope: Scope<'_>,
    request_id: &str,
    commands: &str,
    now: i64,
) -> Result<Option<NodeRequestRecord>, ServiceError> {
    let sql = format!(
        "DELETE FROM node_pairing_requests \
         WHERE tenant_id = $1 AND ($2 = '' OR user_id = $2) AND request_id = $3 \
         AND expires_at > $4 AND ($5 = '' OR commands = $5) RETURNING {REQUEST_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(scope.tenant)
        .bind(scope.user())
        .bind(request_id)
        .bind(now)
        .bind(commands)
        .fetch_optional(&mut **tx)
        .await
        .map_err(service_error)?;
    row.as_ref().map(request_of).transpose()
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// Binds the facts of `node` after its id, in column order: `display_name`
/// through `remote_ip` (commands as declared or approved).
fn bind_facts<'q>(query: AnyQuery<'q>, node: &'q NodeFacts) -> AnyQuery<'q> {
    query
        .bind(&node.display_name)
        .bind(&node.platform)
        .bind(&node.version)
        .bind(&node.core_version)
        .bind(&node.ui_version)
        .bind(&node.device_family)
        .bind(&node.model_identifier)
        .bind(list_to_text(&node.caps))
        .bind(list_to_text(&node.commands))
        .bind(&node.remote_ip)
}

/// The node facts of `row`, with its commands from `commands`.
fn facts(row: Columns<'_>, commands: &str) -> Result<NodeFacts, ServiceError> {
    Ok(NodeFacts {
        node_id: row.text("node_id")?,
        display_name: row.text("display_name")?,
        platform: row.text("platform")?,
        version: row.text("version")?,
        core_version: row.text("core_version")?,
        ui_version: row.text("ui_version")?,
        device_family: row.text("device_family")?,
        model_identifier: row.text("model_identifier")?,
        caps: row.list("caps")?,
        commands: row.list(commands)?,
        remote_ip: row.text("remote_ip")?,
    })
}

fn request_of(row: &AnyRow) -> Result<NodeRequestRecord, ServiceError> {
    let columns = Columns::of(row);
    Ok(NodeRequestRecord {
        request_id: columns.text("request_id")?,
        tenant_id: columns.text("tenant_id")?,
        user_id: columns.text("user_id")?,
        node: facts(columns, "commands")?,
        silent: columns.int("silent")? != 0,
        is_repair: columns.int("is_repair")? != 0,
        created_at: columns.int("created_at")?,
        expires_at: columns.int("expires_at")?,
    })
}

fn paired_of(row: &AnyRow) -> Result<PairedNodeRecord, ServiceError> {
    let columns = Columns::of(row);
    Ok(PairedNodeRecord {
        tenant_id: columns.text("tenant_id")?,
        user_id: columns.text("user_id")?,
        node: facts(columns, "approved_commands")?,
        token_hash: columns.text("token_hash")?,
        created_at: columns.int("created_at")?,
        approved_at: columns.int("approved_at")?,
    })
}
