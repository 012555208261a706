//! `track_table`: rows that another application writes with plain SQL, on
//! a connection of its own, reach the nodes; the nodes' versions land in the
//! table as plain rows.

mod common;

use sync_conformance::fixtures::{hub_info, node_info};
use sync_conformance::net::session;
use sync_core::{
    ConflictStrategy, Engine, EngineConfig, EntityKey, EntityRegistry, EntityType, FieldKind,
    Record, Timestamp, Uuid, Value,
};
use sync_store_memory::MemoryStore;

const REPORT: &str = "DailyReport";

fn now() -> Timestamp {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_micros();
    Timestamp::from_micros(i64::try_from(micros).expect("in range"))
}

fn report_of(node: &mut Engine<MemoryStore>, date: &str) -> Option<sync_core::Entity> {
    let txn = sync_core::Store::begin(node.store_mut()).expect("begin");
    let all = sync_core::StoreTxn::entities(&txn, REPORT, None, 100).expect("entities");
    all.into_iter()
        .map(|s| s.entity)
        .find(|e| e.fields.get("date") == Some(&Value::Text(date.into())))
}

#[test]
fn plain_sql_rows_reach_the_nodes_and_node_changes_land_as_rows() {
    let mut store = common::fresh();
    let schema = store.schema().to_owned();
    let table = format!("{schema}.daily_report");
    store
        .client()
        .batch_execute(&format!(
            "CREATE TABLE {table}(id serial PRIMARY KEY, date text NOT NULL, hours integer);
             INSERT INTO {table}(date, hours) VALUES ('2025-12-11', 7);"
        ))
        .expect("the application's table");
    store.track_table("daily_report", REPORT).expect("track");
    let registry = EntityRegistry::new().with(
        EntityType::new(REPORT)
            .field("date", FieldKind::Text)
            .field("hours", FieldKind::Int)
            .strategy(ConflictStrategy::LastWriterWins),
    );
    let mut hub = common::hub_on(store, &registry);
    hub.register_peer(node_info(0)).expect("register the node");
    let mut node = Engine::new(
        MemoryStore::new(),
        registry,
        EngineConfig::default().seed(2),
        node_info(0),
    )
    .expect("node");
    node.register_peer(hub_info()).expect("register the hub");

    // Another application, its own connection, plain SQL.
    let mut app = postgres::Client::connect(&common::url(), postgres::NoTls).expect("connect");
    app.batch_execute(&format!(
        "INSERT INTO {table}(date, hours) VALUES ('2025-12-12', 8);
         UPDATE {table} SET hours = 6 WHERE date = '2025-12-11';"
    ))
    .expect("the application writes");
    session(&mut node, &mut hub, now()).expect("sync");
    let first = report_of(&mut node, "2025-12-11").expect("the row written before tracking");
    assert_eq!(first.fields["hours"], Value::Int(6));
    let second = report_of(&mut node, "2025-12-12").expect("the row inserted by the application");
    assert_eq!(second.fields["hours"], Value::Int(8));
    assert!(
        !first.fields.contains_key("id"),
        "the local row id does not travel"
    );

    // The node's changes: a new report and an edit.
    let new_key = EntityKey::new(REPORT, Uuid::from_u128(0xabc));
    let mut fields = Record::new();
    fields.insert("date".into(), Value::Text("2025-12-13".into()));
    fields.insert("hours".into(), Value::Int(5));
    node.put(new_key.clone(), fields, now()).expect("write");
    let mut edit = second.fields.clone();
    edit.insert("hours".into(), Value::Int(9));
    node.put(second.key.clone(), edit, now()).expect("edit");
    session(&mut node, &mut hub, now()).expect("sync");
    let rows: Vec<(String, Option<i32>, Uuid)> = app
        .query(
            &format!("SELECT date, hours, sync_uuid FROM {table} ORDER BY date"),
            &[],
        )
        .expect("read the table")
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("2025-12-11".to_owned(), Some(6), first.key.id),
            ("2025-12-12".to_owned(), Some(9), second.key.id),
            ("2025-12-13".to_owned(), Some(5), new_key.id),
        ]
    );

    // The hub did not capture the node's rows as writes of its own.
    let pending = hub.pending_count(node_info(0).id).expect("pending");
    assert_eq!(pending, 0, "nothing to send back to the node");

    // A DELETE by the application removes the row on the node too.
    app.execute(
        &format!("DELETE FROM {table} WHERE date = '2025-12-13'"),
        &[],
    )
    .expect("delete");
    session(&mut node, &mut hub, now()).expect("sync");
    let removed = node.get(&new_key).expect("read").expect("a tombstone");
    assert!(removed.is_deleted);
}

/// A hub on `store` and one node, both with `registry`.
fn hub_and_node(
    store: sync_store_postgres::PgStore,
    registry: &EntityRegistry,
) -> (Engine<sync_store_postgres::PgStore>, Engine<MemoryStore>) {
    let mut hub = common::hub_on(store, registry);
    hub.register_peer(node_info(0)).expect("register the node");
    let mut node = Engine::new(
        MemoryStore::new(),
        registry.clone(),
        EngineConfig::default().seed(2),
        node_info(0),
    )
    .expect("node");
    node.register_peer(hub_info()).expect("register the hub");
    (hub, node)
}

fn all_of(node: &mut Engine<MemoryStore>, entity_type: &str) -> Vec<sync_core::Entity> {
    let txn = sync_core::Store::begin(node.store_mut()).expect("begin");
    sync_core::StoreTxn::entities(&txn, entity_type, None, 1000)
        .expect("entities")
        .into_iter()
        .map(|s| s.entity)
        .collect()
}

fn kind_of(t: &EntityType, field: &str) -> FieldKind {
    t.fields()
        .iter()
        .find(|f| f.name == field)
        .unwrap_or_else(|| panic!("the type has no field {field}"))
        .kind
        .clone()
}

/// Microseconds since the epoch of a UTC date and time.
fn micros(date: &str) -> i64 {
    Timestamp::parse_rfc3339(date)
        .unwrap_or_else(|| panic!("{date} is RFC 3339"))
        .as_micros()
}

const CUSTOMER: &str = "Customer";
const INVOICE: &str = "Invoice";

/// An application's schema with a foreign key and typed columns, tracked
/// parent first.
fn typed_schema(store: &mut sync_store_postgres::PgStore) -> (String, String, EntityRegistry) {
    let schema = store.schema().to_owned();
    let customer = format!("{schema}.customer");
    let invoice = format!("{schema}.invoice");
    store
        .client()
        .batch_execute(&format!(
            "CREATE TABLE {customer}(
                 id serial PRIMARY KEY, name text NOT NULL, photo bytea,
                 joined timestamptz, balance numeric(12, 2), active boolean,
                 score double precision, external uuid, born date, tags jsonb);
             CREATE TABLE {invoice}(
                 id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                 customer_id integer NOT NULL REFERENCES {customer}(id) ON DELETE CASCADE,
                 issued timestamp, amount numeric(12, 2) CHECK (amount >= 0),
                 paid boolean NOT NULL DEFAULT false, lines smallint);"
        ))
        .expect("the application's tables");
    let customer_type = store.track_table("customer", CUSTOMER).expect("track");
    let invoice_type = store.track_table("invoice", INVOICE).expect("track");
    assert_eq!(kind_of(&customer_type, "photo"), FieldKind::Bytes);
    assert_eq!(kind_of(&customer_type, "joined"), FieldKind::Timestamp);
    assert_eq!(kind_of(&customer_type, "balance"), FieldKind::Text);
    assert_eq!(kind_of(&customer_type, "active"), FieldKind::Bool);
    assert_eq!(kind_of(&customer_type, "score"), FieldKind::Float);
    assert_eq!(kind_of(&customer_type, "external"), FieldKind::Uuid);
    assert_eq!(kind_of(&invoice_type, "issued"), FieldKind::Timestamp);
    assert_eq!(kind_of(&invoice_type, "lines"), FieldKind::Int);
    assert_eq!(
        kind_of(&invoice_type, "customer_id"),
        FieldKind::Reference {
            target: CUSTOMER.into()
        }
    );
    assert!(
        !invoice_type.fields().iter().any(|f| f.name == "id"),
        "the identity key is a local row id"
    );
    let registry = EntityRegistry::new().with(customer_type).with(invoice_type);
    (customer, invoice, registry)
}

#[test]
fn typed_columns_and_foreign_keys_written_with_plain_sql_reach_the_nodes_with_their_values() {
    let mut store = common::fresh();
    let (customer, invoice, registry) = typed_schema(&mut store);
    let (mut hub, mut node) = hub_and_node(store, &registry);

    let mut app = postgres::Client::connect(&common::url(), postgres::NoTls).expect("connect");
    app.batch_execute(&format!(
        "INSERT INTO {customer}(name, photo, joined, balance, active, score, external, born, tags)
         VALUES ('Ada', '\\x00ff10', '2025-12-11 10:20:30.123456+01', 1234.50, true, 0.5,
                 '6f9619ff-8b86-d011-b42d-00c04fc964ff', '1815-12-10', '{{\"a\": [1, 2]}}');
         INSERT INTO {invoice}(customer_id, issued, amount, paid, lines)
         SELECT id, '2025-12-12 08:00:00.000001', 99.95, true, 3 FROM {customer};"
    ))
    .expect("the application writes");
    session(&mut node, &mut hub, now()).expect("sync");

    let customers = all_of(&mut node, CUSTOMER);
    assert_eq!(customers.len(), 1, "{customers:?}");
    let ada = &customers[0].fields;
    assert_eq!(ada["name"], Value::Text("Ada".into()));
    assert_eq!(ada["photo"], Value::Bytes(vec![0, 255, 16]));
    assert_eq!(
        ada["joined"],
        Value::Timestamp(Timestamp::from_micros(micros(
            "2025-12-11T09:20:30.123456Z"
        )))
    );
    assert_eq!(ada["balance"], Value::Text("1234.50".into()));
    assert_eq!(ada["active"], Value::Bool(true));
    assert_eq!(ada["score"], Value::Float(0.5));
    assert_eq!(
        ada["external"],
        Value::Uuid(Uuid::parse_str("6f9619ff-8b86-d011-b42d-00c04fc964ff").expect("a uuid"))
    );
    assert_eq!(ada["born"], Value::Text("1815-12-10".into()));
    assert_eq!(ada["tags"], Value::Text("{\"a\": [1, 2]}".into()));
    let invoices = all_of(&mut node, INVOICE);
    assert_eq!(invoices.len(), 1, "{invoices:?}");
    let bill = &invoices[0].fields;
    assert_eq!(
        bill["customer_id"],
        Value::Uuid(customers[0].key.id),
        "the reference travels as the parent's sync key"
    );
    assert_eq!(
        bill["issued"],
        Value::Timestamp(Timestamp::from_micros(micros(
            "2025-12-12T08:00:00.000001Z"
        )))
    );
    assert_eq!(bill["amount"], Value::Text("99.95".into()));
    assert_eq!(bill["paid"], Value::Bool(true));
    assert_eq!(bill["lines"], Value::Int(3));

    // A DELETE of the parent cascades in Postgres; both removals travel.
    app.execute(&format!("DELETE FROM {customer}"), &[])
        .expect("delete");
    session(&mut node, &mut hub, now()).expect("sync");
    for key in [&customers[0].key, &invoices[0].key] {
        let gone = node.get(key).expect("read").expect("a tombstone");
        assert!(gone.is_deleted, "{key} is removed on the node");
    }
}

#[test]
fn a_nodes_typed_rows_land_as_plain_rows_parents_first() {
    let mut store = common::fresh();
    let (customer, invoice, registry) = typed_schema(&mut store);
    let (mut hub, mut node) = hub_and_node(store, &registry);

    let grace = EntityKey::new(CUSTOMER, Uuid::from_u128(0xc1));
    let bill = EntityKey::new(INVOICE, Uuid::from_u128(0x11));
    let joined = Timestamp::from_micros(micros("2025-06-01T12:00:00.654321Z"));
    let issued = Timestamp::from_micros(micros("2025-06-02T00:00:00.000007Z"));
    let mut fields = Record::new();
    fields.insert("name".into(), Value::Text("Grace".into()));
    fields.insert("photo".into(), Value::Bytes(vec![1, 2, 3, 0, 255]));
    fields.insert("joined".into(), Value::Timestamp(joined));
    fields.insert("balance".into(), Value::Text("-0.05".into()));
    fields.insert("active".into(), Value::Bool(false));
    fields.insert("score".into(), Value::Float(2.25));
    node.put(grace.clone(), fields.clone(), now())
        .expect("write");
    let mut line = Record::new();
    line.insert("customer_id".into(), Value::Uuid(grace.id));
    line.insert("issued".into(), Value::Timestamp(issued));
    line.insert("amount".into(), Value::Text("12345.67".into()));
    line.insert("paid".into(), Value::Bool(false));
    line.insert("lines".into(), Value::Int(2));
    node.put(bill.clone(), line, now()).expect("write");
    // The parent's edit comes after the child in the node's change order:
    // the hub still writes the parent's row first.
    fields.insert("score".into(), Value::Float(3.5));
    node.put(grace.clone(), fields, now()).expect("edit");
    session(&mut node, &mut hub, now()).expect("sync");
    assert!(hub.rejected().expect("rejected").is_empty());

    let mut app = postgres::Client::connect(&common::url(), postgres::NoTls).expect("connect");
    let row = app
        .query_one(
            &format!(
                "SELECT name, photo, (extract(epoch FROM joined) * 1000000)::int8,
                     balance = -0.05, active, score, id
                 FROM {customer} WHERE sync_uuid = $1"
            ),
            &[&grace.id],
        )
        .expect("the node's customer is a row");
    assert_eq!(row.get::<_, String>(0), "Grace");
    assert_eq!(row.get::<_, Vec<u8>>(1), vec![1, 2, 3, 0, 255]);
    assert_eq!(row.get::<_, i64>(2), joined.as_micros());
    assert!(row.get::<_, bool>(3), "numeric written exactly");
    assert!(!row.get::<_, bool>(4));
    assert_eq!(row.get::<_, f64>(5), 3.5);
    let customer_id: i32 = row.get(6);
    let row = app
        .query_one(
            &format!(
                "SELECT customer_id, (extract(epoch FROM issued) * 1000000)::int8,
                     amount::text, paid, lines
                 FROM {invoice} WHERE sync_uuid = $1"
            ),
            &[&bill.id],
        )
        .expect("the node's invoice is a row");
    assert_eq!(
        row.get::<_, i32>(0),
        customer_id,
        "the local key of the parent"
    );
    assert_eq!(row.get::<_, i64>(1), issued.as_micros());
    assert_eq!(row.get::<_, String>(2), "12345.67");
    assert!(!row.get::<_, bool>(3));
    assert_eq!(row.get::<_, i16>(4), 2);
    assert_eq!(hub.pending_count(node_info(0).id).expect("pending"), 0);

    // A node's delete is a soft delete: the row stays, flagged.
    node.delete(bill.clone(), now()).expect("delete");
    session(&mut node, &mut hub, now()).expect("sync");
    let flagged: bool = app
        .query_one(
            &format!("SELECT is_deleted FROM {invoice} WHERE sync_uuid = $1"),
            &[&bill.id],
        )
        .expect("the row stays")
        .get(0);
    assert!(flagged, "the node's delete reached the row");
}

#[test]
fn a_row_the_table_refuses_is_rejected_and_the_rest_of_the_packet_lands() {
    let mut store = common::fresh();
    let (_customer, invoice, registry) = typed_schema(&mut store);
    let (mut hub, mut node) = hub_and_node(store, &registry);

    let ann = EntityKey::new(CUSTOMER, Uuid::from_u128(0xa1));
    let mut fields = Record::new();
    fields.insert("name".into(), Value::Text("Ann".into()));
    node.put(ann.clone(), fields, now()).expect("write");
    let keys: Vec<EntityKey> = (0..3u128)
        .map(|i| EntityKey::new(INVOICE, Uuid::from_u128(0x100 + i)))
        .collect();
    for (i, key) in keys.iter().enumerate() {
        let mut line = Record::new();
        line.insert("customer_id".into(), Value::Uuid(ann.id));
        line.insert("paid".into(), Value::Bool(false));
        // The second breaks the table's CHECK (amount >= 0).
        let amount = if i == 1 { "-1.00" } else { "5.00" };
        line.insert("amount".into(), Value::Text(amount.into()));
        node.put(key.clone(), line, now()).expect("write");
    }
    session(&mut node, &mut hub, now()).expect("sync");
    let rejected = hub.rejected().expect("rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0].entity.key, keys[1]);
    assert!(
        rejected[0].reason.contains("check"),
        "{}",
        rejected[0].reason
    );
    let mut app = postgres::Client::connect(&common::url(), postgres::NoTls).expect("connect");
    let landed: Vec<Uuid> = app
        .query(
            &format!("SELECT sync_uuid FROM {invoice} ORDER BY sync_uuid"),
            &[],
        )
        .expect("read")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(landed, vec![keys[0].id, keys[2].id]);
    let kept = hub.get(&keys[1]).expect("read");
    // The engine's own answer to a refusal (the hub, the authority, has no
    // live version: a removal reverts the node's); nothing of the refused
    // values is kept live on the hub.
    assert!(
        kept.as_ref().is_none_or(|e| e.is_deleted),
        "nothing of it kept live: {kept:?}"
    );
}

#[test]
fn a_child_whose_parent_row_is_gone_is_kept_without_a_row() {
    let mut store = common::fresh();
    let (customer, invoice, registry) = typed_schema(&mut store);
    let (mut hub, mut node) = hub_and_node(store, &registry);
    let mut app = postgres::Client::connect(&common::url(), postgres::NoTls).expect("connect");
    app.execute(&format!("INSERT INTO {customer}(name) VALUES ('Bo')"), &[])
        .expect("insert");
    session(&mut node, &mut hub, now()).expect("sync");
    let bo = all_of(&mut node, CUSTOMER).remove(0);

    // The application deletes the customer on the server while the node,
    // not synced since, bills it.
    app.execute(&format!("DELETE FROM {customer}"), &[])
        .expect("delete");
    let bill = EntityKey::new(INVOICE, Uuid::from_u128(0xb0));
    let mut line = Record::new();
    line.insert("customer_id".into(), Value::Uuid(bo.key.id));
    line.insert("paid".into(), Value::Bool(false));
    node.put(bill.clone(), line, now()).expect("write");
    session(&mut node, &mut hub, now()).expect("sync");

    let rows: i64 = app
        .query_one(&format!("SELECT count(*) FROM {invoice}"), &[])
        .expect("count")
        .get(0);
    assert_eq!(rows, 0, "no row refers to a customer that has none");
    assert!(
        hub.rejected().expect("rejected").is_empty(),
        "not refused: kept in the sync tables or parked"
    );
    let kept = hub.get(&bill).expect("read").is_some();
    let parked = hub
        .parked()
        .expect("parked")
        .iter()
        .any(|p| format!("{p:?}").contains(&bill.id.to_string()));
    assert!(kept || parked, "the node's invoice is kept on the hub");
}
