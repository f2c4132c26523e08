//! The catalog's own tables on PostgreSQL: meta, tenant and data keys,
//! policy versions, the ledger, legal holds, run history and API keys.

use lethe_core::hold::HoldScope;
use lethe_core::TenantId;
use postgres::GenericClient;

use super::{db, lock_key, PgStore};
use crate::{AccessKey, HoldRecord, KeyId, LedgerEntry, Result, RunRecord, StoreError, StoredKey};

/// The ledger columns [`ledger_entry`] reads.
const LEDGER_COLUMNS: &str = "seq,ts_us,actor,kind,tenant,body,prev,hash,mac";

impl PgStore {
    pub(super) fn meta(&self, key: &str) -> Result<Option<String>> {
        let mut c = self.conn()?;
        Ok(c.query_opt("SELECT value FROM meta WHERE key=$1", &[&key])
            .map_err(db)?
            .map(|r| r.get(0)))
    }

    pub(super) fn set_meta(&self, key: &str, value: Option<&str>) -> Result<()> {
        let mut c = self.conn()?;
        match value {
            Some(v) => c.execute(
                "INSERT INTO meta(key,value) VALUES($1,$2) ON CONFLICT(key) DO UPDATE SET value=EXCLUDED.value",
                &[&key, &v],
            ),
            None => c.execute("DELETE FROM meta WHERE key=$1", &[&key]),
        }
        .map_err(db)?;
        Ok(())
    }

    pub(super) fn put_meta_once(&self, key: &str, value: &str) -> Result<String> {
        let mut c = self.conn()?;
        c.execute(
            "INSERT INTO meta(key,value) VALUES($1,$2) ON CONFLICT(key) DO NOTHING",
            &[&key, &value],
        )
        .map_err(db)?;
        Ok(c.query_one("SELECT value FROM meta WHERE key=$1", &[&key])
            .map_err(db)?
            .get(0))
    }

    pub(super) fn tenant_key(&self, tenant: &TenantId) -> Result<Option<Vec<u8>>> {
        let mut c = self.conn()?;
        Ok(
            c.query_opt("SELECT wrapped FROM tenant_keys WHERE tenant=$1", &[&tenant.as_str()])
                .map_err(db)?
                .map(|r| r.get(0)),
        )
    }

    pub(super) fn put_tenant_key(&self, tenant: &TenantId, wrapped: &[u8], now_us: i64) -> Result<Vec<u8>> {
        let mut c = self.conn()?;
        c.execute(
            "INSERT INTO tenant_keys(tenant,wrapped,created_us) VALUES($1,$2,$3) ON CONFLICT(tenant) DO NOTHING",
            &[&tenant.as_str(), &wrapped, &now_us],
        )
        .map_err(db)?;
        Ok(
            c.query_one("SELECT wrapped FROM tenant_keys WHERE tenant=$1", &[&tenant.as_str()])
                .map_err(db)?
                .get(0),
        )
    }

    pub(super) fn data_keys_by_ref(&self, tenant: &TenantId, refs: &[Vec<u8>]) -> Result<Vec<Option<StoredKey>>> {
        let mut c = self.conn()?;
        let rows = c
            .query(
                "SELECT id, ref, wrapped FROM data_keys WHERE tenant=$1 AND ref = ANY($2)",
                &[&tenant.as_str(), &refs],
            )
            .map_err(db)?;
        let mut by_ref: std::collections::HashMap<Vec<u8>, (i64, Option<Vec<u8>>)> = rows
            .iter()
            .map(|r| (r.get::<_, Vec<u8>>(1), (r.get(0), r.get(2))))
            .collect();
        Ok(refs
            .iter()
            .map(|r| {
                by_ref.remove(r).map(|(id, wrapped)| StoredKey {
                    id,
                    tenant: tenant.clone(),
                    key_ref: r.clone(),
                    wrapped,
                })
            })
            .collect())
    }

    pub(super) fn data_keys(&self, ids: &[KeyId]) -> Result<Vec<StoredKey>> {
        let mut c = self.conn()?;
        let rows = c
            .query(
                "SELECT id, tenant, ref, wrapped FROM data_keys WHERE id = ANY($1)",
                &[&ids],
            )
            .map_err(db)?;
        let mut found: std::collections::HashMap<i64, StoredKey> = std::collections::HashMap::new();
        for r in &rows {
            let k = stored_key(r)?;
            found.insert(k.id, k);
        }
        // In the order asked for, as the embedded store answers.
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    pub(super) fn all_data_keys(&self, tenant: Option<&str>) -> Result<Vec<StoredKey>> {
        let mut c = self.conn()?;
        let rows = c
            .query(
                "SELECT id, tenant, ref, wrapped FROM data_keys WHERE $1::text IS NULL OR tenant=$1 ORDER BY id",
                &[&tenant],
            )
            .map_err(db)?;
        rows.iter().map(stored_key).collect()
    }

    /// See [`crate::Store::each_data_key`]: rows are decoded as they
    /// arrive, never all held at once.
    pub(super) fn each_data_key(&self, tenant: Option<&str>, visit: &mut dyn FnMut(StoredKey)) -> Result<()> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut c = self.conn()?;
        let mut rows = c
            .query_raw(
                "SELECT id, tenant, ref, wrapped FROM data_keys WHERE $1::text IS NULL OR tenant=$1 ORDER BY id",
                [tenant],
            )
            .map_err(db)?;
        while let Some(r) = rows.next().map_err(db)? {
            visit(stored_key(&r)?);
        }
        Ok(())
    }

    pub(super) fn destroy_keys(&self, ids: &[KeyId], now_us: i64) -> Result<u64> {
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(db)?;
        // The reference named the subject (by pseudonym): it goes too.
        let n = tx
            .execute(
                "UPDATE data_keys SET wrapped=NULL, destroyed_us=$2, ref=convert_to('destroyed:' || id, 'UTF8')
                 WHERE id = ANY($1) AND wrapped IS NOT NULL",
                &[&ids, &now_us],
            )
            .map_err(db)?;
        if n > 0 {
            tx.execute(
                "INSERT INTO meta(key,value) VALUES('keys.epoch','1')
                 ON CONFLICT(key) DO UPDATE SET value=(meta.value::bigint + 1)::text",
                &[],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        crate::crashpoint::hit("keys.after_destroy");
        if n > 0 {
            // Under MVCC the old row versions, wrapped key and all, stay in
            // the table file until vacuumed: vacuum the key table now. (They
            // stay in the write-ahead log until it is recycled, and in
            // backups: see docs/operations.md.) On a thread of its own, so
            // that the erasure's next steps overlap it; the receipt waits
            // for its outcome (erasure_residue); a failure is retried by the
            // next destruction.
            self.key_vacuum.request();
        }
        Ok(n)
    }

    /// What an erasure leaves behind on PostgreSQL, honestly: MVCC keeps
    /// old row versions until vacuum, the WAL keeps them until recycled.
    pub(super) fn residue(&self) -> Vec<(&'static str, String)> {
        let keys = match &self.key_vacuum.outcome() {
            Some(Ok(())) => "VACUUM data_keys ran after the keys were destroyed: old versions of the destroyed \
                             key rows that no open transaction could still see were removed from the table file; \
                             a version an open transaction could see stays until the next vacuum"
                .to_string(),
            Some(Err(e)) => format!(
                "VACUUM data_keys did not complete ({e}): old versions of the destroyed key rows (wrapped keys) stay in the \
                 table file until autovacuum or the next key destruction vacuums it"
            ),
            None => "not vacuumed by this node: old versions of destroyed key rows (wrapped keys) stay in the \
                     table file until autovacuum reclaims them"
                .to_string(),
        };
        vec![
            ("postgresql_key_table", keys),
            (
                "postgresql_records",
                "removed and anonymized rows were updated in place: their old row versions (plain fields, and \
                 personal fields as ciphertext under the subject's keys) stay in the partition's table file as \
                 dead tuples until autovacuum reclaims them or the partition is dropped at expiry; the erasure \
                 does not vacuum record partitions"
                    .to_string(),
            ),
            (
                "postgresql_wal",
                "the write-ahead log holds the old key rows and record versions until its segments are recycled \
                 after later checkpoints, and any WAL archive or streaming replica holds them until it expires \
                 them; the wrapped keys there are unreadable without the master key"
                    .to_string(),
            ),
        ]
    }

    pub(super) fn key_epoch(&self) -> Result<u64> {
        let mut c = self.conn()?;
        Ok(c.query_opt("SELECT value FROM meta WHERE key='keys.epoch'", &[])
            .map_err(db)?
            .and_then(|r| r.get::<_, String>(0).parse().ok())
            .unwrap_or(0))
    }

    pub(super) fn record_policy(&self, body: &str, now_us: i64) -> Result<(i64, bool)> {
        let mut c = self.conn()?;
        c.execute(
            "INSERT INTO policy_versions(body, created_us) VALUES($1, $2) ON CONFLICT(body) DO NOTHING",
            &[&body, &now_us],
        )
        .map_err(db)?;
        let r = c
            .query_one("SELECT id, entered FROM policy_versions WHERE body=$1", &[&body])
            .map_err(db)?;
        Ok((r.get(0), !r.get::<_, bool>(1)))
    }

    pub(super) fn mark_policy_entered(&self, version: i64) -> Result<()> {
        let mut c = self.conn()?;
        c.execute("UPDATE policy_versions SET entered=true WHERE id=$1", &[&version])
            .map_err(db)?;
        Ok(())
    }

    pub(super) fn policy(&self, version: i64) -> Result<Option<String>> {
        let mut c = self.conn()?;
        Ok(c.query_opt("SELECT body FROM policy_versions WHERE id=$1", &[&version])
            .map_err(db)?
            .map(|r| r.get(0)))
    }

    pub(super) fn append_entry(
        &self,
        seal: &mut dyn FnMut(u64, [u8; 32]) -> LedgerEntry,
        mark: Option<&str>,
    ) -> Result<LedgerEntry> {
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(db)?;
        let e = append_ledger_in(&mut tx, &self.schema, seal)?;
        if let Some(key) = mark {
            tx.execute(
                "INSERT INTO meta(key,value) VALUES($1,$2) ON CONFLICT(key) DO UPDATE SET value=EXCLUDED.value",
                &[&key, &e.seq.to_string()],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(e)
    }

    pub(super) fn trim_ledger(&self, through: u64) -> Result<u64> {
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(db)?;
        tx.batch_execute("SET LOCAL lethe.ledger_trim = 'on'").map_err(db)?;
        let n = tx
            .execute(
                "DELETE FROM ledger WHERE seq <= $1",
                &[&(through.min(i64::MAX as u64) as i64)],
            )
            .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(n)
    }

    pub(super) fn ledger_head(&self) -> Result<u64> {
        let mut c = self.conn()?;
        let n: i64 = c
            .query_one("SELECT coalesce(max(seq), 0) FROM ledger", &[])
            .map_err(db)?
            .get(0);
        Ok(n as u64)
    }

    pub(super) fn ledger(&self, from: u64, limit: usize) -> Result<Vec<LedgerEntry>> {
        let mut c = self.conn()?;
        let rows = c
            .query(
                &format!("SELECT {LEDGER_COLUMNS} FROM ledger WHERE seq >= $1 ORDER BY seq LIMIT $2"),
                &[
                    &(from.min(i64::MAX as u64) as i64),
                    &(limit.min(i64::MAX as usize) as i64),
                ],
            )
            .map_err(db)?;
        Ok(rows.iter().map(ledger_entry).collect())
    }

    pub(super) fn ledger_of_kinds(&self, kinds: &[&str]) -> Result<Vec<LedgerEntry>> {
        let mut c = self.conn()?;
        let rows = c
            .query(
                &format!("SELECT {LEDGER_COLUMNS} FROM ledger WHERE kind = ANY($1) ORDER BY seq"),
                &[&kinds],
            )
            .map_err(db)?;
        Ok(rows.iter().map(ledger_entry).collect())
    }

    pub(super) fn add_hold(&self, h: &HoldRecord) -> Result<i64> {
        let mut c = self.conn()?;
        let s = &h.scope;
        let r = c
            .query_one(
                "INSERT INTO holds(tenant,subject,pseudonym,scope,since_us,until_us,reason,actor,created_us,expires_us)
                 VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10) RETURNING id",
                &[
                    &s.tenant,
                    &(s.subject || s.pseudonym.is_some()),
                    &s.pseudonym.as_ref().map(|p| &p[..]),
                    &s.scope,
                    &s.since_us,
                    &s.until_us,
                    &h.reason,
                    &h.actor,
                    &h.created_us,
                    &h.expires_us,
                ],
            )
            .map_err(db)?;
        Ok(r.get(0))
    }

    pub(super) fn set_hold_entry(&self, id: i64, ledger_seq: u64) -> Result<()> {
        let mut c = self.conn()?;
        c.execute(
            "UPDATE holds SET ledger_seq=$2 WHERE id=$1",
            &[&id, &(ledger_seq as i64)],
        )
        .map_err(db)?;
        Ok(())
    }

    pub(super) fn release_hold(&self, id: i64, now_us: i64, reason: &str) -> Result<bool> {
        let mut c = self.conn()?;
        // A released hold no longer needs to find its subject.
        let n = c
            .execute(
                "UPDATE holds SET released_us=$2, release_reason=$3, pseudonym=NULL WHERE id=$1 AND released_us IS NULL",
                &[&id, &now_us, &reason],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    pub(super) fn holds(&self, tenant: Option<&str>) -> Result<Vec<HoldRecord>> {
        let mut c = self.conn()?;
        let rows = c
            .query(
                "SELECT id,tenant,subject,pseudonym,scope,since_us,until_us,reason,actor,created_us,expires_us,
                        released_us,release_reason,ledger_seq
                 FROM holds WHERE $1::text IS NULL OR tenant=$1 ORDER BY id",
                &[&tenant],
            )
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| HoldRecord {
                id: r.get(0),
                scope: HoldScope {
                    tenant: r.get(1),
                    subject: r.get(2),
                    pseudonym: r.get::<_, Option<Vec<u8>>>(3).and_then(|v| v.try_into().ok()),
                    scope: r.get(4),
                    since_us: r.get(5),
                    until_us: r.get(6),
                },
                reason: r.get(7),
                actor: r.get(8),
                created_us: r.get(9),
                expires_us: r.get(10),
                released_us: r.get(11),
                release_reason: r.get(12),
                ledger_seq: r.get::<_, Option<i64>>(13).map(|v| v as u64),
            })
            .collect())
    }

    pub(super) fn record_run(
        &self,
        kind: &str,
        started_us: i64,
        finished_us: i64,
        status: &str,
        summary: &str,
    ) -> Result<i64> {
        let mut c = self.conn()?;
        let r = c
            .query_one(
                "INSERT INTO runs(kind,started_us,finished_us,status,summary) VALUES($1,$2,$3,$4,$5) RETURNING id",
                &[&kind, &started_us, &finished_us, &status, &summary],
            )
            .map_err(db)?;
        Ok(r.get(0))
    }

    pub(super) fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let mut c = self.conn()?;
        let rows = c
            .query(
                "SELECT id,kind,started_us,finished_us,status,summary FROM runs ORDER BY id DESC LIMIT $1",
                &[&(limit.min(i64::MAX as usize) as i64)],
            )
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| RunRecord {
                id: r.get(0),
                kind: r.get(1),
                started_us: r.get(2),
                finished_us: r.get(3),
                status: r.get(4),
                summary: r.get(5),
            })
            .collect())
    }

    pub(super) fn access_put(&self, k: &AccessKey) -> Result<()> {
        let mut c = self.conn()?;
        let tenants = serde_json::to_string(&k.tenants).map_err(|e| StoreError::Misuse(e.to_string()))?;
        let n = c
            .execute(
                "INSERT INTO access_keys(id,name,role,tenants,secret_hash,creator,created_us,expires_us)
                 VALUES($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT(id) DO NOTHING",
                &[
                    &k.id,
                    &k.name,
                    &k.role,
                    &tenants,
                    &k.secret_hash,
                    &k.creator,
                    &k.created_us,
                    &k.expires_us,
                ],
            )
            .map_err(db)?;
        if n == 0 {
            return Err(StoreError::Misuse("an API key with this id exists".into()));
        }
        Ok(())
    }

    pub(super) fn access_list(&self) -> Result<Vec<AccessKey>> {
        let mut c = self.conn()?;
        let rows = c
            .query(
                "SELECT id,name,role,tenants,secret_hash,creator,created_us,expires_us,last_used_us,revoked_us
                 FROM access_keys ORDER BY created_us, id",
                &[],
            )
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                let id: String = r.get(0);
                let tenants: String = r.get(3);
                Ok(AccessKey {
                    tenants: serde_json::from_str(&tenants)
                        .map_err(|e| StoreError::Corrupt(format!("API key {id}: tenant list: {e}")))?,
                    id,
                    name: r.get(1),
                    role: r.get(2),
                    secret_hash: r.get(4),
                    creator: r.get(5),
                    created_us: r.get(6),
                    expires_us: r.get(7),
                    last_used_us: r.get(8),
                    revoked_us: r.get(9),
                })
            })
            .collect()
    }

    pub(super) fn access_revoke(&self, id: &str, now_us: i64) -> Result<bool> {
        let mut c = self.conn()?;
        let n = c
            .execute(
                "UPDATE access_keys SET revoked_us=$2 WHERE id=$1 AND revoked_us IS NULL",
                &[&id, &now_us],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    pub(super) fn access_touch(&self, id: &str, now_us: i64) -> Result<()> {
        let mut c = self.conn()?;
        c.execute(
            "UPDATE access_keys SET last_used_us=$2 WHERE id=$1 AND (last_used_us IS NULL OR last_used_us < $2)",
            &[&id, &now_us],
        )
        .map_err(db)?;
        Ok(())
    }
}

/// Appends one ledger entry inside the caller's transaction, under the
/// ledger's advisory lock (held to the commit), so writers on every node
/// see one head and never fork the chain.
pub(super) fn append_ledger_in(
    tx: &mut impl GenericClient,
    schema: &str,
    seal: &mut dyn FnMut(u64, [u8; 32]) -> LedgerEntry,
) -> Result<LedgerEntry> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock_key(schema, "ledger")])
        .map_err(db)?;
    let head = tx
        .query_opt("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1", &[])
        .map_err(db)?;
    let (seq, hash) = match head {
        Some(r) => (
            r.get::<_, i64>(0) as u64,
            r.get::<_, Vec<u8>>(1)
                .try_into()
                .map_err(|_| StoreError::Corrupt("ledger hash".into()))?,
        ),
        None => (0, [0u8; 32]),
    };
    let e = seal(seq, hash);
    tx.execute(
        "INSERT INTO ledger(seq,ts_us,actor,kind,tenant,body,prev,hash,mac) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9)",
        &[
            &(e.seq as i64),
            &e.ts_us,
            &e.actor,
            &e.kind,
            &e.tenant,
            &e.body,
            &&e.prev[..],
            &&e.hash[..],
            &&e.mac[..],
        ],
    )
    .map_err(db)?;
    Ok(e)
}

fn ledger_entry(r: &postgres::Row) -> LedgerEntry {
    // A damaged hash column is reported by verification, not here.
    let h = |v: Vec<u8>| -> [u8; 32] { v.try_into().unwrap_or([0u8; 32]) };
    LedgerEntry {
        seq: r.get::<_, i64>(0) as u64,
        ts_us: r.get(1),
        actor: r.get(2),
        kind: r.get(3),
        tenant: r.get(4),
        body: r.get(5),
        prev: h(r.get(6)),
        hash: h(r.get(7)),
        mac: h(r.get(8)),
    }
}

fn stored_key(r: &postgres::Row) -> Result<StoredKey> {
    let id: i64 = r.get(0);
    let t: String = r.get(1);
    Ok(StoredKey {
        id,
        tenant: TenantId::new(&t).map_err(|e| StoreError::Corrupt(format!("data key {id}: {e}")))?,
        key_ref: r.get(2),
        wrapped: r.get(3),
    })
}
