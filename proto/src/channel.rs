//! Channel service contract: chat-platform accounts and outbound delivery.

use crate::pb::channel::v1::channel_service_client::ChannelServiceClient as GrpcClient;
use crate::pb::channel::v1::channel_service_server::{
    ChannelService as GrpcService, ChannelServiceServer as GrpcServer,
};
pub use crate::pb::channel::v1::*;

crate::macros::service_bindings! {
    name: "channel",
    trait ChannelApi,
    client ChannelClient,
    adapter ChannelGrpc,
    rpcs {
        authed fn create_account(CreateAccountRequest) -> ChannelAccount;
        authed fn update_account(UpdateAccountRequest) -> ChannelAccount;
        authed fn delete_account(DeleteAccountRequest) -> DeleteAccountResponse;
        authed fn get_account(GetAccountRequest) -> ChannelAccount;
        authed fn list_accounts(ListAccountsRequest) -> ListAccountsResponse;
        authed fn send(SendRequest) -> SendResponse;
    }
}
