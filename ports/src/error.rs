//! The one error every port fails with: which port, what kind of failure, whether a retry can
//! help, and the service's own name for it when it has one.
//!
//! Handlers act on [`PortError::is_retryable`] (the message comes back, or the failure is recorded
//! and acknowledged) and, where the reaction differs by cause, on [`PortError::kind`]: a revert
//! the contract will give again is not a nonce race, an account out of gas money, or a missing
//! role. Adapters classify; the default retryability of a kind is in one table
//! ([`ErrorKind::retryable_by_default`]) and an adapter overrides it only where its service says
//! otherwise (the chain adapter keeps its client's own verdict).

use std::fmt;

/// Which port failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Port {
    /// The state store.
    State,
    /// A queue.
    Queue,
    /// The content store.
    Content,
    /// The protocol chain.
    Chain,
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Port::State => "state store",
            Port::Queue => "queue",
            Port::Content => "content store",
            Port::Chain => "chain",
        })
    }
}

/// What kind of failure it was. New kinds may be added (a later stage tells more chain failures
/// apart), so match with a wildcard arm.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The service could not be reached, timed out, throttled us or failed on its side.
    Unavailable,
    /// Not settled yet: our transaction is pending, not mined or not deep enough. A retry reads
    /// the chain before it sends anything again.
    Pending,
    /// The service refused the request: bad parameters, a missing queue or table, credentials.
    Refused,
    /// This deployment is misconfigured (no signer, settings the service refuses).
    Config,
    /// Data that is not what it must be: a stored item this code did not write, an answer that
    /// does not parse, bytes that do not hash to their CID.
    Corrupt,
    /// The content store answered another CID than the one computed locally; the upload is
    /// refused.
    CidMismatch {
        /// Computed locally.
        expected: String,
        /// Returned by the store.
        got: String,
    },
    /// The contract refused the call ([`PortError::code`] names its error, e.g.
    /// `ProjectAlreadySubmitted`): sent again as it is, it is refused again.
    Reverted,
    /// The signing key lacks the role or permission the call needs (`NotSequencer`, …).
    Permission,
    /// The signing account cannot pay for the transaction.
    Funds,
    /// The node refused the nonce (another writer with our key, or a nonce already used).
    Nonce,
    /// The node refused the fees (below the base fee, an underpriced replacement).
    Fees,
}

impl ErrorKind {
    /// Whether a retry can help, unless the adapter knows better: transient and in-flight
    /// failures, nonce and fee refusals are retried; a refused request is retried on the state
    /// store, queues and content store (a message whose write or send was refused stays queued
    /// until the cause is fixed, and the queue's redrive bounds how long), not on the chain (a
    /// malformed call stays malformed); corrupt content is fetched again (another fetch may get
    /// the right bytes), corrupt state is not; reverts, missing permissions or funds, bad
    /// configuration and CID mismatches are not retried.
    pub fn retryable_by_default(&self, port: Port) -> bool {
        match self {
            ErrorKind::Unavailable | ErrorKind::Pending | ErrorKind::Nonce | ErrorKind::Fees => {
                true
            }
            ErrorKind::Refused => port != Port::Chain,
            ErrorKind::Corrupt => port == Port::Content,
            ErrorKind::Config
            | ErrorKind::CidMismatch { .. }
            | ErrorKind::Reverted
            | ErrorKind::Permission
            | ErrorKind::Funds => false,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Unavailable => f.write_str("unavailable"),
            ErrorKind::Pending => f.write_str("not settled yet"),
            ErrorKind::Refused => f.write_str("request refused"),
            ErrorKind::Config => f.write_str("misconfigured"),
            ErrorKind::Corrupt => f.write_str("data is corrupt"),
            ErrorKind::CidMismatch { expected, got } => {
                write!(f, "returned CID {got}, expected {expected}")
            }
            ErrorKind::Reverted => f.write_str("call reverted"),
            ErrorKind::Permission => f.write_str("permission denied"),
            ErrorKind::Funds => f.write_str("insufficient funds"),
            ErrorKind::Nonce => f.write_str("nonce refused"),
            ErrorKind::Fees => f.write_str("fees refused"),
        }
    }
}

/// A port operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortError {
    port: Port,
    kind: ErrorKind,
    retryable: bool,
    code: Option<String>,
    message: String,
}

impl PortError {
    /// An error of `port` of this kind, retryable as [`ErrorKind::retryable_by_default`] says.
    pub fn new(port: Port, kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            retryable: kind.retryable_by_default(port),
            port,
            kind,
            code: None,
            message: message.into(),
        }
    }

    /// A state store error.
    pub fn state(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::new(Port::State, kind, message)
    }

    /// A queue error.
    pub fn queue(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::new(Port::Queue, kind, message)
    }

    /// A content store error.
    pub fn content(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::new(Port::Content, kind, message)
    }

    /// A chain error.
    pub fn chain(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self::new(Port::Chain, kind, message)
    }

    /// The service's (or contract's) own name for the failure, e.g. `ThrottlingException` or
    /// `NoBatchSubmitted`.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Overrides the kind's default retryability (an adapter whose service says otherwise).
    pub fn with_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Which port failed.
    pub fn port(&self) -> Port {
        self.port
    }

    /// What kind of failure.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// Whether retrying the same operation later can succeed (the message goes back on its
    /// queue) or not (record the failure and acknowledge).
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }

    /// The service's own name for the failure, if it gave one.
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The detail: what was asked and what the service said.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for PortError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.port, self.kind)?;
        if let Some(code) = &self.code {
            write!(f, " ({code})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for PortError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryability_follows_the_kind_and_can_be_overridden() {
        assert!(PortError::state(ErrorKind::Unavailable, "x").is_retryable());
        assert!(!PortError::state(ErrorKind::Corrupt, "x").is_retryable());
        assert!(PortError::content(ErrorKind::Corrupt, "x").is_retryable());
        assert!(PortError::queue(ErrorKind::Refused, "x").is_retryable());
        assert!(!PortError::chain(ErrorKind::Refused, "x").is_retryable());
        assert!(PortError::chain(ErrorKind::Pending, "x").is_retryable());
        let r = PortError::chain(ErrorKind::Reverted, "epoch 3").with_code("NoBatchSubmitted");
        assert!(!r.is_retryable());
        assert_eq!(r.code(), Some("NoBatchSubmitted"));
        assert_eq!(
            r.to_string(),
            "chain call reverted (NoBatchSubmitted): epoch 3"
        );
        let nonce = PortError::chain(ErrorKind::Nonce, "nonce too low").with_retryable(false);
        assert!(!nonce.is_retryable());
        let m = PortError::content(
            ErrorKind::CidMismatch {
                expected: "a".into(),
                got: "b".into(),
            },
            "IPFS add",
        );
        assert!(!m.is_retryable());
        assert_eq!(
            m.to_string(),
            "content store returned CID b, expected a: IPFS add"
        );
    }
}
