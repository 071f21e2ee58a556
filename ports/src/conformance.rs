//! One conformance suite per port, run against every adapter (each adapter crate's tests, with
//! `sequencer-ports` as a dev-dependency with the `conformance` feature) so the adapters cannot
//! drift apart. Each check panics with a message on a violation; callers are tests.
//!
//! The checks use keys under a random `ns` prefix, so they can run against a shared emulator.

#![allow(clippy::unwrap_used, clippy::panic, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use crate::{
    BoundedAdd, Condition, ContentStore, ErrorKind, Item, Key, OpStatus, OutMessage, Queue,
    StateStore, Table, Transition, TxOp, TxOutcome, MAX_TX_OPS,
};

/// The state store contract.
pub async fn state_store(store: &dyn StateStore, ns: &str) {
    let t = Table::Epochs;
    let k = Key::new(format!("{ns}#pk"), "a");
    assert_eq!(store.get(t, &k).await.unwrap(), None, "absent at first");

    // Conditional put: first wins, the second changes nothing.
    let first = Item::with_state("OPEN", r#"{"n":1}"#).ttl(Some(4_000_000_000));
    assert!(store.put_if_absent(t, &k, &first).await.unwrap());
    assert!(!store
        .put_if_absent(t, &k, &Item::data(r#"{"n":2}"#))
        .await
        .unwrap());
    assert_eq!(store.get(t, &k).await.unwrap(), Some(first.clone()));

    // Transitions test the state.
    let closed = Item::with_state("CLOSED", r#"{"n":3}"#);
    assert_eq!(
        store
            .transition(t, &k, Some("OPEN"), &closed)
            .await
            .unwrap(),
        Transition::Applied
    );
    match store.transition(t, &k, Some("OPEN"), &first).await.unwrap() {
        Transition::Refused(Some(cur)) => assert_eq!(cur, closed),
        other => panic!("stale transition must be refused with the item, got {other:?}"),
    }
    let absent = Key::new(format!("{ns}#pk"), "zz-absent");
    assert_eq!(
        store
            .transition(t, &absent, Some("OPEN"), &closed)
            .await
            .unwrap(),
        Transition::Refused(None)
    );
    assert_eq!(
        store.transition(t, &absent, None, &closed).await.unwrap(),
        Transition::Applied,
        "from None means: only if absent"
    );
    assert!(matches!(
        store.transition(t, &absent, None, &closed).await.unwrap(),
        Transition::Refused(Some(_))
    ));

    // Unconditional put overwrites; delete removes.
    store.put(t, &k, &Item::data("{}")).await.unwrap();
    assert_eq!(store.get(t, &k).await.unwrap(), Some(Item::data("{}")));
    store.delete(t, &k).await.unwrap();
    assert_eq!(store.get(t, &k).await.unwrap(), None);
    store.delete(t, &k).await.unwrap();

    // Tables are separate namespaces.
    let shared = Key::new(format!("{ns}#same"), "x");
    store
        .put(Table::Batches, &shared, &Item::data("1"))
        .await
        .unwrap();
    assert_eq!(store.get(Table::Blocks, &shared).await.unwrap(), None);

    // Bounded, idempotent counter.
    let c = Key::new(format!("{ns}#slot"), "count");
    let tc = Table::Counters;
    assert_eq!(
        store.add_bounded(tc, &c, "id-1", 2).await.unwrap(),
        BoundedAdd::Added(1)
    );
    assert_eq!(
        store.add_bounded(tc, &c, "id-1", 2).await.unwrap(),
        BoundedAdd::Present(1)
    );
    assert_eq!(
        store.add_bounded(tc, &c, "id-2", 2).await.unwrap(),
        BoundedAdd::Added(2)
    );
    assert_eq!(
        store.add_bounded(tc, &c, "id-3", 2).await.unwrap(),
        BoundedAdd::Full(2)
    );
    assert_eq!(
        store.add_bounded(tc, &c, "id-2", 2).await.unwrap(),
        BoundedAdd::Present(2),
        "a counted member is present even at the ceiling"
    );

    // Pagination in sort-key order, across pages.
    let pk = format!("{ns}#q");
    let tq = Table::Submissions;
    let mut want = BTreeSet::new();
    for i in [7u32, 3, 11, 0, 5, 9, 1, 10, 2, 8, 4, 6] {
        let sk = format!("{i:04}");
        store
            .put(tq, &Key::new(&pk, &sk), &Item::data(format!("{i}")))
            .await
            .unwrap();
        want.insert(sk);
    }
    store
        .put(
            tq,
            &Key::new(format!("{ns}#q2"), "0000"),
            &Item::data("other"),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = store.query(tq, &pk, after.as_deref(), 5).await.unwrap();
        assert!(page.items.len() <= 5);
        pages += 1;
        got.extend(page.items.into_iter().map(|(sk, _)| sk));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
        assert!(pages < 10, "pagination must end");
    }
    assert_eq!(
        got,
        want.into_iter().collect::<Vec<_>>(),
        "sorted, complete"
    );
    let tail = store.query(tq, &pk, Some("0009"), 100).await.unwrap();
    assert_eq!(tail.items.len(), 2);
    assert_eq!(tail.next, None);

    // A query returns each item's set with it, page by page, and no item another's.
    let pk3 = format!("{ns}#q3");
    for i in 0..7u32 {
        let key = Key::new(&pk3, format!("{i:04}"));
        if i % 3 == 0 {
            let set: Vec<String> = (0..=i).map(|m| format!("{i}-{m}")).collect();
            store.add_members(tc, &key, &set, None).await.unwrap();
        } else {
            store
                .put(tc, &key, &Item::data(format!("{i}")))
                .await
                .unwrap();
        }
    }
    let mut sets = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.query(tc, &pk3, after.as_deref(), 2).await.unwrap();
        sets.extend(page.items.into_iter().map(|(sk, it)| {
            let mut m = it.members;
            m.sort();
            (sk, m)
        }));
        match page.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let want: Vec<(String, Vec<String>)> = (0..7u32)
        .map(|i| {
            let mut m: Vec<String> = if i % 3 == 0 {
                (0..=i).map(|m| format!("{i}-{m}")).collect()
            } else {
                Vec::new()
            };
            m.sort();
            (format!("{i:04}"), m)
        })
        .collect();
    assert_eq!(sets, want, "each item's set, and only its own");

    // Concurrent bounded adds never exceed the ceiling.
    let cc = Key::new(format!("{ns}#race"), "count");
    let members: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    let results =
        futures::future::join_all(members.iter().map(|m| store.add_bounded(tc, &cc, m, 3))).await;
    let added = results
        .iter()
        .filter(|r| matches!(r, Ok(BoundedAdd::Added(_))))
        .count();
    assert_eq!(added, 3, "exactly the ceiling wins: {results:?}");
    let counted = store
        .get(tc, &cc)
        .await
        .unwrap()
        .expect("the counter reads back");
    assert_eq!(
        counted.members.len(),
        3,
        "its members read back: {counted:?}"
    );

    transactions(store, ns).await;
    transactions_each(store, ns).await;
    batches(store, ns).await;
}

/// `transact_each`: each transaction all or nothing on its own, judged on what the ones before
/// it wrote; a refused one (over the limit) is an error of its own and the others still apply.
async fn transactions_each(store: &dyn StateStore, ns: &str) {
    let a = Key::new(format!("{ns}#each"), "a");
    let b = Key::new(format!("{ns}#each"), "b");
    let first = vec![put(
        Table::Submissions,
        &a,
        Item::data("1"),
        Some(Condition::Absent),
    )];
    // Its second put finds `a` written by the first transaction: cancelled, `b` not written.
    let second = vec![
        put(
            Table::Submissions,
            &b,
            Item::data("2"),
            Some(Condition::Absent),
        ),
        put(
            Table::Submissions,
            &a,
            Item::data("x"),
            Some(Condition::Absent),
        ),
    ];
    let too_many: Vec<TxOp> = (0..=MAX_TX_OPS)
        .map(|i| {
            put(
                Table::Submissions,
                &Key::new(format!("{ns}#each-many"), format!("{i}")),
                Item::data("m"),
                None,
            )
        })
        .collect();
    let third = vec![put(
        Table::Submissions,
        &b,
        Item::data("3"),
        Some(Condition::Absent),
    )];
    let out = store.transact_each(&[first, second, too_many, third]).await;
    assert_eq!(out.len(), 4, "one result per transaction");
    assert!(matches!(out[0], Ok(TxOutcome::Committed)), "{:?}", out[0]);
    match &out[1] {
        Ok(TxOutcome::Cancelled(s)) => {
            assert!(
                matches!(s[1], OpStatus::ConditionFailed(Some(ref i)) if i.data == "1"),
                "{s:?}"
            )
        }
        other => panic!("the second sees the first's write: {other:?}"),
    }
    assert!(
        matches!(&out[2], Err(e) if *e.kind() == ErrorKind::Refused),
        "{:?}",
        out[2]
    );
    assert!(matches!(out[3], Ok(TxOutcome::Committed)), "{:?}", out[3]);
    assert_eq!(
        store
            .get(Table::Submissions, &a)
            .await
            .unwrap()
            .map(|i| i.data),
        Some("1".into())
    );
    assert_eq!(
        store
            .get(Table::Submissions, &b)
            .await
            .unwrap()
            .map(|i| i.data),
        Some("3".into())
    );
    let many = store
        .query(Table::Submissions, &format!("{ns}#each-many"), None, 10)
        .await
        .unwrap();
    assert!(
        many.items.is_empty(),
        "the refused transaction wrote nothing"
    );
}

fn put(table: Table, key: &Key, item: Item, condition: Option<Condition>) -> TxOp {
    TxOp::Put {
        table,
        key: key.clone(),
        item,
        condition,
    }
}

fn add(key: &Key, members: &[&str], max_before: Option<u64>, ttl: Option<u64>) -> TxOp {
    TxOp::AddMembers {
        table: Table::Counters,
        key: key.clone(),
        members: members.iter().map(|m| m.to_string()).collect(),
        max_before,
        ttl,
    }
}

/// `transact`: all or nothing, one status per operation (DynamoDB's `CancellationReasons`),
/// bounded sets, the limits refused alike everywhere, and exactly one winner among concurrent
/// transactions that claim one key.
async fn transactions(store: &dyn StateStore, ns: &str) {
    let gate = Key::new(format!("{ns}#tx-gate"), "0");
    let claim = Key::new(format!("{ns}#tx-claim"), "p#1");
    let receipt = Key::new(format!("{ns}#tx-receipt"), "id-1");
    let cap = Key::new(format!("{ns}#tx-cap"), "accepted");
    let open = || TxOp::Check {
        table: Table::Epochs,
        key: gate.clone(),
        condition: Condition::NotState("SEALED".into()),
    };
    let claim_item = Item::with_state("ACCEPTED", r#"{"id":"id-1"}"#).ttl(Some(4_000_000_000));

    // Everything applies together: the check of an absent gate holds (NotState), the puts land,
    // the set gets its member and its TTL.
    let ops = vec![
        open(),
        put(
            Table::Submissions,
            &claim,
            claim_item.clone(),
            Some(Condition::Absent),
        ),
        put(
            Table::Receipts,
            &receipt,
            Item::data("{}"),
            Some(Condition::Absent),
        ),
        add(&cap, &["id-1"], Some(1), Some(4_000_000_001)),
    ];
    assert_eq!(store.transact(&ops).await.unwrap(), TxOutcome::Committed);
    assert_eq!(
        store.get(Table::Submissions, &claim).await.unwrap(),
        Some(claim_item.clone())
    );
    let counter = store.get(Table::Counters, &cap).await.unwrap().unwrap();
    assert_eq!(counter.members, vec!["id-1".to_string()]);
    assert_eq!(counter.ttl, Some(4_000_000_001));

    // The same again: both puts' conditions fail and report the items as they are; the check
    // and the (idempotent) add held. Nothing changed.
    match store.transact(&ops).await.unwrap() {
        TxOutcome::Cancelled(st) => {
            assert_eq!(st.len(), 4);
            assert_eq!(st[0], OpStatus::Ok, "{st:?}");
            assert_eq!(st[1], OpStatus::ConditionFailed(Some(claim_item.clone())));
            assert!(
                matches!(&st[2], OpStatus::ConditionFailed(Some(i)) if i.data == "{}"),
                "{st:?}"
            );
            assert_eq!(
                st[3],
                OpStatus::Ok,
                "a present member within the bound holds"
            );
        }
        other => panic!("a second claim must be cancelled: {other:?}"),
    }

    // A failed check cancels writes that would have applied; the check reports the item.
    store
        .put(Table::Epochs, &gate, &Item::with_state("SEALED", "{}"))
        .await
        .unwrap();
    let fresh = Key::new(format!("{ns}#tx-claim"), "p#2");
    let ops2 = vec![
        open(),
        put(
            Table::Submissions,
            &fresh,
            Item::data("{}"),
            Some(Condition::Absent),
        ),
        add(&cap, &["id-2"], Some(1), None),
    ];
    match store.transact(&ops2).await.unwrap() {
        TxOutcome::Cancelled(st) => {
            assert!(
                matches!(&st[0], OpStatus::ConditionFailed(Some(i)) if i.state.as_deref() == Some("SEALED")),
                "{st:?}"
            );
            assert_eq!(&st[1..], &[OpStatus::Ok, OpStatus::Ok]);
        }
        other => panic!("a sealed gate must cancel: {other:?}"),
    }
    assert_eq!(store.get(Table::Submissions, &fresh).await.unwrap(), None);
    assert_eq!(
        store
            .get(Table::Counters, &cap)
            .await
            .unwrap()
            .unwrap()
            .members,
        vec!["id-1".to_string()],
        "nothing of a cancelled transaction applies"
    );

    // The set's bound: one member, at most 1 before: holds; at most 0 before: fails with the set.
    assert_eq!(
        store
            .transact(&[add(&cap, &["id-2"], Some(1), None)])
            .await
            .unwrap(),
        TxOutcome::Committed
    );
    match store
        .transact(&[add(&cap, &["id-3"], Some(1), None)])
        .await
        .unwrap()
    {
        TxOutcome::Cancelled(st) => assert!(
            matches!(&st[0], OpStatus::ConditionFailed(Some(i)) if i.members == ["id-1", "id-2"]),
            "{st:?}"
        ),
        other => panic!("a full set must refuse: {other:?}"),
    }
    // State conditions on an absent item fail and say so.
    let missing = Key::new(format!("{ns}#tx-missing"), "x");
    match store
        .transact(&[TxOp::Check {
            table: Table::Epochs,
            key: missing.clone(),
            condition: Condition::State("OPEN".into()),
        }])
        .await
        .unwrap()
    {
        TxOutcome::Cancelled(st) => assert_eq!(st, vec![OpStatus::ConditionFailed(None)]),
        other => panic!("{other:?}"),
    }

    // Refused alike by every adapter: an item twice, too many operations, nothing at all.
    let twice = [
        put(Table::Receipts, &missing, Item::data("1"), None),
        put(Table::Receipts, &missing, Item::data("2"), None),
    ];
    let e = store.transact(&twice).await.unwrap_err();
    assert_eq!(e.kind(), &ErrorKind::Refused, "{e}");
    let many: Vec<TxOp> = (0..=MAX_TX_OPS)
        .map(|i| {
            put(
                Table::Receipts,
                &Key::new(format!("{ns}#many"), format!("{i}")),
                Item::data("1"),
                None,
            )
        })
        .collect();
    assert_eq!(
        store.transact(&many).await.unwrap_err().kind(),
        &ErrorKind::Refused
    );
    assert_eq!(store.get(Table::Receipts, &missing).await.unwrap(), None);
    assert!(store.transact(&[]).await.is_err());
    // The largest transaction applies.
    assert_eq!(
        store.transact(&many[..MAX_TX_OPS]).await.unwrap(),
        TxOutcome::Committed
    );

    // Concurrent transactions claiming one key: exactly one commits.
    let contested = Key::new(format!("{ns}#tx-race"), "p#9");
    let runs = futures::future::join_all((0..6).map(|i| {
        let ops = vec![
            put(
                Table::Submissions,
                &contested,
                Item::data(format!("{i}")),
                Some(Condition::Absent),
            ),
            put(
                Table::Receipts,
                &Key::new(format!("{ns}#tx-race-r"), format!("{i}")),
                Item::data("r"),
                Some(Condition::Absent),
            ),
        ];
        async move { store.transact(&ops).await }
    }))
    .await;
    let won = runs
        .iter()
        .filter(|r| matches!(r, Ok(TxOutcome::Committed)))
        .count();
    assert_eq!(won, 1, "exactly one claim wins: {runs:?}");
    for r in &runs {
        match r {
            Ok(TxOutcome::Committed) => {}
            Ok(TxOutcome::Cancelled(st)) => assert!(
                matches!(
                    st[0],
                    OpStatus::ConditionFailed(Some(_)) | OpStatus::Conflict
                ),
                "{st:?}"
            ),
            Err(e) => assert!(e.is_retryable(), "{e}"),
        }
    }
}

/// `batch_get`, `batch_put`, `add_members`: order kept, absent as `None`, keys repeated and
/// beyond one request's limit, sets and TTLs.
async fn batches(store: &dyn StateStore, ns: &str) {
    let keys: Vec<(Table, Key)> = (0..130)
        .map(|i| (Table::Blocks, Key::new(format!("{ns}#bg-{i}"), "block")))
        .collect();
    let items: Vec<(Table, Key, Item)> = keys
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(i, (t, k))| {
            (
                *t,
                k.clone(),
                Item::data(format!("{i}")).ttl(Some(4_000_000_000)),
            )
        })
        .collect();
    store.batch_put(&items).await.unwrap();
    let mut ask = keys.clone();
    ask.push(keys[1].clone());
    ask.push((Table::Receipts, keys[1].1.clone()));
    let got = store.batch_get(&ask).await.unwrap();
    assert_eq!(got.len(), ask.len());
    for (i, g) in got.iter().take(130).enumerate() {
        if i % 3 == 0 {
            assert_eq!(g, &None, "{i} was never written");
        } else {
            assert_eq!(
                g.as_ref().map(|x| (x.data.as_str(), x.ttl)),
                Some((format!("{i}").as_str(), Some(4_000_000_000))),
                "{i}"
            );
        }
    }
    assert_eq!(got[130], got[1], "a repeated key reads the same");
    assert_eq!(got[131], None, "tables are separate in a batch too");
    // A later write of one key in the same batch wins.
    let k = Key::new(format!("{ns}#bp-twice"), "x");
    store
        .batch_put(&[
            (Table::Batches, k.clone(), Item::data("first")),
            (Table::Batches, k.clone(), Item::data("second")),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.get(Table::Batches, &k).await.unwrap().map(|i| i.data),
        Some("second".to_string())
    );
    store.batch_put(&[]).await.unwrap();
    assert!(store.batch_get(&[]).await.unwrap().is_empty());

    // Unbounded sets: idempotent, TTL set, read back by get and batch_get.
    let set = Key::new(format!("{ns}#set"), "p0");
    let m = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    store
        .add_members(
            Table::Counters,
            &set,
            &m(&["3", "1", "2"]),
            Some(4_000_000_002),
        )
        .await
        .unwrap();
    store
        .add_members(Table::Counters, &set, &m(&["2", "4"]), Some(4_000_000_003))
        .await
        .unwrap();
    let got = store.get(Table::Counters, &set).await.unwrap().unwrap();
    assert_eq!(got.members, m(&["1", "2", "3", "4"]));
    assert_eq!(got.ttl, Some(4_000_000_003));
    assert_eq!(
        store
            .batch_get(&[(Table::Counters, set.clone())])
            .await
            .unwrap()[0]
            .as_ref()
            .map(|i| i.members.len()),
        Some(4)
    );
}

/// The queue contract. `queue` must be empty and have a visibility timeout of at least 2 s;
/// `dlq` is its dead-letter queue.
pub async fn queue(queue: &dyn Queue, dlq: &dyn Queue, fifo: bool) {
    let wait = Duration::from_millis(200);
    let msg = |i: u32| {
        let m = OutMessage::new(format!("body-{i}")).attr("k", format!("v{i}"));
        if fifo {
            m.fifo("g", format!("d-{i}"))
        } else {
            m
        }
    };
    queue.send(&[msg(1), msg(2), msg(3)]).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..20 {
        got.extend(queue.receive(10, wait).await.unwrap());
        if got.len() >= 3 || (fifo && !got.is_empty()) {
            break;
        }
    }
    if fifo {
        assert_eq!(got[0].body, "body-1", "FIFO delivers the group in order");
    }
    // Drain everything (a FIFO group may come in several receives).
    for _ in 0..20 {
        if got.len() >= 3 {
            break;
        }
        let more = queue.receive(10, wait).await.unwrap();
        if more.is_empty() && fifo {
            // The group is blocked while earlier messages are in flight: ack what we have.
            queue
                .ack(&got.iter().map(|r| r.receipt.clone()).collect::<Vec<_>>())
                .await
                .unwrap();
        }
        got.extend(more);
    }
    let bodies: BTreeSet<_> = got.iter().map(|r| r.body.clone()).collect();
    assert_eq!(
        bodies,
        ["body-1", "body-2", "body-3"]
            .into_iter()
            .map(String::from)
            .collect()
    );
    let two = got.iter().find(|r| r.body == "body-2").unwrap().clone();
    assert_eq!(two.attributes.get("k").map(String::as_str), Some("v2"));
    assert_eq!(two.receive_count, 1);

    // In flight: invisible to others.
    assert!(
        queue.receive(10, wait).await.unwrap().is_empty(),
        "in-flight messages are invisible"
    );

    // Done with the others (a FIFO group stays blocked while any of its messages is in flight).
    let rest: Vec<String> = got
        .iter()
        .filter(|r| r.body != "body-2")
        .map(|r| r.receipt.clone())
        .collect();
    queue.ack(&rest).await.unwrap();

    // Nack makes it visible again, with a higher receive count and the same message id.
    queue.nack(&two.receipt, Duration::ZERO).await.unwrap();
    let mut again = Vec::new();
    for _ in 0..20 {
        again = queue.receive(10, wait).await.unwrap();
        if !again.is_empty() {
            break;
        }
    }
    assert_eq!(again.len(), 1, "only the nacked one comes back");
    assert_eq!(again[0].body, "body-2");
    assert_eq!(again[0].message_id, two.message_id);
    assert_eq!(again[0].receive_count, 2);

    // Dead-letter moves it to the DLQ with its reason.
    queue.dead_letter(&again[0], "poison: test").await.unwrap();
    let mut dead = Vec::new();
    for _ in 0..20 {
        dead = dlq.receive(10, wait).await.unwrap();
        if !dead.is_empty() {
            break;
        }
    }
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "body-2");
    assert_eq!(
        dead[0]
            .attributes
            .get("dead_letter_reason")
            .map(String::as_str),
        Some("poison: test")
    );
    dlq.ack(&[dead[0].receipt.clone()]).await.unwrap();
    assert!(
        queue.receive(10, wait).await.unwrap().is_empty(),
        "queue empty"
    );
}

/// The content store contract.
pub async fn content_store(store: &dyn ContentStore) {
    let bytes = b"hello world\n";
    let cid = store.put(bytes).await.unwrap();
    assert_eq!(
        cid, "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4",
        "CIDv1 raw sha2-256, as `ipfs add --cid-version=1` gives"
    );
    assert_eq!(store.put(bytes).await.unwrap(), cid, "idempotent");
    assert_eq!(store.get(&cid).await.unwrap().as_deref(), Some(&bytes[..]));
    let unique = format!("conformance {:?}", std::time::SystemTime::now());
    let other = sequencer_core::cids::raw_cid(unique.as_bytes()).to_string();
    assert_eq!(store.get(&other).await.unwrap(), None, "unknown CID");

    // Over one 256 KiB chunk: the root of the UnixFS DAG of raw leaves, as an IPFS node answers
    // `add --cid-version=1 --raw-leaves` (this one is js-ipfs's answer), and the whole document
    // back by it. No block has the document's raw CID.
    let big: Vec<u8> = (0..1024 * 1024 + 5u32)
        .map(|i| ((i * 13 + 1) % 256) as u8)
        .collect();
    let cid = store.put(&big).await.unwrap();
    assert_eq!(
        cid, "bafybeicxum22silv3zvjptadcwygd6s6bbemahwxglsfigiqrmmbukoglm",
        "UnixFS root, 256 KiB raw leaves"
    );
    assert_eq!(cid, sequencer_core::cids::document_cid(&big).to_string());
    assert_eq!(store.get(&cid).await.unwrap().as_deref(), Some(&big[..]));
    let raw = sequencer_core::cids::raw_cid(&big).to_string();
    assert_eq!(
        store.get(&raw).await.unwrap(),
        None,
        "not stored as one raw block"
    );
}
