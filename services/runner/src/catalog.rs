//! What a runner tells about itself: the models it is configured to call
//! (`ListModels`: a tenant's own providers' models, else the configured
//! one), its tools and which of them an agent has (`ListTools`),
//! and which runs the caller may count (`RunnerStats`).
//!
//! Invariants: a model entry never carries the API key, nor the base URL's
//! user info, path or query (only its host names the provider); a caller
//! counts only runs of its own tenant, and only its own user's unless it sees
//! the whole tenant.

use clawgate_proto::Principal;
use clawgate_proto::runner::{ListModelsResponse, ListToolsResponse, Model, RunInfo, ToolInfo};

use clawgate_proto::session::TenantProvider;

use crate::config::RunnerConfig;
use crate::tools::ToolSet;

/// The configured provider's model, or none.
pub(crate) fn models(config: &RunnerConfig) -> ListModelsResponse {
    let models = config
        .provider
        .iter()
        .map(|provider| {
            let host = host_of(&provider.base_url);
            Model {
                id: provider.model.clone(),
                local: is_local(&host),
                provider: host,
                has_api_key: provider.api_key.is_some(),
            }
        })
        .collect();
    ListModelsResponse { models }
}

/// The models of a tenant's own providers, in their order; `provider` is the
/// provider's id (the qualifier of its model names).
pub(crate) fn tenant_models(providers: &[TenantProvider]) -> ListModelsResponse {
    let models = providers
        .iter()
        .flat_map(|provider| {
            let local = is_local(&host_of(&provider.base_url));
            provider.models.iter().map(move |model| Model {
                id: model.clone(),
                provider: provider.provider_id.clone(),
                local,
                has_api_key: !provider.api_key_secret.is_empty(),
            })
        })
        .collect();
    ListModelsResponse { models }
}

/// Every tool of `tools`, marked with whether an agent with `allowlist` and
/// `max_tool_steps` has it.
pub(crate) fn tools(
    tools: &ToolSet,
    agent_id: String,
    allowlist: &[String],
    max_tool_steps: u32,
) -> ListToolsResponse {
    let agent = tools.for_agent(allowlist);
    let tools = tools
        .all()
        .map(|tool| {
            let spec = tool.spec();
            ToolInfo {
                enabled: max_tool_steps > 0 && agent.has(&spec.name),
                parameters_json: spec.parameters.to_string(),
                name: spec.name,
                description: spec.description,
                on_by_default: tool.on_by_default(),
                needs_approval: tool.needs_approval(),
            }
        })
        .collect();
    ListToolsResponse { agent_id, tools }
}

/// Whether `principal` may count `run`.
pub(crate) fn visible(principal: &Principal, run: &RunInfo) -> bool {
    run.tenant_id == principal.tenant_id
        && principal
            .user_filter()
            .is_none_or(|user| run.user_id == user)
}

/// The host of a URL, lowercased, without scheme, user info, port, path or
/// query (`https://u:p@API.example.com:8443/v1` → `api.example.com`).
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let host = if let Some(bracketed) = host_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    host.to_ascii_lowercase()
}

/// Whether `host` is a loopback or private address, or `localhost`.
fn is_local(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => ip.is_loopback() || ip.is_private() || ip.is_link_local(),
        Ok(std::net::IpAddr::V6(ip)) => ip.is_loopback() || ip.is_unique_local(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProviderConfig;

    #[test]
    fn hosts_are_read_without_credentials_ports_or_paths() {
        assert_eq!(
            host_of("https://u:secret@API.example.com:8443/v1?k=x"),
            "api.example.com"
        );
        assert_eq!(host_of("http://127.0.0.1:11434/v1"), "127.0.0.1");
        assert_eq!(host_of("http://[::1]:8080/v1"), "::1");
        assert_eq!(host_of("api.openai.com/v1"), "api.openai.com");
        assert!(is_local("127.0.0.1") && is_local("::1") && is_local("10.1.2.3"));
        assert!(is_local("localhost") && !is_local("api.openai.com") && !is_local("8.8.8.8"));
    }

    #[test]
    fn the_configured_model_is_listed_without_its_key() {
        let mut config = RunnerConfig::default();
        assert!(models(&config).models.is_empty(), "no provider, no model");
        config.provider = Some(
            ProviderConfig::new("https://user:pw@api.example.com/v1", "m-1").with_api_key("sk-x"),
        );
        let listed = models(&config).models;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].id, "m-1");
        assert_eq!(listed[0].provider, "api.example.com");
        assert!(listed[0].has_api_key && !listed[0].local);
        assert!(!format!("{listed:?}").contains("sk-x") && !format!("{listed:?}").contains("pw"));
    }
}
