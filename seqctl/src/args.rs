//! Positional arguments of the commands that ask others: market, epoch and submission id,
//! checked strictly before anything is sent.

use anyhow::{bail, Context, Result};
use sequencer_chain::Address;
use sequencer_core::submission::parse_address;

pub(crate) fn market_arg(s: &str) -> Result<Address> {
    let hex = s.strip_prefix("0x").unwrap_or("");
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("market {s:?} is not an address (0x and 40 hex digits)");
    }
    parse_address(s).with_context(|| format!("market {s:?} is not an address"))
}

pub(crate) fn epoch_arg(s: &str) -> Result<u64> {
    match s.parse::<u64>() {
        Ok(n) if n > 0 && s.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => bail!("epoch {s:?} is not a positive epoch id"),
    }
}

pub(crate) fn id_arg(s: &str) -> Result<String> {
    let ok = s.len() == 36
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    if !ok {
        bail!("submission id {s:?} is not a UUID (8-4-4-4-12 hex digits)");
    }
    Ok(s.to_ascii_lowercase())
}

/// `[MARKET] REST…`: the positional values of a command whose market may come from `--market`
/// (or `DATA_MARKET_ADDRESS`) instead; `N` values follow the market. A market given in place
/// wins over `--market`.
pub(crate) fn market_first<const N: usize>(
    mut values: Vec<String>,
    market: Option<String>,
) -> Result<(String, [String; N])> {
    let market = match values.len() {
        n if n == N + 1 => values.remove(0),
        n if n == N => market.with_context(|| {
            format!(
                "no data market: give MARKET before the {N} other arguments, --market, or {}",
                crate::env::DATA_MARKET_ADDRESS
            )
        })?,
        n => bail!("expected {N} or {} arguments, got {n}", N + 1),
    };
    let rest: [String; N] = values
        .try_into()
        .map_err(|_| anyhow::anyhow!("expected {N} arguments after the market"))?;
    Ok((market, rest))
}

/// `--rpc-url` and `--protocol-state` (or `RPC_URL` and `PROTOCOL_STATE_ADDRESS`) go together:
/// both, or neither (offline). One without the other is a usage error that names both sources,
/// so an RPC URL exported for another tool does not silently turn an offline check into a
/// half-configured chain check, or the other way round.
pub(crate) fn chain_pair(
    rpc_url: Option<String>,
    protocol_state: Option<String>,
) -> Result<Option<(String, String)>> {
    match (rpc_url, protocol_state) {
        (Some(r), Some(p)) => Ok(Some((r, p))),
        (None, None) => Ok(None),
        (Some(_), None) => bail!(
            "--rpc-url (or {}) is set but --protocol-state (or {}) is not: checking against the chain needs both; unset {} to check offline",
            crate::env::RPC_URL,
            crate::env::PROTOCOL_STATE_ADDRESS,
            crate::env::RPC_URL
        ),
        (None, Some(_)) => bail!(
            "--protocol-state (or {}) is set but --rpc-url (or {}) is not: checking against the chain needs both; unset {} to check offline",
            crate::env::PROTOCOL_STATE_ADDRESS,
            crate::env::RPC_URL,
            crate::env::PROTOCOL_STATE_ADDRESS
        ),
    }
}
