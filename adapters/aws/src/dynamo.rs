//! [`StateStore`] on DynamoDB.
//!
//! Tables are `<prefix>-<Table::name()>`, each with a string partition key `pk` and sort key `sk`
//! (`localstack/resources.py`). An item is stored as `state` (S, only when set), `data` (S),
//! `ttl` (N, Unix seconds, only when set; the table's TTL attribute) and, for
//! [`StateStore::add_bounded`], `members` (SS). A counter item written only by `add_bounded` has
//! no `data`; it reads back as an [`Item`] with empty `data`.
//!
//! [`StateStore::transact`] is one `TransactWriteItems` (conditions as condition expressions,
//! `ReturnValuesOnConditionCheckFailure` = `ALL_OLD`, so a cancellation reports each failed
//! item as it is from DynamoDB's `CancellationReasons`); [`StateStore::batch_get`] is
//! `BatchGetItem` in requests of 100 keys, [`StateStore::batch_put`] `BatchWriteItem` in
//! requests of 25, both retrying what DynamoDB returns unprocessed.
//!
//! Reads are strongly consistent. Throttling, 5xx, transport failures and timeouts, and also
//! requests the service refuses (a missing table, a validation error: the port has no other
//! class), are [`PortError::Unavailable`]; items this code cannot decode are
//! [`PortError::Corrupt`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, KeysAndAttributes, Put, PutRequest, ReturnValue,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use sequencer_ports::{
    check_transaction, BoundedAdd, Condition, ErrorKind, Item, Key, OpStatus, Page, PortError,
    StateStore, Table, Transition, TxOp, TxOutcome,
};

use crate::error::classify;

type Attrs = HashMap<String, AttributeValue>;

const PK: &str = "pk";
const SK: &str = "sk";
const STATE: &str = "state";
const DATA: &str = "data";
const TTL: &str = "ttl";
const MEMBERS: &str = "members";

/// The DynamoDB state store.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    prefix: String,
    requests: Arc<RequestCounts>,
}

/// Requests this store sent to DynamoDB, by operation (`GetItem`, `TransactWriteItems`, …):
/// what the benchmarks and the hostile-traffic tests count, at the adapter, so every retry of an
/// unprocessed batch and every read behind a refused condition is in it.
#[derive(Debug, Default)]
pub struct RequestCounts(Mutex<BTreeMap<&'static str, u64>>);

impl RequestCounts {
    fn add(&self, op: &'static str) {
        if let Ok(mut m) = self.0.lock() {
            *m.entry(op).or_default() += 1;
        }
    }

    /// Requests by operation so far.
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }

    /// All requests so far.
    pub fn total(&self) -> u64 {
        self.snapshot().values().sum()
    }

    /// Requests that write (everything but `GetItem`, `BatchGetItem` and `Query`).
    pub fn writes(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|(op, _)| !matches!(**op, "GetItem" | "BatchGetItem" | "Query"))
            .map(|(_, n)| n)
            .sum()
    }
}

fn unavailable<E>(op: &str, table: &str, e: &aws_sdk_dynamodb::error::SdkError<E>) -> PortError
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    PortError::state(
        ErrorKind::Unavailable,
        format!("{op} {table}: {}", classify(e).message()),
    )
}

fn key_attrs(key: &Key) -> Attrs {
    HashMap::from([
        (PK.to_string(), AttributeValue::S(key.pk.clone())),
        (SK.to_string(), AttributeValue::S(key.sk.clone())),
    ])
}

fn item_attrs(key: &Key, item: &Item) -> Attrs {
    let mut a = key_attrs(key);
    a.insert(DATA.to_string(), AttributeValue::S(item.data.clone()));
    if let Some(s) = &item.state {
        a.insert(STATE.to_string(), AttributeValue::S(s.clone()));
    }
    if let Some(t) = item.ttl {
        a.insert(TTL.to_string(), AttributeValue::N(t.to_string()));
    }
    a
}

fn corrupt(table: &str, what: impl std::fmt::Display) -> PortError {
    PortError::state(ErrorKind::Corrupt, format!("{table}: {what}"))
}

fn string_attr(a: &Attrs, name: &str, table: &str) -> Result<Option<String>, PortError> {
    match a.get(name) {
        None => Ok(None),
        Some(AttributeValue::S(s)) => Ok(Some(s.clone())),
        Some(other) => Err(corrupt(
            table,
            format!("attribute {name} is not a string: {other:?}"),
        )),
    }
}

fn members(a: &Attrs, table: &str) -> Result<Vec<String>, PortError> {
    match a.get(MEMBERS) {
        None => Ok(Vec::new()),
        Some(AttributeValue::Ss(m)) => Ok(m.clone()),
        Some(other) => Err(corrupt(
            table,
            format!("members is not a string set: {other:?}"),
        )),
    }
}

/// A condition as a condition expression with its names and values.
fn condition_expr(c: &Condition) -> (String, Attrs, HashMap<String, String>) {
    let names = HashMap::from([("#state".to_string(), STATE.to_string())]);
    match c {
        Condition::Absent => (
            "attribute_not_exists(pk)".into(),
            Attrs::new(),
            HashMap::new(),
        ),
        Condition::State(s) => (
            "#state = :cstate".into(),
            HashMap::from([(":cstate".to_string(), AttributeValue::S(s.clone()))]),
            names,
        ),
        Condition::NotState(s) => (
            "attribute_not_exists(pk) OR #state <> :cstate".into(),
            HashMap::from([(":cstate".to_string(), AttributeValue::S(s.clone()))]),
            names,
        ),
    }
}

fn none_if_empty<K, V>(m: HashMap<K, V>) -> Option<HashMap<K, V>> {
    (!m.is_empty()).then_some(m)
}

fn refused(what: impl std::fmt::Display) -> PortError {
    PortError::state(ErrorKind::Refused, what.to_string())
}

/// Backoff between retries of what a batch request left unprocessed.
async fn pause(attempt: u32) {
    let ms = 25u64.saturating_mul(1 << attempt.min(6));
    tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
}

/// Attempts at a batch request whose items DynamoDB keeps returning unprocessed (throttling)
/// before the call fails as unavailable.
const BATCH_ATTEMPTS: u32 = 8;

fn decode(a: &Attrs, table: &str) -> Result<Item, PortError> {
    let data = match string_attr(a, DATA, table)? {
        Some(d) => d,
        None if a.contains_key(MEMBERS) => String::new(),
        None => return Err(corrupt(table, "item without data")),
    };
    let ttl = match a.get(TTL) {
        None => None,
        Some(AttributeValue::N(n)) => Some(
            n.parse::<u64>()
                .map_err(|e| corrupt(table, format!("ttl {n:?}: {e}")))?,
        ),
        Some(other) => return Err(corrupt(table, format!("ttl is not a number: {other:?}"))),
    };
    let mut members = members(a, table)?;
    members.sort_unstable();
    Ok(Item {
        state: string_attr(a, STATE, table)?,
        data,
        ttl,
        members,
    })
}

fn count(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl DynamoStore {
    /// A store over `client` with tables `<prefix>-<name>`.
    pub fn new(client: Client, prefix: impl Into<String>) -> Self {
        Self {
            client,
            prefix: prefix.into(),
            requests: Arc::default(),
        }
    }

    /// The requests sent so far (shared by clones of this store).
    pub fn requests(&self) -> &RequestCounts {
        &self.requests
    }

    /// A store from an SDK configuration (e.g. [`crate::aws_sdk_config`]) and `prefix`.
    pub fn from_sdk(sdk: &aws_config::SdkConfig, prefix: impl Into<String>) -> Self {
        Self::new(Client::new(sdk), prefix)
    }

    /// A store from the standard AWS environment ([`crate::aws_sdk_config`]) and `prefix`.
    pub async fn from_env(prefix: impl Into<String>) -> Self {
        Self::from_sdk(&crate::aws_sdk_config().await, prefix)
    }

    /// The DynamoDB table name of `table`.
    pub fn table_name(&self, table: Table) -> String {
        format!("{}-{}", self.prefix, table.name())
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn get_attrs(&self, name: &str, key: &Key) -> Result<Option<Attrs>, PortError> {
        self.requests.add("GetItem");
        let out = self
            .client
            .get_item()
            .table_name(name)
            .set_key(Some(key_attrs(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", name, &e))?;
        Ok(out.item().cloned())
    }

    fn tx_item(&self, op: &TxOp) -> Result<TransactWriteItem, PortError> {
        let name = self.table_name(op.target().0);
        let built = match op {
            TxOp::Check { key, condition, .. } => {
                let (expr, values, names) = condition_expr(condition);
                TransactWriteItem::builder().condition_check(
                    ConditionCheck::builder()
                        .table_name(&name)
                        .set_key(Some(key_attrs(key)))
                        .condition_expression(expr)
                        .set_expression_attribute_names(none_if_empty(names))
                        .set_expression_attribute_values(none_if_empty(values))
                        .return_values_on_condition_check_failure(
                            ReturnValuesOnConditionCheckFailure::AllOld,
                        )
                        .build()
                        .map_err(refused)?,
                )
            }
            TxOp::Put {
                key,
                item,
                condition,
                ..
            } => {
                let mut b = Put::builder()
                    .table_name(&name)
                    .set_item(Some(item_attrs(key, item)))
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    );
                if let Some(c) = condition {
                    let (expr, values, names) = condition_expr(c);
                    b = b
                        .condition_expression(expr)
                        .set_expression_attribute_names(none_if_empty(names))
                        .set_expression_attribute_values(none_if_empty(values));
                }
                TransactWriteItem::builder().put(b.build().map_err(refused)?)
            }
            TxOp::AddMembers {
                key,
                members,
                max_before,
                ttl,
                ..
            } => {
                let (update, mut names, mut values) = add_expr(members, *ttl);
                let mut b = Update::builder()
                    .table_name(&name)
                    .set_key(Some(key_attrs(key)))
                    .update_expression(update)
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    );
                if let Some(m) = max_before {
                    values.insert(":max".into(), AttributeValue::N(m.to_string()));
                    names.insert("#members".into(), MEMBERS.into());
                    b = b.condition_expression(
                        "attribute_not_exists(#members) OR size(#members) <= :max",
                    );
                }
                TransactWriteItem::builder().update(
                    b.set_expression_attribute_names(Some(names))
                        .set_expression_attribute_values(Some(values))
                        .build()
                        .map_err(refused)?,
                )
            }
        };
        Ok(built.build())
    }
}

/// `ADD` the members to the set (and `SET` the TTL): the update expression, its names and values.
fn add_expr(members: &[String], ttl: Option<u64>) -> (String, HashMap<String, String>, Attrs) {
    let mut names = HashMap::from([("#members".to_string(), MEMBERS.to_string())]);
    let mut values = HashMap::from([(":m".to_string(), AttributeValue::Ss(members.to_vec()))]);
    let mut update = "ADD #members :m".to_string();
    if let Some(t) = ttl {
        names.insert("#ttl".into(), TTL.into());
        values.insert(":ttl".into(), AttributeValue::N(t.to_string()));
        update = format!("SET #ttl = :ttl {update}");
    }
    (update, names, values)
}

#[async_trait]
impl StateStore for DynamoStore {
    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, PortError> {
        let name = self.table_name(table);
        self.get_attrs(&name, key)
            .await?
            .map(|a| decode(&a, &name))
            .transpose()
    }

    async fn put(&self, table: Table, key: &Key, item: &Item) -> Result<(), PortError> {
        let name = self.table_name(table);
        self.requests.add("PutItem");
        self.client
            .put_item()
            .table_name(&name)
            .set_item(Some(item_attrs(key, item)))
            .send()
            .await
            .map_err(|e| unavailable("PutItem", &name, &e))?;
        Ok(())
    }

    async fn put_if_absent(&self, table: Table, key: &Key, item: &Item) -> Result<bool, PortError> {
        let name = self.table_name(table);
        self.requests.add("PutItem");
        match self
            .client
            .put_item()
            .table_name(&name)
            .set_item(Some(item_attrs(key, item)))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(unavailable("PutItem", &name, &e)),
        }
    }

    async fn transition(
        &self,
        table: Table,
        key: &Key,
        from: Option<&str>,
        item: &Item,
    ) -> Result<Transition, PortError> {
        let name = self.table_name(table);
        self.requests.add("PutItem");
        let mut req = self
            .client
            .put_item()
            .table_name(&name)
            .set_item(Some(item_attrs(key, item)))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        req = match from {
            None => req.condition_expression("attribute_not_exists(pk)"),
            Some(state) => req
                .condition_expression("#state = :from")
                .expression_attribute_names("#state", STATE)
                .expression_attribute_values(":from", AttributeValue::S(state.to_string())),
        };
        match req.send().await {
            Ok(_) => Ok(Transition::Applied),
            Err(e) => {
                let Some(failed) = e.as_service_error().and_then(|s| match s {
                    aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(c) => Some(c),
                    _ => None,
                }) else {
                    return Err(unavailable("PutItem", &name, &e));
                };
                let current = match failed.item() {
                    Some(old) => Some(old.clone()),
                    // The item is absent (no old values), or the service does not return them:
                    // read it.
                    None => self.get_attrs(&name, key).await?,
                };
                Ok(Transition::Refused(
                    current.map(|a| decode(&a, &name)).transpose()?,
                ))
            }
        }
    }

    async fn add_bounded(
        &self,
        table: Table,
        key: &Key,
        member: &str,
        ceiling: u64,
    ) -> Result<BoundedAdd, PortError> {
        let name = self.table_name(table);
        if ceiling == 0 {
            // `attribute_not_exists(members)` would admit a first member: answer from a read.
            let m = match self.get_attrs(&name, key).await? {
                Some(a) => members(&a, &name)?,
                None => Vec::new(),
            };
            let n = count(m.len());
            return Ok(if m.iter().any(|x| x == member) {
                BoundedAdd::Present(n)
            } else {
                BoundedAdd::Full(n)
            });
        }
        self.requests.add("UpdateItem");
        let res = self
            .client
            .update_item()
            .table_name(&name)
            .set_key(Some(key_attrs(key)))
            .update_expression("ADD #members :m")
            .condition_expression(
                "attribute_not_exists(#members) OR size(#members) < :cap OR contains(#members, :member)",
            )
            .expression_attribute_names("#members", MEMBERS)
            .expression_attribute_values(":m", AttributeValue::Ss(vec![member.to_string()]))
            .expression_attribute_values(":cap", AttributeValue::N(ceiling.to_string()))
            .expression_attribute_values(":member", AttributeValue::S(member.to_string()))
            .return_values(ReturnValue::UpdatedOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match res {
            Ok(out) => {
                let old = match out.attributes() {
                    Some(a) => members(a, &name)?,
                    None => Vec::new(),
                };
                let n = count(old.len());
                Ok(if old.iter().any(|x| x == member) {
                    BoundedAdd::Present(n)
                } else {
                    BoundedAdd::Added(n + 1)
                })
            }
            Err(e) => {
                let Some(failed) = e.as_service_error().and_then(|s| match s {
                    aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c) => Some(c),
                    _ => None,
                }) else {
                    return Err(unavailable("UpdateItem", &name, &e));
                };
                let old = match failed.item() {
                    Some(a) => members(a, &name)?,
                    None => match self.get_attrs(&name, key).await? {
                        Some(a) => members(&a, &name)?,
                        None => Vec::new(),
                    },
                };
                Ok(BoundedAdd::Full(count(old.len())))
            }
        }
    }

    async fn query(
        &self,
        table: Table,
        pk: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Page, PortError> {
        let name = self.table_name(table);
        self.requests.add("Query");
        let mut req = self
            .client
            .query()
            .table_name(&name)
            .consistent_read(true)
            .scan_index_forward(true)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_string()));
        req = match after {
            None => req.key_condition_expression("pk = :pk"),
            Some(a) => req
                .key_condition_expression("pk = :pk AND sk > :after")
                .expression_attribute_values(":after", AttributeValue::S(a.to_string())),
        };
        let out = req
            .send()
            .await
            .map_err(|e| unavailable("Query", &name, &e))?;
        let mut items = Vec::with_capacity(out.items().len());
        for a in out.items() {
            let sk = string_attr(a, SK, &name)?.ok_or_else(|| corrupt(&name, "item without sk"))?;
            items.push((sk, decode(a, &name)?));
        }
        let next = match out.last_evaluated_key() {
            None => None,
            Some(k) => match string_attr(k, SK, &name)? {
                Some(sk) => Some(sk),
                None => items.last().map(|(sk, _)| sk.clone()),
            },
        };
        Ok(Page { items, next })
    }

    async fn delete(&self, table: Table, key: &Key) -> Result<(), PortError> {
        let name = self.table_name(table);
        self.requests.add("DeleteItem");
        self.client
            .delete_item()
            .table_name(&name)
            .set_key(Some(key_attrs(key)))
            .send()
            .await
            .map_err(|e| unavailable("DeleteItem", &name, &e))?;
        Ok(())
    }

    async fn transact(&self, ops: &[TxOp]) -> Result<TxOutcome, PortError> {
        check_transaction(ops)?;
        let items = ops
            .iter()
            .map(|op| self.tx_item(op))
            .collect::<Result<Vec<_>, _>>()?;
        self.requests.add("TransactWriteItems");
        let res = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let e = match res {
            Ok(_) => return Ok(TxOutcome::Committed),
            Err(e) => e,
        };
        use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError as E;
        let Some(E::TransactionCanceledException(c)) = e.as_service_error() else {
            return Err(unavailable("TransactWriteItems", "(transaction)", &e));
        };
        let reasons = c.cancellation_reasons();
        if reasons.len() != ops.len() {
            return Err(PortError::state(
                ErrorKind::Unavailable,
                format!(
                    "TransactWriteItems cancelled with {} reasons for {} operations: {}",
                    reasons.len(),
                    ops.len(),
                    c.message().unwrap_or("")
                ),
            ));
        }
        let mut out = Vec::with_capacity(ops.len());
        for (op, r) in ops.iter().zip(reasons) {
            let name = self.table_name(op.target().0);
            out.push(match r.code().unwrap_or("None") {
                "None" => OpStatus::Ok,
                "ConditionalCheckFailed" => OpStatus::ConditionFailed(
                    r.item()
                        .filter(|a| !a.is_empty())
                        .map(|a| decode(a, &name))
                        .transpose()?,
                ),
                "TransactionConflict" => OpStatus::Conflict,
                "ValidationError" => {
                    return Err(refused(format!(
                        "TransactWriteItems refused on {name}: {}",
                        r.message().unwrap_or("")
                    )))
                }
                other => {
                    // Throttling, capacity, item collection limits: the service's side.
                    return Err(PortError::state(
                        ErrorKind::Unavailable,
                        format!(
                            "TransactWriteItems cancelled on {name}: {other}: {}",
                            r.message().unwrap_or("")
                        ),
                    )
                    .with_code(other.to_string()));
                }
            });
        }
        Ok(TxOutcome::Cancelled(out))
    }

    async fn batch_get(&self, keys: &[(Table, Key)]) -> Result<Vec<Option<Item>>, PortError> {
        // Distinct keys (BatchGetItem refuses a key twice), 100 per request.
        let mut distinct: Vec<(Table, &Key)> = keys.iter().map(|(t, k)| (*t, k)).collect();
        distinct.sort();
        distinct.dedup();
        let mut found: HashMap<(String, String, String), Item> = HashMap::new();
        for chunk in distinct.chunks(100) {
            let mut want: HashMap<String, KeysAndAttributes> = HashMap::new();
            for (table, key) in chunk {
                let name = self.table_name(*table);
                let entry = want.remove(&name).map_or_else(
                    || KeysAndAttributes::builder().consistent_read(true),
                    |k| {
                        KeysAndAttributes::builder()
                            .consistent_read(true)
                            .set_keys(Some(k.keys().to_vec()))
                    },
                );
                want.insert(name, entry.keys(key_attrs(key)).build().map_err(refused)?);
            }
            let mut attempt = 0;
            while !want.is_empty() {
                if attempt >= BATCH_ATTEMPTS {
                    return Err(PortError::state(
                        ErrorKind::Unavailable,
                        format!("BatchGetItem: keys still unprocessed after {attempt} attempts"),
                    ));
                }
                if attempt > 0 {
                    pause(attempt).await;
                }
                attempt += 1;
                self.requests.add("BatchGetItem");
                let out = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(std::mem::take(&mut want)))
                    .send()
                    .await
                    .map_err(|e| unavailable("BatchGetItem", "(batch)", &e))?;
                for (name, items) in out.responses().into_iter().flatten() {
                    for a in items {
                        let pk = string_attr(a, PK, name)?.ok_or_else(|| corrupt(name, "no pk"))?;
                        let sk = string_attr(a, SK, name)?.ok_or_else(|| corrupt(name, "no sk"))?;
                        found.insert((name.clone(), pk, sk), decode(a, name)?);
                    }
                }
                want = out
                    .unprocessed_keys()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(_, k)| !k.keys().is_empty())
                    .collect();
            }
        }
        Ok(keys
            .iter()
            .map(|(t, k)| {
                found
                    .get(&(self.table_name(*t), k.pk.clone(), k.sk.clone()))
                    .cloned()
            })
            .collect())
    }

    async fn batch_put(&self, items: &[(Table, Key, Item)]) -> Result<(), PortError> {
        // The later write of a key wins (BatchWriteItem refuses a key twice in one request).
        let mut last: Vec<(Table, &Key, &Item)> = Vec::with_capacity(items.len());
        let mut at: HashMap<(Table, &Key), usize> = HashMap::new();
        for (t, k, i) in items {
            match at.get(&(*t, k)) {
                Some(&n) => last[n] = (*t, k, i),
                None => {
                    at.insert((*t, k), last.len());
                    last.push((*t, k, i));
                }
            }
        }
        for chunk in last.chunks(25) {
            let mut want: HashMap<String, Vec<WriteRequest>> = HashMap::new();
            for (table, key, item) in chunk {
                let put = PutRequest::builder()
                    .set_item(Some(item_attrs(key, item)))
                    .build()
                    .map_err(refused)?;
                want.entry(self.table_name(*table))
                    .or_default()
                    .push(WriteRequest::builder().put_request(put).build());
            }
            let mut attempt = 0;
            while !want.is_empty() {
                if attempt >= BATCH_ATTEMPTS {
                    return Err(PortError::state(
                        ErrorKind::Unavailable,
                        format!("BatchWriteItem: items still unprocessed after {attempt} attempts"),
                    ));
                }
                if attempt > 0 {
                    pause(attempt).await;
                }
                attempt += 1;
                self.requests.add("BatchWriteItem");
                let out = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(std::mem::take(&mut want)))
                    .send()
                    .await
                    .map_err(|e| unavailable("BatchWriteItem", "(batch)", &e))?;
                want = out
                    .unprocessed_items()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|(_, w)| !w.is_empty())
                    .collect();
            }
        }
        Ok(())
    }

    async fn add_members(
        &self,
        table: Table,
        key: &Key,
        members: &[String],
        ttl: Option<u64>,
    ) -> Result<(), PortError> {
        let name = self.table_name(table);
        if members.is_empty() {
            return Err(refused("add_members with no member"));
        }
        let (update, names, values) = add_expr(members, ttl);
        self.requests.add("UpdateItem");
        self.client
            .update_item()
            .table_name(&name)
            .set_key(Some(key_attrs(key)))
            .update_expression(update)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .send()
            .await
            .map_err(|e| unavailable("UpdateItem", &name, &e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_round_trip_through_attributes() {
        let k = Key::new("p", "s");
        for item in [
            Item::data("{}"),
            Item::with_state("OPEN", r#"{"a":1}"#).ttl(Some(42)),
        ] {
            assert_eq!(decode(&item_attrs(&k, &item), "t").ok(), Some(item));
        }
    }

    #[test]
    fn undecodable_items_are_corrupt() {
        let mut a = key_attrs(&Key::new("p", "s"));
        assert!(matches!(decode(&a, "t"), Err(ref e) if *e.kind() == ErrorKind::Corrupt));
        a.insert(DATA.into(), AttributeValue::N("1".into()));
        assert!(matches!(decode(&a, "t"), Err(ref e) if *e.kind() == ErrorKind::Corrupt));
        a.insert(DATA.into(), AttributeValue::S("x".into()));
        a.insert(TTL.into(), AttributeValue::N("-1".into()));
        assert!(matches!(decode(&a, "t"), Err(ref e) if *e.kind() == ErrorKind::Corrupt));
        a.remove(TTL);
        a.insert(MEMBERS.into(), AttributeValue::S("x".into()));
        assert!(matches!(members(&a, "t"), Err(ref e) if *e.kind() == ErrorKind::Corrupt));
    }
}
