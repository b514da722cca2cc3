//! Cluster-wide run leases: at most one active run per session across every
//! process sharing a Redis, run ids that hold across processes, and the data a
//! reaper needs to end the runs of a process that died.
//!
//! The lease knows a run only by its [`RunRef`] and session key; what the
//! holder records about it is a payload `P` (any protobuf message) the lease
//! stores and returns untouched.
//!
//! **Keys** (`{prefix}` as for the bus; `{t:u}` is the user's hash tag, see
//! `redis::keys`, so the keys one script touches share a Redis Cluster slot):
//! - `{prefix}:run:{t:u}:session:<session key>` — the session's **lease**: a
//!   string `<token>:<run id>`, set with `SET NX PX <lease>` on admission,
//!   extended by the owning runner every ~lease/3 (only while it still holds
//!   the token), deleted by compare-and-delete when the run ends;
//! - `{prefix}:run:{t:u}:id:<run id>` — the **run record** (a hash: `state`
//!   `running|ended`, `owner` process id, `token`, `session`, `info` = the
//!   holder's encoded payload). The run id is the idempotency key, so a resend
//!   to any process finds it. TTL: while running
//!   `lease + record_ttl` (renewed with the lease), after the end `record_ttl`
//!   (the dedupe TTL);
//! - `{prefix}:run:{t:u}:end:<run id>` — the **end claim** (`SET NX PX
//!   record_ttl`): whoever sets it (the owner at the run's end, or a reaper
//!   after the lease expired) writes the run's last transcript row and terminal
//!   event; everyone else does nothing, so a run is finalized once;
//! - `{prefix}:runs:active` — an **index** of running runs (sorted set, member
//!   `<tenant>:<user>:<run id>` escaped like the tag, score = lease deadline in
//!   the renewing runner's clock, ms). Only a list of candidates for reapers:
//!   the truth is the lease and the record, checked atomically by
//!   [`RedisRunLeases::claim_lost`]. It is the only key outside a user's slot,
//!   so it is updated by plain commands pipelined next to the scripts.
//!
//! Invariants: every Redis call is bounded by the handle's command timeout; every
//! key except the index has a TTL, and index members are removed when their run
//! ends or is found ended; admission, renewal, release, finish and the lost-run
//! claim are each one atomic script on one user's keys.

mod scripts;

use std::marker::PhantomData;
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::clock::now_ms;
use crate::redis::Redis;
use crate::redis::keys::{escape, user_tag};
use crate::replay::RunRef;

/// How long leases and records live.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    /// A lease not renewed for this long expires; its run is then ended by a reaper.
    pub lease: Duration,
    /// How long a finished run's record is kept (the dedupe TTL).
    pub record_ttl: Duration,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(10),
            record_ttl: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Redis cannot be reached or answered nonsense; report `UNAVAILABLE`.
    #[error("run lease store unavailable: {0}")]
    Unavailable(String),
}

impl From<LeaseError> for clawgate_proto::ServiceError {
    fn from(err: LeaseError) -> Self {
        tracing::warn!(error = %err, "run lease store error");
        clawgate_proto::ServiceError::unavailable("run coordination unavailable")
    }
}

/// A run as its record describes it.
#[derive(Clone, Debug, PartialEq)]
pub struct LeaseRecord<P> {
    /// The payload last stored by the holder (at admission or at the end).
    pub info: P,
    /// Id of the process that started it.
    pub owner: String,
    pub running: bool,
}

/// The answer to an admission.
#[derive(Clone, Debug, PartialEq)]
pub enum LeaseAdmission<P> {
    /// The session's lease is now this run's; `token` proves it.
    Granted { token: String },
    /// The run id is known already (running or finished).
    Existing(Box<LeaseRecord<P>>),
    /// Another run holds the session's lease.
    Busy { active_run_id: String },
}

/// A lease held by this process, as renewal needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeldLease {
    pub run: RunRef,
    pub session_key: String,
    pub token: String,
}

/// What [`RedisRunLeases::claim_lost`] found.
#[derive(Clone, Debug, PartialEq)]
pub enum LostRun<P> {
    /// The run ended or was forgotten; its index entry was removed.
    Gone,
    /// Its lease is still held: the owner is alive.
    Alive,
    /// Another process claimed it first.
    Taken,
    /// This caller must finalize it (then call [`RedisRunLeases::finish`] with `token`).
    Claimed {
        record: Box<LeaseRecord<P>>,
        token: String,
    },
}

/// Run leases on Redis whose records carry a payload `P`. Cheap to clone.
pub struct RedisRunLeases<P> {
    connection: ConnectionManager,
    command_timeout: Duration,
    key_prefix: String,
    options: LeaseOptions,
    payload: PhantomData<fn() -> P>,
}

impl<P> Clone for RedisRunLeases<P> {
    fn clone(&self) -> Self {
        Self {
            connection: self.connection.clone(),
            command_timeout: self.command_timeout,
            key_prefix: self.key_prefix.clone(),
            options: self.options.clone(),
            payload: PhantomData,
        }
    }
}

impl<P> std::fmt::Debug for RedisRunLeases<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRunLeases")
            .field("key_prefix", &self.key_prefix)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

fn bad_reply(what: &str) -> LeaseError {
    LeaseError::Unavailable(format!("unexpected redis reply to {what}"))
}

fn decode_record<P: prost::Message + Default>(
    state: &[u8],
    owner: &[u8],
    info: &[u8],
) -> Result<LeaseRecord<P>, LeaseError> {
    let info = P::decode(info).map_err(|_| bad_reply("run record"))?;
    Ok(LeaseRecord {
        running: state == b"running",
        owner: String::from_utf8_lossy(owner).into_owned(),
        info,
    })
}

impl<P: prost::Message + Default> RedisRunLeases<P> {
    /// Leases on `redis`'s shared connection, key prefix and command timeout.
    pub fn new(redis: &Redis, options: LeaseOptions) -> Self {
        Self {
            connection: redis.connection(),
            command_timeout: redis.command_timeout(),
            key_prefix: redis.key_prefix().to_owned(),
            options,
            payload: PhantomData,
        }
    }

    pub fn options(&self) -> &LeaseOptions {
        &self.options
    }

    /// The key of a session's lease.
    pub fn session_key(&self, tenant_id: &str, user_id: &str, session_key: &str) -> String {
        format!(
            "{}:run:{}:session:{session_key}",
            self.key_prefix,
            user_tag(tenant_id, user_id)
        )
    }

    /// The key of a run's record.
    pub fn record_key(&self, run: &RunRef) -> String {
        format!(
            "{}:run:{}:id:{}",
            self.key_prefix,
            user_tag(&run.tenant_id, &run.user_id),
            run.run_id
        )
    }

    fn claim_key(&self, run: &RunRef) -> String {
        format!(
            "{}:run:{}:end:{}",
            self.key_prefix,
            user_tag(&run.tenant_id, &run.user_id),
            run.run_id
        )
    }

    fn index_key(&self) -> String {
        format!("{}:runs:active", self.key_prefix)
    }

    fn index_member(run: &RunRef) -> String {
        format!(
            "{}:{}:{}",
            escape(&run.tenant_id),
            escape(&run.user_id),
            run.run_id
        )
    }

    fn parse_member(member: &str) -> Option<RunRef> {
        let mut parts = member.splitn(3, ':');
        let tenant = unescape(parts.next()?)?;
        let user = unescape(parts.next()?)?;
        let run_id = parts.next()?;
        Some(RunRef::new(&tenant, &user, run_id))
    }

    fn running_ttl(&self) -> u64 {
        millis(self.options.lease + self.options.record_ttl)
    }

    async fn run<T, F>(&self, operation: &str, call: F) -> Result<T, LeaseError>
    where
        F: AsyncFnOnce(&mut ConnectionManager) -> Result<T, redis::RedisError>,
    {
        let mut connection = self.connection.clone();
        tokio::time::timeout(self.command_timeout, call(&mut connection))
            .await
            .map_err(|_| LeaseError::Unavailable(format!("redis {operation} timed out")))?
            .map_err(|err| LeaseError::Unavailable(format!("redis {operation} failed: {err}")))
    }

    /// Admits `run` in `session_key` for `owner`, recording `info`.
    pub async fn admit(
        &self,
        run: &RunRef,
        session_key: &str,
        info: &P,
        owner: &str,
    ) -> Result<LeaseAdmission<P>, LeaseError> {
        let token = uuid::Uuid::new_v4().simple().to_string();
        let lease_key = self.session_key(&run.tenant_id, &run.user_id, session_key);
        let record_key = self.record_key(run);
        let reply: Vec<Vec<u8>> = self
            .run("admit", async |connection| {
                scripts::ADMIT
                    .key(&lease_key)
                    .key(&record_key)
                    .arg(&run.run_id)
                    .arg(&token)
                    .arg(owner)
                    .arg(millis(self.options.lease))
                    .arg(self.running_ttl())
                    .arg(info.encode_to_vec())
                    .arg(session_key)
                    .invoke_async(connection)
                    .await
            })
            .await?;
        match reply.as_slice() {
            [tag] if tag == b"granted" => {
                self.touch_index(std::slice::from_ref(run)).await?;
                Ok(LeaseAdmission::Granted { token })
            }
            [tag, active] if tag == b"busy" => Ok(LeaseAdmission::Busy {
                active_run_id: String::from_utf8_lossy(active).into_owned(),
            }),
            [tag, state, owner, info] if tag == b"existing" => Ok(LeaseAdmission::Existing(
                Box::new(decode_record(state, owner, info)?),
            )),
            _ => Err(bad_reply("admit")),
        }
    }

    /// Moves the index deadline of `runs` to now + lease.
    async fn touch_index(&self, runs: &[RunRef]) -> Result<(), LeaseError> {
        if runs.is_empty() {
            return Ok(());
        }
        let deadline =
            now_ms().saturating_add(i64::try_from(millis(self.options.lease)).unwrap_or(i64::MAX));
        let mut pipeline = redis::pipe();
        for run in runs {
            pipeline
                .cmd("ZADD")
                .arg(self.index_key())
                .arg(deadline)
                .arg(Self::index_member(run))
                .ignore();
        }
        self.run("index", async |connection| {
            pipeline.exec_async(connection).await
        })
        .await
    }

    /// Extends every lease of `held` that is still held, in one round trip.
    /// Returns, per lease, whether it is still this process's.
    pub async fn renew(&self, held: &[HeldLease]) -> Result<Vec<bool>, LeaseError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<(String, String, String)> = held
            .iter()
            .map(|lease| {
                (
                    self.session_key(&lease.run.tenant_id, &lease.run.user_id, &lease.session_key),
                    self.record_key(&lease.run),
                    format!("{}:{}", lease.token, lease.run.run_id),
                )
            })
            .collect();
        let lease_ms = millis(self.options.lease);
        let ttl_ms = self.running_ttl();
        let invocations: Vec<redis::ScriptInvocation<'_>> = keys
            .iter()
            .map(|(lease_key, record_key, value)| {
                let mut invocation = scripts::RENEW.key(lease_key);
                invocation
                    .key(record_key)
                    .arg(value)
                    .arg(lease_ms)
                    .arg(ttl_ms);
                invocation
            })
            .collect();
        let mut pipeline = redis::pipe();
        pipeline.load_script(&scripts::RENEW).ignore();
        for invocation in &invocations {
            pipeline.invoke_script(invocation);
        }
        let renewed: Vec<i64> = self
            .run("renew", async |connection| {
                pipeline.query_async(connection).await
            })
            .await?;
        if renewed.len() != held.len() {
            return Err(bad_reply("renew"));
        }
        let alive: Vec<RunRef> = held
            .iter()
            .zip(&renewed)
            .filter(|(_, ok)| **ok == 1)
            .map(|(lease, _)| lease.run.clone())
            .collect();
        self.touch_index(&alive).await?;
        Ok(renewed.iter().map(|ok| *ok == 1).collect())
    }

    /// Claims the right to finalize `run` (its last transcript row and terminal
    /// event). `true` for exactly one caller while the record is remembered.
    pub async fn claim_end(&self, run: &RunRef, claimer: &str) -> Result<bool, LeaseError> {
        let key = self.claim_key(run);
        let set: Option<String> = self
            .run("claim", async |connection| {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(claimer)
                    .arg("NX")
                    .arg("PX")
                    .arg(self.running_ttl())
                    .query_async(connection)
                    .await
            })
            .await?;
        Ok(set.is_some())
    }

    /// Records the end of a run (`info` holds its final state), frees its
    /// session if `lease.token` still holds the lease and drops it from the index.
    pub async fn finish(&self, lease: &HeldLease, info: &P) -> Result<(), LeaseError> {
        let run = &lease.run;
        let lease_key = self.session_key(&run.tenant_id, &run.user_id, &lease.session_key);
        let record_key = self.record_key(run);
        let value = format!("{}:{}", lease.token, run.run_id);
        let mut invocation = scripts::FINISH.key(&lease_key);
        invocation
            .key(&record_key)
            .arg(&value)
            .arg(info.encode_to_vec())
            .arg(millis(self.options.record_ttl));
        let mut pipeline = redis::pipe();
        pipeline
            .load_script(&scripts::FINISH)
            .ignore()
            .invoke_script(&invocation)
            .ignore()
            .cmd("ZREM")
            .arg(self.index_key())
            .arg(Self::index_member(run))
            .ignore();
        self.run("finish", async |connection| {
            pipeline.exec_async(connection).await
        })
        .await
    }

    /// Forgets a run that was admitted but never started.
    pub async fn release(&self, lease: &HeldLease) -> Result<(), LeaseError> {
        let lease_key =
            self.session_key(&lease.run.tenant_id, &lease.run.user_id, &lease.session_key);
        let record_key = self.record_key(&lease.run);
        let value = format!("{}:{}", lease.token, lease.run.run_id);
        let mut invocation = scripts::RELEASE.key(&lease_key);
        invocation.key(&record_key).arg(&value).arg(&lease.token);
        let mut pipeline = redis::pipe();
        pipeline
            .load_script(&scripts::RELEASE)
            .ignore()
            .invoke_script(&invocation)
            .ignore()
            .cmd("ZREM")
            .arg(self.index_key())
            .arg(Self::index_member(&lease.run))
            .ignore();
        self.run("release", async |connection| {
            pipeline.exec_async(connection).await
        })
        .await
    }

    /// The record of `run`, if remembered.
    pub async fn get(&self, run: &RunRef) -> Result<Option<LeaseRecord<P>>, LeaseError> {
        let key = self.record_key(run);
        let fields: Vec<Option<Vec<u8>>> = self
            .run("get", async |connection| {
                redis::cmd("HMGET")
                    .arg(&key)
                    .arg("state")
                    .arg("owner")
                    .arg("info")
                    .query_async(connection)
                    .await
            })
            .await?;
        match fields.as_slice() {
            [Some(state), owner, Some(info)] => Ok(Some(decode_record(
                state,
                owner.as_deref().unwrap_or_default(),
                info,
            )?)),
            [_, _, _] => Ok(None),
            _ => Err(bad_reply("get")),
        }
    }

    /// The run holding the lease of a session, if any.
    pub async fn active(
        &self,
        tenant_id: &str,
        user_id: &str,
        session_key: &str,
    ) -> Result<Option<LeaseRecord<P>>, LeaseError> {
        let key = self.session_key(tenant_id, user_id, session_key);
        let holder: Option<String> = self
            .run("active", async |connection| {
                redis::cmd("GET").arg(&key).query_async(connection).await
            })
            .await?;
        let Some(run_id) = holder.as_deref().and_then(|value| value.split_once(':')) else {
            return Ok(None);
        };
        self.get(&RunRef::new(tenant_id, user_id, run_id.1)).await
    }

    /// Up to `limit` runs whose index deadline has passed: candidates for
    /// [`Self::claim_lost`].
    pub async fn expired(&self, limit: usize) -> Result<Vec<RunRef>, LeaseError> {
        let key = self.index_key();
        let members: Vec<String> = self
            .run("expired", async |connection| {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&key)
                    .arg("-inf")
                    .arg(now_ms())
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit.max(1))
                    .query_async(connection)
                    .await
            })
            .await?;
        Ok(members
            .iter()
            .filter_map(|m| Self::parse_member(m))
            .collect())
    }

    /// Checks atomically whether `run` lost its lease while still running and,
    /// if so, claims its finalization for `claimer`.
    pub async fn claim_lost(&self, run: &RunRef, claimer: &str) -> Result<LostRun<P>, LeaseError> {
        let record_key = self.record_key(run);
        let session: Option<String> = self
            .run("claim", async |connection| {
                redis::cmd("HGET")
                    .arg(&record_key)
                    .arg("session")
                    .query_async(connection)
                    .await
            })
            .await?;
        let Some(session) = session else {
            self.forget(run).await?;
            return Ok(LostRun::Gone);
        };
        let lease_key = self.session_key(&run.tenant_id, &run.user_id, &session);
        let claim_key = self.claim_key(run);
        let reply: Vec<Vec<u8>> = self
            .run("claim", async |connection| {
                scripts::CLAIM_LOST
                    .key(&lease_key)
                    .key(&record_key)
                    .key(&claim_key)
                    .arg(&run.run_id)
                    .arg(claimer)
                    .arg(self.running_ttl())
                    .invoke_async(connection)
                    .await
            })
            .await?;
        match reply.as_slice() {
            [tag] if tag == b"gone" => {
                self.forget(run).await?;
                Ok(LostRun::Gone)
            }
            [tag] if tag == b"alive" => Ok(LostRun::Alive),
            [tag] if tag == b"taken" => Ok(LostRun::Taken),
            [tag, token, owner, info] if tag == b"claimed" => Ok(LostRun::Claimed {
                record: Box::new(decode_record(b"running", owner, info)?),
                token: String::from_utf8_lossy(token).into_owned(),
            }),
            _ => Err(bad_reply("claim")),
        }
    }

    /// Removes `run` from the index of running runs.
    async fn forget(&self, run: &RunRef) -> Result<(), LeaseError> {
        let key = self.index_key();
        let member = Self::index_member(run);
        self.run("index", async |connection| {
            redis::cmd("ZREM")
                .arg(&key)
                .arg(&member)
                .exec_async(connection)
                .await
        })
        .await
    }
}

/// Reverses `escape`; `None` on a malformed escape.
fn unescape(component: &str) -> Option<String> {
    let mut out = String::with_capacity(component.len());
    let mut rest = component;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        out.push(char::from(u8::from_str_radix(code, 16).ok()?));
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_members_round_trip() {
        let run = RunRef::new("a:b%", "{u}", "run:1");
        let member = RedisRunLeases::<Vec<u8>>::index_member(&run);
        assert_eq!(RedisRunLeases::<Vec<u8>>::parse_member(&member), Some(run));
    }
}
