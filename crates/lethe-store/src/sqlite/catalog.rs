//! The catalog's own tables behind the `Store` trait: meta, tenant and data keys, policy versions, the ledger, legal holds and run history.

use lethe_core::hold::HoldScope;
use lethe_core::TenantId;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::*;
use crate::crashpoint;

impl SqliteStore {
    pub(super) fn meta(&self, key: &str) -> Result<Option<String>> {
        let cat = self.key_conn();
        cat.query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0))
            .optional()
            .map_err(db)
    }

    pub(super) fn set_meta(&self, key: &str, value: Option<&str>) -> Result<()> {
        let cat = self.key_conn();
        match value {
            Some(v) => cat.execute(
                "INSERT INTO meta(key,value) VALUES(?1,?2) ON CONFLICT(key) DO UPDATE SET value=?2",
                [key, v],
            ),
            None => cat.execute("DELETE FROM meta WHERE key=?1", [key]),
        }
        .map_err(db)?;
        Ok(())
    }

    pub(super) fn tenant_key(&self, tenant: &TenantId) -> Result<Option<Vec<u8>>> {
        let cat = self.key_conn();
        cat.query_row(
            "SELECT wrapped FROM tenant_keys WHERE tenant=?1",
            [tenant.as_str()],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)
    }

    pub(super) fn put_tenant_key(&self, tenant: &TenantId, wrapped: &[u8], now_us: i64) -> Result<Vec<u8>> {
        let cat = self.key_conn();
        cat.execute(
            "INSERT INTO tenant_keys(tenant,wrapped,created_us) VALUES(?1,?2,?3) ON CONFLICT(tenant) DO NOTHING",
            params![tenant.as_str(), wrapped, now_us],
        )
        .map_err(db)?;
        cat.query_row(
            "SELECT wrapped FROM tenant_keys WHERE tenant=?1",
            [tenant.as_str()],
            |r| r.get(0),
        )
        .map_err(db)
    }

    pub(super) fn data_keys_by_ref(&self, tenant: &TenantId, refs: &[Vec<u8>]) -> Result<Vec<Option<StoredKey>>> {
        let cat = self.key_conn();
        let mut st = cat
            .prepare_cached("SELECT id, wrapped FROM data_keys WHERE tenant=?1 AND ref=?2")
            .map_err(db)?;
        let mut out = Vec::with_capacity(refs.len());
        for r in refs {
            let row: Option<(KeyId, Option<Vec<u8>>)> = st
                .query_row(params![tenant.as_str(), r], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
                .map_err(db)?;
            out.push(row.map(|(id, wrapped)| StoredKey {
                id,
                tenant: tenant.clone(),
                key_ref: r.clone(),
                wrapped,
            }));
        }
        Ok(out)
    }

    pub(super) fn data_keys(&self, ids: &[KeyId]) -> Result<Vec<StoredKey>> {
        let cat = self.key_conn();
        let mut st = cat
            .prepare_cached("SELECT tenant, ref, wrapped FROM data_keys WHERE id=?1")
            .map_err(db)?;
        let mut out = Vec::new();
        for id in ids {
            let row: Option<(String, Vec<u8>, Option<Vec<u8>>)> = st
                .query_row([id], |r| {
                    Ok((r.get(0)?, bytes_of(r.get_ref(1)?), wrapped_of(r.get_ref(2)?)))
                })
                .optional()
                .map_err(db)?;
            if let Some((t, r, w)) = row {
                out.push(StoredKey {
                    id: *id,
                    tenant: TenantId::new(&t).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    key_ref: r,
                    wrapped: w,
                });
            }
        }
        Ok(out)
    }

    pub(super) fn record_policy(&self, body: &str, now_us: i64) -> Result<(i64, bool)> {
        let cat = self.key_conn();
        cat.execute(
            "INSERT INTO policy_versions(body, created_us) VALUES(?1, ?2) ON CONFLICT(body) DO NOTHING",
            params![body, now_us],
        )
        .map_err(db)?;
        let (id, entered): (i64, bool) = cat
            .query_row("SELECT id, entered FROM policy_versions WHERE body=?1", [body], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(db)?;
        Ok((id, !entered))
    }

    pub(super) fn mark_policy_entered(&self, version: i64) -> Result<()> {
        let cat = self.key_conn();
        cat.execute("UPDATE policy_versions SET entered=1 WHERE id=?1", [version])
            .map_err(db)?;
        Ok(())
    }

    pub(super) fn trim_ledger(&self, through: u64) -> Result<u64> {
        let cat = self.key_conn();
        Ok(cat
            .execute(
                "DELETE FROM ledger WHERE seq <= ?1",
                [through.min(i64::MAX as u64) as i64],
            )
            .map_err(db)? as u64)
    }

    pub(super) fn ledger_head(&self) -> Result<u64> {
        let cat = self.key_conn();
        cat.query_row("SELECT coalesce(max(seq), 0) FROM ledger", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(db)
    }

    pub(super) fn ledger(&self, from: u64, limit: usize) -> Result<Vec<LedgerEntry>> {
        let cat = self.key_conn();
        let mut st = cat
            .prepare_cached(
                "SELECT seq,ts_us,actor,kind,tenant,body,prev,hash,mac FROM ledger WHERE seq >= ?1 ORDER BY seq LIMIT ?2",
            )
            .map_err(db)?;
        let rows = st
            .query_map(params![from as i64, limit.min(i64::MAX as usize) as i64], ledger_entry)
            .map_err(db)?;
        rows.collect::<std::result::Result<_, _>>().map_err(db)
    }

    pub(super) fn policy(&self, version: i64) -> Result<Option<String>> {
        let cat = self.key_conn();
        cat.query_row("SELECT body FROM policy_versions WHERE id=?1", [version], |r| r.get(0))
            .optional()
            .map_err(db)
    }

    pub(super) fn key_epoch(&self) -> Result<u64> {
        key_epoch_in(&self.key_conn())
    }

    pub(super) fn all_data_keys(&self, tenant: Option<&str>) -> Result<Vec<StoredKey>> {
        let cat = self.key_conn();
        let mut st = cat
            .prepare_cached("SELECT id, tenant, ref, wrapped FROM data_keys WHERE ?1 IS NULL OR tenant=?1 ORDER BY id")
            .map_err(db)?;
        let rows = st
            .query_map([tenant], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    bytes_of(r.get_ref(2)?),
                    wrapped_of(r.get_ref(3)?),
                ))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, t, key_ref, wrapped) = row.map_err(db)?;
            out.push(StoredKey {
                id,
                tenant: TenantId::new(&t).map_err(|e| StoreError::Corrupt(format!("data key {id}: {e}")))?,
                key_ref,
                wrapped,
            });
        }
        Ok(out)
    }

    pub(super) fn ledger_of_kinds(&self, kinds: &[&str]) -> Result<Vec<LedgerEntry>> {
        let cat = self.key_conn();
        let marks = vec!["?"; kinds.len()].join(",");
        let mut st = cat
            .prepare(&format!(
                "SELECT seq,ts_us,actor,kind,tenant,body,prev,hash,mac FROM ledger WHERE kind IN ({marks}) ORDER BY seq"
            ))
            .map_err(db)?;
        let rows = st
            .query_map(rusqlite::params_from_iter(kinds), ledger_entry)
            .map_err(db)?;
        rows.collect::<std::result::Result<_, _>>().map_err(db)
    }

    pub(super) fn put_meta_once(&self, key: &str, value: &str) -> Result<String> {
        let cat = self.key_conn();
        cat.execute(
            "INSERT INTO meta(key,value) VALUES(?1,?2) ON CONFLICT(key) DO NOTHING",
            [key, value],
        )
        .map_err(db)?;
        cat.query_row("SELECT value FROM meta WHERE key=?1", [key], |r| r.get(0))
            .map_err(db)
    }

    pub(super) fn destroy_keys(&self, ids: &[KeyId], now_us: i64) -> Result<u64> {
        let _g = self.write_lock()?;
        let c = self.key_conn();
        let tx = c.unchecked_transaction().map_err(db)?;
        let mut n = 0;
        {
            // The reference named the subject (by pseudonym): it goes too,
            // so nothing in the key table links back to the person.
            let mut st = tx
                .prepare_cached(
                    "UPDATE data_keys SET wrapped=NULL, destroyed_us=?2, ref=CAST('destroyed:' || id AS BLOB)
                     WHERE id=?1 AND wrapped IS NOT NULL",
                )
                .map_err(db)?;
            for id in ids {
                n += st.execute(params![id, now_us]).map_err(db)? as u64;
            }
        }
        if n > 0 {
            // Every process's key cache notices the destruction by this.
            tx.execute(
                "INSERT INTO meta(key,value) VALUES('keys.epoch','1')
                 ON CONFLICT(key) DO UPDATE SET value=CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
                [],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        crashpoint::hit("keys.after_destroy");
        // secure_delete zeroed the old key bytes in the pages just written; a
        // truncating checkpoint copies those pages over the main file (where
        // the old versions were) and empties the WAL (which may still hold
        // frames from when the key was stored). A reader holding an old
        // snapshot can make it wait; it is retried by the next destruction.
        let _ = c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        Ok(n)
    }

    pub(super) fn add_hold(&self, h: &HoldRecord) -> Result<i64> {
        let inner = self.lock();
        let s = &h.scope;
        inner
            .cat
            .execute(
                "INSERT INTO holds(tenant,subject,pseudonym,scope,since_us,until_us,reason,actor,created_us,expires_us)
                 VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)",
                params![
                    s.tenant,
                    s.subject || s.pseudonym.is_some(),
                    s.pseudonym.as_ref().map(|p| &p[..]),
                    s.scope,
                    s.since_us,
                    s.until_us,
                    h.reason,
                    h.actor,
                    h.created_us,
                    h.expires_us
                ],
            )
            .map_err(db)?;
        Ok(inner.cat.last_insert_rowid())
    }

    pub(super) fn set_hold_entry(&self, id: i64, ledger_seq: u64) -> Result<()> {
        let inner = self.lock();
        inner
            .cat
            .execute(
                "UPDATE holds SET ledger_seq=?2 WHERE id=?1",
                params![id, ledger_seq as i64],
            )
            .map_err(db)?;
        Ok(())
    }

    pub(super) fn release_hold(&self, id: i64, now_us: i64, reason: &str) -> Result<bool> {
        let inner = self.lock();
        // A released hold no longer needs to find its subject.
        let n = inner
            .cat
            .execute(
                "UPDATE holds SET released_us=?2, release_reason=?3, pseudonym=NULL WHERE id=?1 AND released_us IS NULL",
                params![id, now_us, reason],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    pub(super) fn holds(&self, tenant: Option<&str>) -> Result<Vec<HoldRecord>> {
        let inner = self.lock();
        let mut st = inner
            .cat
            .prepare_cached(
                "SELECT id,tenant,subject,pseudonym,scope,since_us,until_us,reason,actor,created_us,expires_us,
                        released_us,release_reason,ledger_seq
                 FROM holds WHERE ?1 IS NULL OR tenant=?1 ORDER BY id",
            )
            .map_err(db)?;
        let rows = st
            .query_map([tenant], |r| {
                Ok(HoldRecord {
                    id: r.get(0)?,
                    scope: HoldScope {
                        tenant: r.get(1)?,
                        subject: r.get(2)?,
                        pseudonym: r.get::<_, Option<Vec<u8>>>(3)?.and_then(|v| v.try_into().ok()),
                        scope: r.get(4)?,
                        since_us: r.get(5)?,
                        until_us: r.get(6)?,
                    },
                    reason: r.get(7)?,
                    actor: r.get(8)?,
                    created_us: r.get(9)?,
                    expires_us: r.get(10)?,
                    released_us: r.get(11)?,
                    release_reason: r.get(12)?,
                    ledger_seq: r.get::<_, Option<i64>>(13)?.map(|v| v as u64),
                })
            })
            .map_err(db)?;
        rows.collect::<std::result::Result<_, _>>().map_err(db)
    }

    pub(super) fn record_run(
        &self,
        kind: &str,
        started_us: i64,
        finished_us: i64,
        status: &str,
        summary: &str,
    ) -> Result<i64> {
        let cat = self.key_conn();
        cat.execute(
            "INSERT INTO runs(kind,started_us,finished_us,status,summary) VALUES(?1,?2,?3,?4,?5)",
            params![kind, started_us, finished_us, status, summary],
        )
        .map_err(db)?;
        Ok(cat.last_insert_rowid())
    }

    pub(super) fn runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        let cat = self.key_conn();
        let mut st = cat
            .prepare("SELECT id,kind,started_us,finished_us,status,summary FROM runs ORDER BY id DESC LIMIT ?1")
            .map_err(db)?;
        let rows = st
            .query_map([limit as i64], |r| {
                Ok(RunRecord {
                    id: r.get(0)?,
                    kind: r.get(1)?,
                    started_us: r.get(2)?,
                    finished_us: r.get(3)?,
                    status: r.get(4)?,
                    summary: r.get(5)?,
                })
            })
            .map_err(db)?;
        rows.collect::<std::result::Result<_, _>>().map_err(db)
    }

    /// Appends a ledger entry, setting `mark` to its sequence number in the
    /// same transaction when given.
    pub(super) fn append_entry(
        &self,
        seal: &mut dyn FnMut(u64, [u8; 32]) -> LedgerEntry,
        mark: Option<&str>,
    ) -> Result<LedgerEntry> {
        let mut cat = self.key_conn();
        let tx = cat
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let e = append_ledger_in(&tx, seal)?;
        if let Some(key) = mark {
            tx.execute(
                "INSERT INTO meta(key,value) VALUES(?1,?2) ON CONFLICT(key) DO UPDATE SET value=?2",
                params![key, e.seq.to_string()],
            )
            .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(e)
    }
}

/// Appends one ledger entry inside the caller's write transaction: `seal`
/// gets the head read in that same transaction, so concurrent writers never
/// fork the chain.
pub(super) fn append_ledger_in(
    tx: &Connection,
    seal: &mut dyn FnMut(u64, [u8; 32]) -> LedgerEntry,
) -> Result<LedgerEntry> {
    let head: Option<(i64, Vec<u8>)> = tx
        .query_row("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(db)?;
    let (seq, hash) = match head {
        Some((s, h)) => (
            s as u64,
            h.try_into().map_err(|_| StoreError::Corrupt("ledger hash".into()))?,
        ),
        None => (0, [0u8; 32]),
    };
    let e = seal(seq, hash);
    tx.execute(
        "INSERT INTO ledger(seq,ts_us,actor,kind,tenant,body,prev,hash,mac) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9)",
        params![
            e.seq as i64,
            e.ts_us,
            e.actor,
            e.kind,
            e.tenant,
            e.body,
            &e.prev[..],
            &e.hash[..],
            &e.mac[..]
        ],
    )
    .map_err(db)?;
    Ok(e)
}

/// A ledger entry from `seq,ts_us,actor,kind,tenant,body,prev,hash,mac`.
fn ledger_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<LedgerEntry> {
    // A damaged hash column is reported by verification, not here.
    let h = |v: Vec<u8>| -> [u8; 32] { v.try_into().unwrap_or([0u8; 32]) };
    Ok(LedgerEntry {
        seq: r.get::<_, i64>(0)? as u64,
        ts_us: r.get(1)?,
        actor: r.get(2)?,
        kind: r.get(3)?,
        tenant: r.get(4)?,
        body: r.get(5)?,
        prev: h(r.get(6)?),
        hash: h(r.get(7)?),
        mac: h(r.get(8)?),
    })
}

/// A wrapped-key column: `None` once destroyed (NULL), else its bytes.
fn wrapped_of(v: rusqlite::types::ValueRef<'_>) -> Option<Vec<u8>> {
    match v {
        rusqlite::types::ValueRef::Null => None,
        other => Some(bytes_of(other)),
    }
}

/// The catalog's key epoch as `cat` sees it (in its transaction, if any):
/// moved by every key destruction, in the same commit.
pub(super) fn key_epoch_in(cat: &Connection) -> Result<u64> {
    let v: Option<String> = cat
        .prepare_cached("SELECT value FROM meta WHERE key='keys.epoch'")
        .map_err(db)?
        .query_row([], |r| r.get(0))
        .optional()
        .map_err(db)?;
    Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
}
