//! [`StateStore`] on DynamoDB.
//!
//! Tables are `<prefix>-<Table::name()>`, each with a string partition key `pk` and sort key `sk`
//! (`localstack/resources.py`). An item is stored as `state` (S, only when set), `data` (S),
//! `ttl` (N, Unix seconds, only when set; the table's TTL attribute) and, for
//! [`StateStore::add_bounded`], `members` (SS). A counter item written only by `add_bounded` has
//! no `data`; it reads back as an [`Item`] with empty `data`.
//!
//! Reads are strongly consistent. Throttling, 5xx, transport failures and timeouts, and also
//! requests the service refuses (a missing table, a validation error: the port has no other
//! class), are [`PortError::Unavailable`]; items this code cannot decode are
//! [`PortError::Corrupt`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_sdk_dynamodb::Client;
use sequencer_ports::{
    BoundedAdd, ErrorKind, Item, Key, Page, PortError, StateStore, Table, Transition,
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
    Ok(Item {
        state: string_attr(a, STATE, table)?,
        data,
        ttl,
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
