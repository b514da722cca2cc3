//! Targeted delivery to the pods holding a device's sockets: the mechanism
//! lives in the runtime ([`clawgate_runtime::device_registry`]); the edge
//! registers its device sockets there and publishes per-device messages to the
//! pods it lists.

pub use clawgate_runtime::device_registry::{
    DeviceEntry, DeviceRegistry, LocalDevices, inbox_topic,
};
