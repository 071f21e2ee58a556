//! The in-memory ports, each with the semantics of what it stands for in the deployment.

pub mod chain;
pub mod content;
pub mod queue;
pub mod state;
