//! The effective configuration of this process as `config.get` shows it:
//! every setting's value after flags, environment and defaults, in a JSON
//! object grouped like the settings table of the README.
//!
//! Invariant: no secret leaves in it. Tokens and keys are replaced by
//! [`REDACTED`] when set (null when not); URLs lose their password and any
//! query parameter that looks like a credential.

use serde_json::{Value, json};

use super::Plan;

/// What a secret reads as (the reference's sentinel).
pub const REDACTED: &str = "__OPENCLAW_REDACTED__";

/// Query parameters treated as credentials (matched as substrings).
const SECRET_PARAMS: [&str; 5] = ["pass", "secret", "token", "key", "auth"];

/// The redacted configuration of `plan`.
pub fn redacted(plan: &Plan) -> Value {
    let common = &plan.common;
    let edge = &common.edge;
    let auth = &common.auth;
    let secret = |set: bool| if set { json!(REDACTED) } else { Value::Null };
    let url = |url: &Option<String>| url.as_deref().map(redact_url);
    let services: Vec<&str> = plan.services.iter().map(|s| s.name()).collect();
    json!({
        "services": services,
        "gateway": {
            "listen": common.listen.to_string(),
            "token": secret(plan.gateway_token.is_some() || common.gateway_token.is_some()),
            "defaultTenant": common.default_tenant,
            "defaultUser": common.default_user,
            "ownerIds": common.owner_ids,
        },
        "model": {
            "provider": common.model_provider,
            "baseUrl": url(&common.model_base_url),
            "model": common.model,
            "apiKey": secret(common.model_api_key.is_some()),
            "coalesceMs": common.coalesce_ms,
        },
        "edge": {
            "maxPayloadBytes": edge.max_payload_bytes,
            "socketQueueBytes": edge.socket_queue_bytes,
            "handshakeTimeoutMs": edge.handshake_timeout_ms,
            "tickIntervalMs": edge.tick_interval_ms,
            "drainTimeoutMs": edge.drain_timeout_ms,
            "preauthSocketsPerIp": edge.preauth_sockets_per_ip,
            "restartExpectedMs": edge.restart_expected_ms,
            "topicLingerMs": edge.topic_linger_ms,
        },
        "auth": {
            "pairingAutoApproveLocal": auth.pairing_auto_approve_local,
            "maxFailures": auth.auth_max_failures,
            "failureWindowMs": auth.auth_failure_window_ms,
            "lockoutMs": auth.auth_lockout_ms,
            "limitLoopback": auth.auth_limit_loopback,
            "encryptionKey": secret(common.encryption_key.is_some()),
        },
        "session": { "retentionDays": common.session_retention_days },
        "storage": {
            "databaseUrl": url(&plan.database_url),
            "bus": if plan.redis.is_some() { "redis" } else { "in-process" },
            "migrate": plan.migrate,
        },
        "peers": {
            "authUrl": url(&plan.auth_url),
            "runnerUrl": url(&plan.runner_url),
            "sessionUrl": url(&plan.session_url),
        },
        "runner": {
            "shutdownGraceMs": u64::try_from(plan.runner_shutdown_grace.as_millis()).unwrap_or(u64::MAX),
            "leaseMs": u64::try_from(plan.runner_cluster.lease.as_millis()).unwrap_or(u64::MAX),
            "reapIntervalMs": u64::try_from(plan.runner_cluster.reap_interval.as_millis()).unwrap_or(u64::MAX),
        },
    })
}

/// `url` without the password of its user info and without credential-like
/// query parameters' values.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(at) => rest.split_at(at),
                None => (rest, ""),
            };
            let authority = match authority.rsplit_once('@') {
                Some((user_info, host)) => match user_info.split_once(':') {
                    Some((user, _password)) => format!("{user}:{REDACTED}@{host}"),
                    None => format!("{user_info}@{host}"),
                },
                None => authority.to_owned(),
            };
            format!("{scheme}://{authority}{path}")
        }
        None => base.to_owned(),
    };
    match query {
        None => base,
        Some(query) => {
            let params: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _))
                        if SECRET_PARAMS
                            .iter()
                            .any(|s| name.to_ascii_lowercase().contains(s)) =>
                    {
                        format!("{name}={REDACTED}")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/clawgate?sslmode=require&password=x"),
            format!(
                "postgres://app:{REDACTED}@db:5432/clawgate?sslmode=require&password={REDACTED}"
            )
        );
        assert_eq!(
            redact_url("redis://:pw@r:6379"),
            format!("redis://:{REDACTED}@r:6379")
        );
        assert_eq!(
            redact_url("http://127.0.0.1:50051"),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            redact_url("sqlite:///tmp/x.db?mode=rwc"),
            "sqlite:///tmp/x.db?mode=rwc"
        );
        assert_eq!(
            redact_url("https://api.example.com/v1?api_key=sk"),
            format!("https://api.example.com/v1?api_key={REDACTED}")
        );
    }
}
