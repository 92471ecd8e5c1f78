//! The memory backend: every port in this process.

use crate::config::PlatformModeArg;
use std::sync::Arc;
use stockade_application::ports::clock::Clock;
use stockade_memory::{MemoryBackend, PlatformMode, SystemClock};

/// Builds every memory adapter on the system clock, with the data-platform stand-in answering
/// as `mode` says.
pub fn build(mode: PlatformModeArg) -> MemoryBackend {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let memory = MemoryBackend::new(clock);
    memory.platform.set_mode(match mode {
        PlatformModeArg::Accept => PlatformMode::Accept,
        PlatformModeArg::Fail => PlatformMode::Fail,
        PlatformModeArg::Hang => PlatformMode::Hang,
    });
    memory
}
