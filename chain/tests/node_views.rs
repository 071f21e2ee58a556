//! What an unmodified Powerloom snapshotter node reads (docs/protocol.md §9), on a real anvil.
//!
//! - Every selector and event topic is recomputed here with keccak from its signature and held
//!   against the table of §9, against a hand-written interface in Powerloom's shapes (not our
//!   ABI) and against our bindings.
//! - Every view answers on anvil through that hand-written interface; each answer is decoded
//!   with validation and re-encoded to the exact bytes returned, so a different shape (a
//!   fourth value, a string where a number was) fails.
//! - Market settings: set at registration, changed by the owner only, each invalid value
//!   refused with its custom error (sent raw, past the client's own check), and the client
//!   refuses the same values without sending.
//! - Days: the day rolls over when `epochsInADay` epochs were released, once per day, across
//!   an epoch-manager restart and with two managers racing on one market: with the epoch
//!   manager handler, in `tests/e2e/tests/epoch_manager.rs`.
//! - Rewards: `updateRewards` records each (slot, day) once, emits `DailyTaskCompletedEvent` for
//!   the slots at the quota, refuses a second record, a day not ended and a non-sequencer; the
//!   client's call sends only what is missing and nothing twice.

mod common;

use alloy::{
    node_bindings::AnvilInstance,
    primitives::{keccak256, Address, Bytes, B256, U256},
    providers::Provider,
    rpc::types::{Filter, TransactionRequest},
    sol,
    sol_types::{SolCall, SolEvent},
};
use common::*;
use sequencer_chain::{
    bindings::ProtocolState,
    deploy::sim_snapshotter_key,
    market::{MarketSettings, SettingsError, TIME_SCALE},
    ChainClient, ChainError, Revert, SlotCount, Windows,
};

sol! {
    /// Powerloom's ProtocolState as snapshotter-lite-v2's ABI declares what it calls, written
    /// out by hand: the test decodes with these shapes, never with our artifact's.
    #[sol(rpc)]
    interface PowerloomProtocolState {
        function allSnapshotters(address addr) external view returns (bool);
        function slotSnapshotterMapping(uint256 slotId) external view returns (address);
        function EPOCH_SIZE(address dataMarket) external view returns (uint8);
        function SOURCE_CHAIN_ID(address dataMarket) external view returns (uint256);
        function SOURCE_CHAIN_BLOCK_TIME(address dataMarket) external view returns (uint256);
        function dayCounter(address dataMarket) external view returns (uint256);
        function DAY_SIZE(address dataMarket) external view returns (uint256);
        function epochsInADay(address dataMarket) external view returns (uint256);
        function dailySnapshotQuota(address dataMarket) external view returns (uint256);
        function getTotalNodeCount() external view returns (uint256);
        function maxSnapshotsCid(address dataMarket, string projectId, uint256 epochId) external view returns (string, uint8);
        function snapshotStatus(address dataMarket, string projectId, uint256 epochId) external view returns (uint8 status, string snapshotCid, uint256 timestamp);
        function epochInfo(address dataMarket, uint256 epochId) external view returns (uint256 timestamp, uint256 blocknumber, uint256 epochEnd);
        function currentEpoch(address dataMarket) external view returns (uint256 begin, uint256 end, uint256 epochId);
        function checkSlotTaskStatusForDay(address dataMarket, uint256 slotId, uint256 day) external view returns (bool);
        function updateRewards(address dataMarket, uint256[] slotIds, uint256[] submissionsList, uint256 day, uint256 eligibleNodes) external;
        event DayStartedEvent(address indexed dataMarketAddress, uint256 dayId, uint256 timestamp);
        event DailyTaskCompletedEvent(address indexed dataMarketAddress, address snapshotterAddress, uint256 slotId, uint256 dayId, uint256 timestamp);
        event EpochReleased(address indexed dataMarketAddress, uint256 indexed epochId, uint256 begin, uint256 end, uint256 timestamp);
    }
}

use PowerloomProtocolState as P;

fn selector(sig: &str) -> [u8; 4] {
    let h = keccak256(sig.as_bytes());
    [h[0], h[1], h[2], h[3]]
}

fn hex4(s: [u8; 4]) -> String {
    alloy::hex::encode(s)
}

#[test]
fn selectors_and_topics_recomputed_from_their_signatures() {
    // (signature, §9's selector, the hand-written interface's, our bindings')
    let fns: [(&str, &str, [u8; 4], [u8; 4]); 16] = [
        (
            "allSnapshotters(address)",
            "3d15d0f4",
            P::allSnapshottersCall::SELECTOR,
            ProtocolState::allSnapshottersCall::SELECTOR,
        ),
        (
            "slotSnapshotterMapping(uint256)",
            "948a463e",
            P::slotSnapshotterMappingCall::SELECTOR,
            ProtocolState::slotSnapshotterMappingCall::SELECTOR,
        ),
        (
            "EPOCH_SIZE(address)",
            "c12c2aa9",
            P::EPOCH_SIZECall::SELECTOR,
            ProtocolState::EPOCH_SIZECall::SELECTOR,
        ),
        (
            "SOURCE_CHAIN_ID(address)",
            "40e29707",
            P::SOURCE_CHAIN_IDCall::SELECTOR,
            ProtocolState::SOURCE_CHAIN_IDCall::SELECTOR,
        ),
        (
            "SOURCE_CHAIN_BLOCK_TIME(address)",
            "0f34e6a9",
            P::SOURCE_CHAIN_BLOCK_TIMECall::SELECTOR,
            ProtocolState::SOURCE_CHAIN_BLOCK_TIMECall::SELECTOR,
        ),
        (
            "dayCounter(address)",
            "02143405",
            P::dayCounterCall::SELECTOR,
            ProtocolState::dayCounterCall::SELECTOR,
        ),
        (
            "DAY_SIZE(address)",
            "",
            P::DAY_SIZECall::SELECTOR,
            ProtocolState::DAY_SIZECall::SELECTOR,
        ),
        (
            "epochsInADay(address)",
            "",
            P::epochsInADayCall::SELECTOR,
            ProtocolState::epochsInADayCall::SELECTOR,
        ),
        (
            "dailySnapshotQuota(address)",
            "",
            P::dailySnapshotQuotaCall::SELECTOR,
            ProtocolState::dailySnapshotQuotaCall::SELECTOR,
        ),
        (
            "getTotalNodeCount()",
            "4110fe25",
            P::getTotalNodeCountCall::SELECTOR,
            ProtocolState::getTotalNodeCountCall::SELECTOR,
        ),
        (
            "maxSnapshotsCid(address,string,uint256)",
            "7e9ce892",
            P::maxSnapshotsCidCall::SELECTOR,
            ProtocolState::maxSnapshotsCidCall::SELECTOR,
        ),
        (
            "snapshotStatus(address,string,uint256)",
            "1f588588",
            P::snapshotStatusCall::SELECTOR,
            ProtocolState::snapshotStatusCall::SELECTOR,
        ),
        (
            "epochInfo(address,uint256)",
            "c9ab0c83",
            P::epochInfoCall::SELECTOR,
            ProtocolState::epochInfoCall::SELECTOR,
        ),
        (
            "currentEpoch(address)",
            "",
            P::currentEpochCall::SELECTOR,
            ProtocolState::currentEpochCall::SELECTOR,
        ),
        (
            "checkSlotTaskStatusForDay(address,uint256,uint256)",
            "",
            P::checkSlotTaskStatusForDayCall::SELECTOR,
            ProtocolState::checkSlotTaskStatusForDayCall::SELECTOR,
        ),
        (
            "updateRewards(address,uint256[],uint256[],uint256,uint256)",
            "",
            P::updateRewardsCall::SELECTOR,
            ProtocolState::updateRewardsCall::SELECTOR,
        ),
    ];
    for (sig, table, ours_by_hand, bindings) in fns {
        let k = selector(sig);
        if !table.is_empty() {
            assert_eq!(hex4(k), table, "{sig}: §9's selector");
        }
        assert_eq!(k, ours_by_hand, "{sig}: hand-written interface");
        assert_eq!(k, bindings, "{sig}: our contract's bindings");
    }
    // The 5-value view moved off epochInfo's selector to one of its own.
    assert_ne!(
        ProtocolState::epochDetailsCall::SELECTOR,
        P::epochInfoCall::SELECTOR
    );
    let events: [(&str, &str, B256, B256); 3] = [
        (
            "DayStartedEvent(address,uint256,uint256)",
            "9bf380fe",
            P::DayStartedEvent::SIGNATURE_HASH,
            ProtocolState::DayStartedEvent::SIGNATURE_HASH,
        ),
        (
            "DailyTaskCompletedEvent(address,address,uint256,uint256,uint256)",
            "7da483c8",
            P::DailyTaskCompletedEvent::SIGNATURE_HASH,
            ProtocolState::DailyTaskCompletedEvent::SIGNATURE_HASH,
        ),
        (
            "EpochReleased(address,uint256,uint256,uint256,uint256)",
            "",
            P::EpochReleased::SIGNATURE_HASH,
            ProtocolState::EpochReleased::SIGNATURE_HASH,
        ),
    ];
    for (sig, prefix, by_hand, bindings) in events {
        let k = keccak256(sig.as_bytes());
        assert!(
            alloy::hex::encode(k).starts_with(prefix),
            "{sig}: §9's topic"
        );
        assert_eq!(k, by_hand, "{sig}");
        assert_eq!(k, bindings, "{sig}");
    }
    // Indexed exactly as the node's ABI has them: only the market.
    let abi: serde_json::Value =
        serde_json::from_str(include_str!("../../contracts/out/ProtocolState.json"))
            .expect("artifact");
    for name in ["DayStartedEvent", "DailyTaskCompletedEvent"] {
        let ev = abi["abi"]
            .as_array()
            .expect("abi")
            .iter()
            .find(|e| e["type"] == "event" && e["name"] == name)
            .expect(name);
        let indexed: Vec<bool> = ev["inputs"]
            .as_array()
            .expect("inputs")
            .iter()
            .map(|i| i["indexed"].as_bool().unwrap_or(false))
            .collect();
        assert!(indexed[0], "{name}");
        assert!(indexed[1..].iter().all(|i| !i), "{name}: {indexed:?}");
    }
}

/// `eth_call` of `call` at `to`, decoded with validation and re-encoded to the very bytes the
/// contract returned: a different return shape cannot pass.
#[tokio::test(flavor = "multi_thread")]
async fn every_view_answers_in_powerloom_shape() {
    let Some(bin) = anvil_bin("every_view_answers_in_powerloom_shape") else {
        return;
    };
    let anvil = spawn_anvil(&bin, None);
    let (c, d) = deploy(&anvil, &settings(10, 3, 2)).await;
    let (ps, m) = (d.protocol_state, d.data_market);
    let s1 = sim_snapshotter_key(1).expect("key").address();

    assert!(exact(&c, ps, P::allSnapshottersCall { addr: s1 }).await);
    assert!(
        !exact(
            &c,
            ps,
            P::allSnapshottersCall {
                addr: Address::repeat_byte(7)
            }
        )
        .await
    );
    assert_eq!(
        exact(
            &c,
            ps,
            P::slotSnapshotterMappingCall {
                slotId: U256::from(1)
            }
        )
        .await,
        s1
    );
    assert_eq!(
        exact(&c, ps, P::EPOCH_SIZECall { dataMarket: m }).await,
        10u8
    );
    assert_eq!(
        exact(&c, ps, P::SOURCE_CHAIN_IDCall { dataMarket: m }).await,
        U256::from(8453)
    );
    assert_eq!(
        exact(&c, ps, P::SOURCE_CHAIN_BLOCK_TIMECall { dataMarket: m }).await,
        U256::from(20_000)
    );
    assert_eq!(
        exact(&c, ps, P::DAY_SIZECall { dataMarket: m }).await,
        U256::from(600_000)
    );
    assert_eq!(
        exact(&c, ps, P::epochsInADayCall { dataMarket: m }).await,
        U256::from(3)
    );
    assert_eq!(
        exact(&c, ps, P::dailySnapshotQuotaCall { dataMarket: m }).await,
        U256::from(2)
    );
    assert_eq!(
        exact(&c, ps, P::dayCounterCall { dataMarket: m }).await,
        U256::from(1)
    );
    assert_eq!(
        exact(&c, ps, P::getTotalNodeCountCall {}).await,
        U256::from(5)
    );
    let cur = exact(&c, ps, P::currentEpochCall { dataMarket: m }).await;
    assert_eq!(
        (cur.begin, cur.end, cur.epochId),
        (U256::ZERO, U256::ZERO, U256::ZERO)
    );

    // An epoch, a batch in time: Powerloom's epochInfo is (timestamp, release block, end).
    let (rel, e1) = c.release_epoch(m, 101, 110).await.expect("release");
    let block = c
        .provider()
        .get_block_by_number(rel.block.into())
        .await
        .expect("block")
        .expect("block");
    let info = exact(
        &c,
        ps,
        P::epochInfoCall {
            dataMarket: m,
            epochId: U256::from(e1),
        },
    )
    .await;
    assert_eq!(
        (info.timestamp, info.blocknumber, info.epochEnd),
        (
            U256::from(block.header.timestamp),
            U256::from(rel.block),
            U256::from(110)
        )
    );
    let never = exact(
        &c,
        ps,
        P::epochInfoCall {
            dataMarket: m,
            epochId: U256::from(99),
        },
    )
    .await;
    assert_eq!(
        (never.timestamp, never.blocknumber, never.epochEnd),
        (U256::ZERO, U256::ZERO, U256::ZERO)
    );
    let cur = exact(&c, ps, P::currentEpochCall { dataMarket: m }).await;
    assert_eq!(
        (cur.begin, cur.end, cur.epochId),
        (U256::from(101), U256::from(110), U256::from(1))
    );
    // Our own record of the epoch, under its own name, with the day.
    let a = c.anchored(m, e1).await.expect("anchored");
    assert_eq!(
        (a.begin, a.end, a.release_block),
        (101, 110, Some(rel.block))
    );
    assert_eq!(c.epoch_day(m, e1).await.expect("day"), Some(1));
    assert_eq!(c.epoch_day(m, 99).await.expect("day"), None);

    let pending = exact(
        &c,
        ps,
        P::snapshotStatusCall {
            dataMarket: m,
            projectId: "p:a".into(),
            epochId: U256::from(e1),
        },
    )
    .await;
    assert_eq!(
        (
            pending.status,
            pending.snapshotCid.as_str(),
            pending.timestamp
        ),
        (0u8, "", U256::ZERO)
    );
    let max = exact(
        &c,
        ps,
        P::maxSnapshotsCidCall {
            dataMarket: m,
            projectId: "p:a".into(),
            epochId: U256::from(e1),
        },
    )
    .await;
    assert_eq!((max._0.as_str(), max._1), ("", 0u8));
    let sent = c
        .submit_batch(
            m,
            e1,
            "batch-1",
            &strings(&["p:a", "p:b"]),
            &strings(&[CID_A, CID_B]),
            root(1),
        )
        .await
        .expect("submit");
    let sent_block = match sent {
        sequencer_chain::SubmitOutcome::Anchored { block, .. } => block,
        other => panic!("{other:?}"),
    };
    let ts = c
        .provider()
        .get_block_by_number(sent_block.into())
        .await
        .expect("block")
        .expect("block")
        .header
        .timestamp;
    let st = exact(
        &c,
        ps,
        P::snapshotStatusCall {
            dataMarket: m,
            projectId: "p:a".into(),
            epochId: U256::from(e1),
        },
    )
    .await;
    assert_eq!(
        (st.status, st.snapshotCid.as_str(), st.timestamp),
        (1u8, CID_A, U256::from(ts))
    );
    let max = exact(
        &c,
        ps,
        P::maxSnapshotsCidCall {
            dataMarket: m,
            projectId: "p:b".into(),
            epochId: U256::from(e1),
        },
    )
    .await;
    assert_eq!((max._0.as_str(), max._1), (CID_B, 1u8));
    let viaclient = c.snapshot_status(m, "p:b", e1).await.expect("status");
    assert!(viaclient.finalized && viaclient.snapshot_cid == CID_B);

    // A delayed batch records nothing in Powerloom's views (as Powerloom's contract).
    let (_, e2) = c.release_epoch(m, 111, 120).await.expect("release 2");
    c.provider()
        .raw_request::<_, serde_json::Value>("anvil_mine".into(), (U256::from(1_001),))
        .await
        .expect("mine");
    c.submit_batch(
        m,
        e2,
        "batch-late",
        &strings(&["p:a"]),
        &strings(&[CID_A]),
        root(2),
    )
    .await
    .expect("delayed");
    let st = exact(
        &c,
        ps,
        P::snapshotStatusCall {
            dataMarket: m,
            projectId: "p:a".into(),
            epochId: U256::from(e2),
        },
    )
    .await;
    assert_eq!((st.status, st.snapshotCid.as_str()), (0u8, ""));

    // Slot count follows the highest slot id; allSnapshotters follows reassignment.
    let newcomer = Address::repeat_byte(0x51);
    c.assign_slots(&[(40, newcomer), (1, Address::ZERO)])
        .await
        .expect("assign");
    assert_eq!(
        exact(&c, ps, P::getTotalNodeCountCall {}).await,
        U256::from(40)
    );
    assert!(exact(&c, ps, P::allSnapshottersCall { addr: newcomer }).await);
    assert!(
        !exact(&c, ps, P::allSnapshottersCall { addr: s1 }).await,
        "slot 1 was its only slot"
    );
    assert_eq!(c.total_node_count().await.expect("count"), 40);
    assert!(!c.is_snapshotter(s1).await.expect("snapshotter"));

    // An unknown market makes the settings views revert, as a missing market contract would.
    let err = c
        .provider()
        .call(
            TransactionRequest::default().to(ps).input(
                Bytes::from(
                    P::EPOCH_SIZECall {
                        dataMarket: Address::repeat_byte(9),
                    }
                    .abi_encode(),
                )
                .into(),
            ),
        )
        .await;
    assert!(err.is_err(), "EPOCH_SIZE of an unknown market must revert");
}

#[tokio::test(flavor = "multi_thread")]
async fn market_settings_are_validated_and_only_the_owner_changes_them() {
    let Some(env) = setup(
        "market_settings_are_validated_and_only_the_owner_changes_them",
        Windows {
            snapshot_blocks: 20,
            batch_blocks: 60,
        },
    )
    .await
    else {
        return;
    };
    let c = &env.client;
    let m = env.market();
    let on = c.market_settings(m).await.expect("settings");
    assert_eq!(on.settings, env.deployment.settings);
    assert_eq!(
        on.settings.source_chain_id, 31337,
        "default source chain: this chain"
    );
    assert_eq!((on.day, on.day_start_epoch), (1, 1));
    assert_eq!(on.epochs_in_a_day, 86_400 / 10);

    let good = MarketSettings {
        epoch_size: 5,
        source_chain_id: 1,
        source_block_time: 12 * TIME_SCALE,
        day_size: 3_600 * TIME_SCALE,
        daily_snapshot_quota: 7,
    };
    let stranger = env.client_with_key(Some(3)).await;
    match stranger.update_market_settings(m, &good).await {
        Err(ChainError::Revert(Revert::NotOwner(a))) => {
            assert_eq!(Some(a), stranger.signer_address())
        }
        other => panic!("{other:?}"),
    }
    c.update_market_settings(m, &good).await.expect("update");
    let on = c.market_settings(m).await.expect("settings");
    assert_eq!(on.settings, good);
    assert_eq!(on.epochs_in_a_day, 60, "1 h of 12 s × 5 blocks");
    let ps = env.deployment.protocol_state;
    assert_eq!(exact(c, ps, P::EPOCH_SIZECall { dataMarket: m }).await, 5u8);
    assert_eq!(
        exact(c, ps, P::dailySnapshotQuotaCall { dataMarket: m }).await,
        U256::from(7)
    );

    // Each invalid value, sent raw past the client's check: the contract's own custom error.
    let raw = |s: MarketSettings| ProtocolState::updateMarketSettingsCall {
        dataMarket: m,
        epochSize: U256::from(s.epoch_size),
        sourceChainId: U256::from(s.source_chain_id),
        sourceChainBlockTime: U256::from(s.source_block_time),
        daySize: U256::from(s.day_size),
        dailyQuota: U256::from(s.daily_snapshot_quota),
    };
    let cases = [
        (
            MarketSettings {
                epoch_size: 0,
                ..good
            },
            Revert::InvalidEpochSize(U256::ZERO),
        ),
        (
            MarketSettings {
                epoch_size: 256,
                ..good
            },
            Revert::InvalidEpochSize(U256::from(256)),
        ),
        (
            MarketSettings {
                source_chain_id: 0,
                ..good
            },
            Revert::InvalidSourceChain(U256::ZERO),
        ),
        (
            MarketSettings {
                source_block_time: 0,
                ..good
            },
            Revert::InvalidBlockTime(U256::ZERO),
        ),
        (
            MarketSettings {
                day_size: 59 * TIME_SCALE,
                ..good
            },
            Revert::InvalidDaySize {
                day_size: U256::from(590_000),
                epoch_duration: U256::from(600_000),
            },
        ),
        (
            MarketSettings {
                daily_snapshot_quota: 0,
                ..good
            },
            Revert::InvalidDailyQuota(U256::ZERO),
        ),
    ];
    let from = c.signer_address().expect("signer");
    for (bad, want) in cases {
        match c.send_call(&raw(bad)).await {
            Err(ChainError::Revert(r)) => assert_eq!(r, want, "{bad:?}"),
            other => panic!("{bad:?}: {other:?}"),
        }
        // The client refuses the same settings without sending anything.
        let nonce = c
            .provider()
            .get_transaction_count(from)
            .await
            .expect("nonce");
        assert!(matches!(
            c.update_market_settings(m, &bad).await,
            Err(ChainError::Settings(_))
        ));
        assert!(matches!(
            c.register_market_with(
                Address::repeat_byte(0x77),
                &bad,
                Windows {
                    snapshot_blocks: 1,
                    batch_blocks: 1
                }
            )
            .await,
            Err(ChainError::Settings(_))
        ));
        assert_eq!(
            c.provider()
                .get_transaction_count(from)
                .await
                .expect("nonce"),
            nonce
        );
    }
    assert_eq!(
        MarketSettings {
            epoch_size: 300,
            ..good
        }
        .validate(),
        Err(SettingsError::EpochSize(300))
    );
    assert_eq!(
        c.market_settings(m).await.expect("unchanged").settings,
        good
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rewards_are_recorded_once_per_slot_and_day() {
    let Some(bin) = anvil_bin("rewards_are_recorded_once_per_slot_and_day") else {
        return;
    };
    let anvil = spawn_anvil(&bin, None);
    // 2 epochs a day, quota 3.
    let (c, d) = deploy(&anvil, &settings(2, 2, 3)).await;
    let (ps, m) = (d.protocol_state, d.data_market);
    let counts = [
        SlotCount {
            slot: 1,
            submissions: 3,
        },
        SlotCount {
            slot: 2,
            submissions: 2,
        },
        SlotCount {
            slot: 3,
            submissions: 9,
        },
        SlotCount {
            slot: 4,
            submissions: 0,
        },
    ];
    // Day 1 has not ended: refused before anything is sent.
    match c.update_rewards(m, 1, &counts, 2).await {
        Err(ChainError::Revert(Revert::DayNotEnded { day, current_day })) => {
            assert_eq!((day, current_day), (U256::from(1), U256::from(1)))
        }
        other => panic!("{other:?}"),
    }
    let mut begin = 1;
    for _ in 0..3 {
        c.release_epoch(m, begin, begin + 1).await.expect("release");
        begin += 2;
    }
    assert_eq!(c.day_counter(m).await.expect("day"), 2);
    // Not the sequencer: refused.
    let stranger = env_client(&anvil, &c, 4).await;
    match stranger.update_rewards(m, 1, &counts, 2).await {
        Err(ChainError::Revert(Revert::NotSequencer(_))) => {}
        other => panic!("{other:?}"),
    }
    // Duplicate slots in one call are the caller's mistake.
    assert!(matches!(
        c.update_rewards(m, 1, &[counts[0], counts[0]], 0).await,
        Err(ChainError::Config(_))
    ));

    // Another sender (or a crashed predecessor) recorded slot 2 already, by the raw call.
    c.send_call(&ProtocolState::updateRewardsCall {
        dataMarket: m,
        slotIds: vec![U256::from(2)],
        submissionsList: vec![U256::from(2)],
        day: U256::from(1),
        eligibleNodes: U256::from(2),
    })
    .await
    .expect("raw record of slot 2");
    // The same (slot, day) again, raw: refused by the contract.
    match c
        .send_call(&ProtocolState::updateRewardsCall {
            dataMarket: m,
            slotIds: vec![U256::from(5), U256::from(2)],
            submissionsList: vec![U256::from(9), U256::from(9)],
            day: U256::from(1),
            eligibleNodes: U256::ZERO,
        })
        .await
    {
        Err(ChainError::Revert(Revert::RewardsAlreadyRecorded { slot_id, day })) => {
            assert_eq!((slot_id, day), (U256::from(2), U256::from(1)))
        }
        other => panic!("{other:?}"),
    }

    let from = c.signer_address().expect("signer");
    let nonce0 = c
        .provider()
        .get_transaction_count(from)
        .await
        .expect("nonce");
    let out = c.update_rewards(m, 1, &counts, 2).await.expect("rewards");
    assert_eq!(out.recorded, vec![1, 3, 4]);
    assert_eq!(out.already, vec![2]);
    let s = |n: u64| sim_snapshotter_key(n).expect("key").address();
    assert_eq!(out.completed, vec![(1, s(1)), (3, s(3))]);
    assert_eq!(out.txs.len(), 1);
    // Again: everything is recorded, nothing is sent.
    let again = c.update_rewards(m, 1, &counts, 2).await.expect("again");
    assert!(
        again.recorded.is_empty() && again.txs.is_empty(),
        "{again:?}"
    );
    assert_eq!(again.already, vec![1, 2, 3, 4]);
    assert_eq!(
        c.provider()
            .get_transaction_count(from)
            .await
            .expect("nonce"),
        nonce0 + 1,
        "one transaction in all"
    );

    // On chain: one DailyTaskCompletedEvent per slot at the quota, read with Powerloom's shape.
    let logs = c
        .provider()
        .get_logs(
            &Filter::new()
                .address(ps)
                .event_signature(P::DailyTaskCompletedEvent::SIGNATURE_HASH)
                .from_block(0),
        )
        .await
        .expect("logs");
    let mut got: Vec<(u64, Address, u64)> = logs
        .iter()
        .map(|l| {
            let e = l
                .log_decode::<P::DailyTaskCompletedEvent>()
                .expect("decode")
                .inner
                .data;
            assert_eq!(e.dataMarketAddress, m);
            (
                e.slotId.to::<u64>(),
                e.snapshotterAddress,
                e.dayId.to::<u64>(),
            )
        })
        .collect();
    got.sort();
    let addr = |n: u64| sim_snapshotter_key(n).expect("key").address();
    assert_eq!(got, vec![(1, addr(1), 1), (3, addr(3), 1)]);
    for (slot, met) in [(1, true), (2, false), (3, true), (4, false), (5, false)] {
        assert_eq!(
            exact(
                &c,
                ps,
                P::checkSlotTaskStatusForDayCall {
                    dataMarket: m,
                    slotId: U256::from(slot),
                    day: U256::from(1)
                }
            )
            .await,
            met,
            "slot {slot}"
        );
    }
    assert_eq!(
        c.rewards_recorded(m, 1, &[1, 2, 3, 4, 5])
            .await
            .expect("recorded"),
        vec![true, true, true, true, false]
    );
    let eligible = ProtocolState::new(ps, c.provider().clone())
        .eligibleNodesForDay(m, U256::from(1))
        .call()
        .await
        .expect("eligible");
    assert_eq!(eligible, U256::from(2));
    // Day 2 is separate; a slot id far from the others lands in its own word.
    let out = c
        .update_rewards(
            m,
            1,
            &[SlotCount {
                slot: 1_000_000,
                submissions: 3,
            }],
            0,
        )
        .await
        .expect("big slot id");
    assert_eq!(out.recorded, vec![1_000_000]);
    assert_eq!(out.completed, vec![(1_000_000, Address::ZERO)]);
}

async fn env_client(anvil: &AnvilInstance, c: &ChainClient, key: usize) -> ChainClient {
    let mut cfg = test_config(&anvil.endpoint(), Some(key_hex(anvil, key)));
    cfg.protocol_state = c.protocol_state();
    ChainClient::connect(cfg).await.expect("connect")
}
