//! Session service contract: sessions and their append-only transcripts.

use crate::pb::session::v1::session_service_client::SessionServiceClient as GrpcClient;
use crate::pb::session::v1::session_service_server::{
    SessionService as GrpcService, SessionServiceServer as GrpcServer,
};
pub use crate::pb::session::v1::*;

crate::macros::service_bindings! {
    name: "session",
    trait SessionApi,
    client SessionClient,
    adapter SessionGrpc,
    rpcs {
        /// Creates the caller's session `session_key` if it does not exist.
        authed fn ensure_session(EnsureSessionRequest) -> Session;
        authed fn get_session(GetSessionRequest) -> Session;
        authed fn list_sessions(ListSessionsRequest) -> ListSessionsResponse;
        authed fn patch_session(PatchSessionRequest) -> Session;
        /// Soft delete.
        authed fn delete_session(DeleteSessionRequest) -> DeleteSessionResponse;
        /// Soft delete and a fresh session under the same key, in one transaction.
        authed fn reset_session(ResetSessionRequest) -> Session;
        /// Appends one transcript row; idempotent on (run_id, role) when run_id is set.
        authed fn append_message(AppendMessageRequest) -> TranscriptMessage;
        authed fn list_messages(ListMessagesRequest) -> ListMessagesResponse;
        /// The tenant's agents, the default one first.
        authed fn list_agents(ListAgentsRequest) -> ListAgentsResponse;
        authed fn get_agent(GetAgentRequest) -> Agent;
        authed fn create_agent(CreateAgentRequest) -> Agent;
        authed fn update_agent(UpdateAgentRequest) -> Agent;
        authed fn delete_agent(DeleteAgentRequest) -> DeleteAgentResponse;
        /// Adds a command to an agent's exec allowlist.
        authed fn allow_exec(AllowExecRequest) -> Agent;
        /// The tenant's model providers.
        authed fn list_providers(ListProvidersRequest) -> ListProvidersResponse;
        authed fn put_provider(PutProviderRequest) -> TenantProvider;
        authed fn delete_provider(DeleteProviderRequest) -> DeleteProviderResponse;
    }
}
