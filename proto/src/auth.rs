//! Auth and pairing contract.

use crate::pb::auth::v1::auth_service_client::AuthServiceClient as GrpcClient;
use crate::pb::auth::v1::auth_service_server::{
    AuthService as GrpcService, AuthServiceServer as GrpcServer,
};
pub use crate::pb::auth::v1::*;

crate::macros::service_bindings! {
    name: "auth",
    trait AuthApi,
    client AuthClient,
    adapter AuthGrpc,
    rpcs {
        /// Verifies a connect handshake; the one call made before a principal exists.
        public fn authenticate_connect(AuthenticateConnectRequest) -> AuthenticateConnectResponse;
        authed fn request_pairing(RequestPairingRequest) -> PairingRequest;
        authed fn list_pairing(ListPairingRequest) -> ListPairingResponse;
        authed fn approve_pairing(ApprovePairingRequest) -> ApprovePairingResponse;
        authed fn reject_pairing(RejectPairingRequest) -> RejectPairingResponse;
        authed fn remove_device(RemoveDeviceRequest) -> RemoveDeviceResponse;
        public fn pairing_status(PairingStatusRequest) -> PairingStatusResponse;
        authed fn rotate_device_token(RotateDeviceTokenRequest) -> DeviceTokenInfo;
        authed fn revoke_device_token(RevokeDeviceTokenRequest) -> DeviceTokenInfo;
        authed fn create_api_key(CreateApiKeyRequest) -> CreateApiKeyResponse;
        authed fn list_api_keys(ListApiKeysRequest) -> ListApiKeysResponse;
        authed fn revoke_api_key(RevokeApiKeyRequest) -> ApiKey;
        authed fn create_tenant(CreateTenantRequest) -> Tenant;
        authed fn update_tenant(UpdateTenantRequest) -> Tenant;
        authed fn get_tenant(GetTenantRequest) -> Tenant;
        authed fn list_tenants(ListTenantsRequest) -> ListTenantsResponse;
        authed fn put_user(PutUserRequest) -> User;
        authed fn remove_user(RemoveUserRequest) -> RemoveUserResponse;
        authed fn list_users(ListUsersRequest) -> ListUsersResponse;
        authed fn set_secret(SetSecretRequest) -> SecretInfo;
        authed fn list_secrets(ListSecretsRequest) -> ListSecretsResponse;
        authed fn delete_secret(DeleteSecretRequest) -> DeleteSecretResponse;
        /// A secret's plaintext, for the runner's principal only.
        authed fn reveal_secret(RevealSecretRequest) -> RevealSecretResponse;
        authed fn request_node_pairing(RequestNodePairingRequest) -> RequestNodePairingResponse;
        /// A node socket completed its handshake; for a `node` principal of that node only.
        authed fn node_connected(NodeConnectedRequest) -> NodeConnectedResponse;
        authed fn list_node_pairing(ListNodePairingRequest) -> ListNodePairingResponse;
        /// Returns the node's new token, once.
        authed fn approve_node_pairing(ApproveNodePairingRequest) -> ApproveNodePairingResponse;
        authed fn reject_node_pairing(RejectNodePairingRequest) -> RejectNodePairingResponse;
        authed fn remove_node(RemoveNodeRequest) -> RemoveNodeResponse;
        authed fn verify_node(VerifyNodeRequest) -> VerifyNodeResponse;
        authed fn rename_node(RenameNodeRequest) -> PairedNode;
        authed fn get_node(GetNodeRequest) -> GetNodeResponse;
    }
}
