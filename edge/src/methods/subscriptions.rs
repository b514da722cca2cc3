//! Session subscriptions (OpenClaw only): `sessions.subscribe` /
//! `sessions.unsubscribe` `{}` ⇒ `{subscribed}`, and
//! `sessions.messages.subscribe` / `unsubscribe` `{key, agentId?,
//! includeApprovals?}` ⇒ `{subscribed, key}`.
//!
//! They change what the connection itself receives, so the connection answers
//! them at once ([`Handler::Subscribe`]); what a subscription delivers is
//! decided by the dialect (`crate::openclaw::session_events`). Invariant: a
//! key is canonicalized exactly as `chat.send` does, so a subscription matches
//! the events of the session that key names. v4 dropped `sessions.unsubscribe`
//! (its clients subscribe once per connection).

use clawgate_proto::ServiceError;

use super::decl::{Handler, Method, Request, Scope, Subscription, Versions};
use crate::session_key;

const fn subscribe(
    name: &'static str,
    parse: fn(&Request<'_>) -> Result<Subscription, ServiceError>,
) -> Method {
    Method {
        name,
        openclaw: Some(Scope::Read),
        goclaw: None,
        handler: Handler::Subscribe(parse),
        versions: Versions::ALL,
    }
}

pub const METHODS: &[Method] = &[
    subscribe("sessions.subscribe", |r| parse_all(r, true)),
    subscribe("sessions.unsubscribe", |r| parse_all(r, false)).until_v3(),
    subscribe("sessions.messages.subscribe", |r| parse_messages(r, true)),
    subscribe("sessions.messages.unsubscribe", |r| {
        parse_messages(r, false)
    }),
];

fn parse_all(request: &Request<'_>, on: bool) -> Result<Subscription, ServiceError> {
    request.closed(&[])?;
    Ok(Subscription::Sessions(on))
}

fn parse_messages(request: &Request<'_>, on: bool) -> Result<Subscription, ServiceError> {
    let bad = |why: String| request.invalid(why);
    let obj = request.closed(&["key", "agentId", "includeApprovals"])?;
    let raw = obj.req_str_len("key", 512).map_err(bad)?;
    let agent = obj.opt_str_len("agentId", 64).map_err(bad)?;
    obj.opt_bool("includeApprovals").map_err(bad)?;
    let config = request.config;
    // An unqualified key belongs to the named agent, as the TUI sends it.
    let default_agent = agent
        .map(|id| session_key::normalize_agent_id(id, &config.default_agent_id))
        .unwrap_or_else(|| config.default_agent_id.clone());
    let key = session_key::canonicalize(raw, &default_agent, &config.main_key)
        .map_err(|err| bad(err.to_string()))?;
    Ok(Subscription::Messages { key, on })
}

#[cfg(test)]
mod tests {
    use clawgate_proto::Principal;
    use serde_json::json;

    use super::*;
    use crate::methods::decl::parse_with;
    use crate::params::Style;

    fn parse(name: &'static str, params: serde_json::Value) -> Result<Subscription, ServiceError> {
        let method = METHODS.iter().find(|m| m.name == name).expect("declared");
        let Handler::Subscribe(parse) = method.handler else {
            panic!("{name} is a subscription");
        };
        let principal = Principal::default();
        parse_with(name, &params, Style::Camel, &principal, parse)
    }

    #[test]
    fn subscriptions_parse() {
        assert_eq!(
            parse("sessions.subscribe", json!({})).unwrap(),
            Subscription::Sessions(true)
        );
        assert_eq!(
            parse("sessions.unsubscribe", json!({})).unwrap(),
            Subscription::Sessions(false)
        );
        assert_eq!(
            parse("sessions.messages.subscribe", json!({"key": "Main"})).unwrap(),
            Subscription::Messages {
                key: "agent:main:main".into(),
                on: true
            }
        );
        assert_eq!(
            parse(
                "sessions.messages.unsubscribe",
                json!({"key": "x", "agentId": "Ops", "includeApprovals": true})
            )
            .unwrap(),
            Subscription::Messages {
                key: "agent:ops:x".into(),
                on: false
            }
        );
    }

    #[test]
    fn bad_params_are_refused() {
        let err = parse("sessions.subscribe", json!({"limit": 3})).unwrap_err();
        assert!(err.message.starts_with("invalid sessions.subscribe params"));
        let err = parse("sessions.messages.subscribe", json!({})).unwrap_err();
        assert!(err.message.contains("key"), "{}", err.message);
        let err = parse("sessions.messages.subscribe", json!({"key": 5})).unwrap_err();
        assert!(err.message.contains("key"), "{}", err.message);
        let err = parse("sessions.messages.subscribe", json!({"key": "agent:x"})).unwrap_err();
        assert!(err.message.contains("malformed"), "{}", err.message);
    }
}
