//! [`ProviderSlot`]: the model provider a runner was configured with, or why
//! it has none. Decided once, when the runner is built; every run asks it.
//!
//! Invariant: a missing or unusable provider is never a panic or a start-up
//! failure: runs are refused with `FAILED_PRECONDITION` and a message that
//! says what to configure.

use std::sync::Arc;

use clawgate_proto::ServiceError;

use super::{AnthropicProvider, ModelProvider, OpenAiProvider};
use crate::config::{ProviderKind, RunnerConfig};

/// Shown when no model provider is configured.
pub const NO_PROVIDER_MESSAGE: &str = "no model provider configured: set CLAWGATE_MODEL_BASE_URL (and CLAWGATE_MODEL, CLAWGATE_MODEL_API_KEY)";

pub(crate) enum ProviderSlot {
    Missing,
    /// Configured, but the client could not be built (logged at startup).
    Broken,
    Ready(Arc<dyn ModelProvider>),
}

impl ProviderSlot {
    /// The provider of `config`, if it has one.
    pub fn from_config(config: &RunnerConfig) -> Self {
        match &config.provider {
            None => Self::Missing,
            Some(provider_config) => {
                let (settings, timeouts) = (provider_config.clone(), config.provider_timeouts);
                let built: Result<Arc<dyn ModelProvider>, _> = match provider_config.kind {
                    ProviderKind::OpenAi => {
                        OpenAiProvider::new(settings, timeouts).map(|p| Arc::new(p) as _)
                    }
                    ProviderKind::Anthropic => {
                        AnthropicProvider::new(settings, timeouts).map(|p| Arc::new(p) as _)
                    }
                };
                match built {
                    Ok(provider) => Self::Ready(provider),
                    Err(err) => {
                        tracing::error!(error = %err, "model provider unusable");
                        Self::Broken
                    }
                }
            }
        }
    }

    /// The provider, or the error a run is refused with.
    pub fn get(&self) -> Result<Arc<dyn ModelProvider>, ServiceError> {
        match self {
            Self::Ready(provider) => Ok(provider.clone()),
            Self::Missing => Err(ServiceError::failed_precondition(NO_PROVIDER_MESSAGE)),
            Self::Broken => Err(ServiceError::failed_precondition(
                "the model provider could not be initialised; see the runner's log",
            )),
        }
    }
}
