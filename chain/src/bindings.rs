//! `sol!` bindings generated from the committed contract artifact
//! (`contracts/out/ProtocolState.json`, rebuilt and checked by `contracts/check.sh`).

#![allow(missing_docs, clippy::too_many_arguments)]

alloy::sol!(
    #[sol(rpc, all_derives)]
    ProtocolState,
    "../contracts/out/ProtocolState.json"
);
