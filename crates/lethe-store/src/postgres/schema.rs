//! The database schema as versioned migrations: a new schema is created
//! from nothing, an older one brought forward in order, and a schema a
//! newer Lethe wrote is refused before anything is touched.

use postgres::Client;

use super::{db, lock_key};
use crate::{Result, StoreError};

/// Migrations in order; the schema's version is how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: the catalog, the partitioned record table and restorations.
    "
CREATE TABLE meta(key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE chains(tenant text NOT NULL, stream text NOT NULL, head_seq bigint NOT NULL,
  head_hash bytea NOT NULL, frontier bytea NOT NULL, sealed bigint NOT NULL DEFAULT 0,
  sealed_us bigint NOT NULL DEFAULT 0, PRIMARY KEY(tenant, stream));
CREATE TABLE segments(tenant text NOT NULL, stream text NOT NULL, first_seq bigint NOT NULL,
  last_seq bigint NOT NULL, partition_id bigint NOT NULL, prev bytea NOT NULL, chain bytea NOT NULL,
  PRIMARY KEY(tenant, stream, first_seq));
CREATE INDEX segments_partition ON segments(partition_id);
CREATE TABLE merkle_nodes(tenant text NOT NULL, stream text NOT NULL, level integer NOT NULL,
  idx bigint NOT NULL, hash bytea NOT NULL, PRIMARY KEY(tenant, stream, level, idx));
CREATE TABLE buckets(id bigserial PRIMARY KEY, name text NOT NULL, state smallint NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX buckets_live ON buckets(name) WHERE state = 0;
CREATE TABLE partitions(id bigserial PRIMARY KEY, tenant text NOT NULL, stream text NOT NULL,
  start_us bigint NOT NULL, end_us bigint NOT NULL, bucket bigint NOT NULL, UNIQUE(tenant, stream, start_us));
CREATE INDEX partitions_bucket ON partitions(bucket);
CREATE TABLE partition_groups(partition_id bigint NOT NULL, scope text NOT NULL, class smallint NOT NULL,
  records bigint NOT NULL, anonymized bigint NOT NULL DEFAULT 0, deleted bigint NOT NULL DEFAULT 0,
  min_ts bigint, max_ts bigint, PRIMARY KEY(partition_id, scope, class));
CREATE TABLE capture_drops(tenant text NOT NULL, stream text NOT NULL, scope text NOT NULL,
  class smallint NOT NULL, count bigint NOT NULL, PRIMARY KEY(tenant, stream, scope, class));
CREATE TABLE tenant_keys(tenant text PRIMARY KEY, wrapped bytea NOT NULL, created_us bigint NOT NULL);
CREATE TABLE data_keys(id bigint PRIMARY KEY, tenant text NOT NULL, ref bytea NOT NULL, wrapped bytea,
  created_us bigint NOT NULL, destroyed_us bigint, UNIQUE(tenant, ref));
CREATE TABLE policy_versions(id bigserial PRIMARY KEY, body text NOT NULL UNIQUE, created_us bigint NOT NULL,
  entered boolean NOT NULL DEFAULT false);
CREATE TABLE ledger(seq bigint PRIMARY KEY, ts_us bigint NOT NULL, actor text NOT NULL, kind text NOT NULL,
  tenant text, body text NOT NULL, prev bytea NOT NULL, hash bytea NOT NULL, mac bytea NOT NULL);
CREATE INDEX ledger_kind ON ledger(kind);
CREATE TABLE runs(id bigserial PRIMARY KEY, kind text NOT NULL, started_us bigint NOT NULL,
  finished_us bigint NOT NULL, status text NOT NULL, summary text NOT NULL);
CREATE TABLE holds(id bigserial PRIMARY KEY, tenant text NOT NULL, subject boolean NOT NULL, pseudonym bytea,
  scope text, since_us bigint, until_us bigint, reason text NOT NULL, actor text NOT NULL,
  created_us bigint NOT NULL, expires_us bigint, released_us bigint, release_reason text, ledger_seq bigint);
CREATE TABLE access_keys(id text PRIMARY KEY, name text NOT NULL, role text NOT NULL, tenants text NOT NULL,
  secret_hash bytea NOT NULL, creator text NOT NULL, created_us bigint NOT NULL, expires_us bigint,
  last_used_us bigint, revoked_us bigint);
CREATE TABLE restorations(id bigserial PRIMARY KEY, tenant text NOT NULL, created_us bigint NOT NULL,
  expires_us bigint NOT NULL, records bigint NOT NULL DEFAULT 0, note text NOT NULL, ledger_seq bigint,
  finished boolean NOT NULL DEFAULT false);
CREATE TABLE records(bucket bigint NOT NULL, part bigint NOT NULL, seq bigint NOT NULL, id bytea NOT NULL,
  ts bigint NOT NULL, received bigint NOT NULL, scope text NOT NULL, class smallint NOT NULL, pseudonym bytea,
  key_id bigint, plain text NOT NULL, body bytea, state smallint NOT NULL DEFAULT 0, prev bytea NOT NULL,
  mac bytea NOT NULL, redacted bytea, PRIMARY KEY(bucket, part, seq)) PARTITION BY LIST (bucket);
CREATE UNIQUE INDEX records_id ON records(bucket, part, id);
CREATE INDEX records_ts ON records(bucket, part, ts);
CREATE INDEX records_subject ON records(bucket, part, pseudonym) WHERE pseudonym IS NOT NULL;
-- The ledger is append-only for everyone who does not disable triggers
-- (the table's owner and superusers can): edits are refused, and rows go
-- only through ledger retention, which sets lethe.ledger_trim for its
-- own transaction. verify's hash chain catches what this cannot stop.
CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' AND current_setting('lethe.ledger_trim', true) = 'on' THEN
    RETURN OLD;
  END IF;
  RAISE EXCEPTION 'the Lethe ledger is append-only (% refused)', TG_OP;
END $$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger
  FOR EACH ROW EXECUTE FUNCTION ledger_append_only();
",
    // 2: subject filters (a Bloom filter of the pseudonyms per partition;
    // partitions of a version-1 store have none and are always searched).
    "
CREATE TABLE subject_filters(partition_id bigint PRIMARY KEY, version bigint NOT NULL, bits bytea NOT NULL);
",
    // 3: the groups each chain has ever held, so that listing the groups
    // (every sweep's first step) does not read every partition's groups
    // (272,000 rows for 100 tenants over a year). A group whose records
    // are all gone stays listed here; readers check it still has one.
    "
CREATE TABLE chain_groups(tenant text NOT NULL, stream text NOT NULL, scope text NOT NULL, class smallint NOT NULL,
  PRIMARY KEY(tenant, stream, scope, class));
INSERT INTO chain_groups
  SELECT DISTINCT p.tenant, p.stream, g.scope, g.class FROM partitions p JOIN partition_groups g ON g.partition_id = p.id;
",
];

/// The schema version this binary writes.
pub const VERSION: i64 = MIGRATIONS.len() as i64;

/// Creates or migrates the schema `schema` (one migration run at a time
/// per schema, across nodes, under an advisory lock), checks its partition
/// span, and refuses a schema newer than this binary.
pub(super) fn migrate(c: &mut Client, schema: &str, span_secs: u64) -> Result<()> {
    let mut tx = c.transaction().map_err(db)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(schema, "migrate")])
        .map_err(db)?;
    tx.batch_execute(&format!(
        "CREATE SCHEMA IF NOT EXISTS {q}; SET LOCAL search_path TO {q};
         CREATE TABLE IF NOT EXISTS schema_version(version bigint NOT NULL);",
        q = super::quote_ident(schema)
    ))
    .map_err(db)?;
    let have: Option<i64> = tx
        .query_opt("SELECT max(version) FROM schema_version", &[])
        .map_err(db)?
        .and_then(|r| r.get(0));
    let have = have.unwrap_or(0);
    if have > VERSION {
        return Err(StoreError::Corrupt(format!(
            "the database schema `{schema}` is at version {have}, newer than this Lethe understands \
             ({VERSION}): upgrade Lethe on this node (nothing was changed)"
        )));
    }
    for (i, m) in MIGRATIONS.iter().enumerate().skip(have as usize) {
        tx.batch_execute(m).map_err(db)?;
        tx.execute("INSERT INTO schema_version(version) VALUES($1)", &[&(i as i64 + 1)])
            .map_err(db)?;
    }
    tx.execute(
        "INSERT INTO meta(key, value) VALUES('partition_secs', $1) ON CONFLICT(key) DO NOTHING",
        &[&span_secs.to_string()],
    )
    .map_err(db)?;
    let span: String = tx
        .query_one("SELECT value FROM meta WHERE key='partition_secs'", &[])
        .map_err(db)?
        .get(0);
    if span != span_secs.to_string() {
        return Err(StoreError::Corrupt(format!(
            "this store was created with partitions of {span} s; store.partition asks for {span_secs} s"
        )));
    }
    tx.commit().map_err(db)
}
