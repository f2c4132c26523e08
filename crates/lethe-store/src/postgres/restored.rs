//! Restorations on PostgreSQL: archived records brought back for an
//! investigation, each restoration in a table of its own (outside every
//! chain), loaded by one node under an advisory lock and dropped whole.

use std::collections::HashMap;
use std::sync::Mutex;

use lethe_core::hold::HoldScope;
use lethe_core::policy::{Action, GroupKey};
use lethe_core::{Classification, StreamId, TenantId};
use postgres::types::ToSql;
use postgres::Client;

use super::{db, lock_key, PgStore};
use crate::{NewRecord, RecordQuery, Restoration, Result, Selection, StoreError, StoredRecord};

/// Restorations this process is loading: each with the connection that
/// holds its advisory lock (a node that dies lets go of it) and its tenant.
#[derive(Default)]
pub(super) struct Loading(Mutex<HashMap<i64, (Client, TenantId)>>);

impl Loading {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, (Client, TenantId)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Loading {
    fn drop(&mut self) {
        // Let go at once, so that reopening the store discards them now.
        for (_, (mut c, _)) in self.lock().drain() {
            let _ = c.batch_execute("SELECT pg_advisory_unlock_all()");
        }
    }
}

fn table(id: i64) -> String {
    format!("restored_r{id}")
}

/// Bookkeeping mark set with a restoration's ledger entry.
fn mark(id: i64) -> String {
    format!("restoration.{id}")
}

const COLUMNS: &str = "stream,seq,id,ts,received,scope,class,pseudonym,key_id,plain,body,anonymized";

impl PgStore {
    fn restoration_lock(&self, id: i64) -> i64 {
        lock_key(&self.schema, &format!("restoration.{id}"))
    }

    pub(super) fn restoration_begin(
        &self,
        tenant: &TenantId,
        created_us: i64,
        expires_us: i64,
        note: &str,
    ) -> Result<i64> {
        let mut loader = self.pool.connector().connect()?;
        // The row, the lock and the table come together: another node's
        // repair skips a restoration whose lock it cannot take.
        let mut tx = loader.transaction().map_err(db)?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO restorations(tenant,created_us,expires_us,note) VALUES($1,$2,$3,$4) RETURNING id",
                &[&tenant.as_str(), &created_us, &expires_us, &note],
            )
            .map_err(db)?
            .get(0);
        tx.execute("SELECT pg_advisory_lock($1)", &[&self.restoration_lock(id)])
            .map_err(db)?;
        tx.batch_execute(&format!(
            "CREATE TABLE {t}(stream text NOT NULL, seq bigint NOT NULL, id bytea NOT NULL, ts bigint NOT NULL,
               received bigint NOT NULL, scope text NOT NULL, class smallint NOT NULL, pseudonym bytea, key_id bigint,
               plain text NOT NULL, body bytea, anonymized boolean NOT NULL, PRIMARY KEY(stream, seq))",
            t = table(id)
        ))
        .map_err(db)?;
        tx.commit().map_err(db)?;
        self.loading.lock().insert(id, (loader, tenant.clone()));
        Ok(id)
    }

    pub(super) fn restoration_add(&self, id: i64, records: &[StoredRecord]) -> Result<u64> {
        let mut loading = self.loading.lock();
        let (c, tenant) = loading
            .get_mut(&id)
            .ok_or_else(|| StoreError::Misuse(format!("restoration {id} is not being loaded by this process")))?;
        if let Some(r) = records.iter().find(|r| r.record.group.tenant != *tenant) {
            return Err(StoreError::Misuse(format!(
                "record {} of tenant {} cannot join a restoration of tenant {tenant}",
                r.seq, r.record.group.tenant
            )));
        }
        let mut tx = c.transaction().map_err(db)?;
        let st = tx
            .prepare(&format!(
                "INSERT INTO {}({COLUMNS}) VALUES($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12) ON CONFLICT DO NOTHING",
                table(id)
            ))
            .map_err(db)?;
        let mut n = 0;
        for r in records {
            let g = &r.record.group;
            n += tx
                .execute(
                    &st,
                    &[
                        &g.stream.to_string(),
                        &(r.seq as i64),
                        &&r.record.id[..],
                        &r.record.ts_us,
                        &r.record.received_us,
                        &g.scope,
                        &(g.classification.code() as i16),
                        &r.record.pseudonym.as_ref().map(|p| &p[..]),
                        &r.record.key_id,
                        &r.record.plain,
                        &r.record.body,
                        &r.anonymized,
                    ],
                )
                .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(n)
    }

    pub(super) fn restoration_finish(&self, id: i64, ledger_seq: u64) -> Result<Restoration> {
        let (mut c, _) = self
            .loading
            .lock()
            .remove(&id)
            .ok_or_else(|| StoreError::Misuse(format!("restoration {id} is not being loaded by this process")))?;
        finish(&mut c, id, ledger_seq as i64)?;
        let _ = c.batch_execute("SELECT pg_advisory_unlock_all()");
        drop(c);
        self.restoration_list_where("id=$1", &[&id])?
            .pop()
            .ok_or_else(|| StoreError::Corrupt(format!("no restoration {id}")))
    }

    /// Finishes restorations whose ledger entry was written and discards
    /// those a crashed or closed loader left, skipping any another node is
    /// still loading (it holds the restoration's advisory lock).
    pub(super) fn discard_abandoned_restorations(&self) -> Result<()> {
        let mut c = self.conn()?;
        let ids: Vec<i64> = c
            .query("SELECT id FROM restorations WHERE NOT finished ORDER BY id", &[])
            .map_err(db)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for id in ids {
            let key = self.restoration_lock(id);
            // A loader that just closed its connection may take a moment
            // to leave the server.
            let mut free = false;
            for _ in 0..10 {
                free = c
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                    .map_err(db)?
                    .get(0);
                if free {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            if !free {
                continue;
            }
            let seq: Option<i64> = c
                .query_opt("SELECT value FROM meta WHERE key=$1", &[&mark(id)])
                .map_err(db)?
                .and_then(|r| r.get::<_, String>(0).parse().ok());
            let done = match seq {
                Some(seq) => finish(&mut c, id, seq),
                None => {
                    let mut tx = c.transaction().map_err(db)?;
                    tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", table(id)))
                        .map_err(db)?;
                    tx.execute("DELETE FROM restorations WHERE id=$1", &[&id]).map_err(db)?;
                    tx.commit().map_err(db)
                }
            };
            c.execute("SELECT pg_advisory_unlock($1)", &[&key]).map_err(db)?;
            done?;
        }
        Ok(())
    }

    pub(super) fn restoration_list(&self, tenant: Option<&str>) -> Result<Vec<Restoration>> {
        self.restoration_list_where("finished AND ($1::text IS NULL OR tenant=$1)", &[&tenant])
    }

    fn restoration_list_where(&self, clause: &str, args: &[&(dyn ToSql + Sync)]) -> Result<Vec<Restoration>> {
        let mut c = self.conn()?;
        let rows = c
            .query(
                &format!(
                    "SELECT id,tenant,created_us,expires_us,records,note,ledger_seq,
                       coalesce(pg_total_relation_size(to_regclass('restored_r' || id)), 0)
                     FROM restorations WHERE {clause} ORDER BY id"
                ),
                args,
            )
            .map_err(db)?;
        Ok(rows
            .iter()
            .map(|r| Restoration {
                id: r.get(0),
                tenant: r.get(1),
                created_us: r.get(2),
                expires_us: r.get(3),
                records: r.get::<_, i64>(4) as u64,
                note: r.get(5),
                ledger_seq: r.get::<_, Option<i64>>(6).unwrap_or(0) as u64,
                bytes: r.get::<_, i64>(7) as u64,
            })
            .collect())
    }

    pub(super) fn restoration_query(
        &self,
        q: &RecordQuery,
        visit: &mut dyn FnMut(i64, StoredRecord) -> bool,
    ) -> Result<()> {
        let sets = self.restoration_list(Some(q.tenant.as_str()))?;
        let mut c = self.conn()?;
        let mut remaining = q.limit.unwrap_or(usize::MAX);
        let order = if q.ascending { "ASC" } else { "DESC" };
        for r in sets {
            if remaining == 0 {
                break;
            }
            let (mut sql, args) = filtered(
                &format!("SELECT {COLUMNS} FROM {} WHERE true", table(r.id)),
                q.stream.as_ref(),
                q.scope.as_deref(),
                q.pseudonym.as_slice(),
                q.since_us,
                q.until_us,
            );
            sql.push_str(&format!(" ORDER BY ts {order}, stream {order}, seq {order}"));
            if q.limit.is_some() {
                sql.push_str(&format!(" LIMIT {remaining}"));
            }
            let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref()).collect();
            for row in c.query(&sql, &refs).map_err(db)? {
                remaining = remaining.saturating_sub(1);
                if !visit(r.id, restored_row(&q.tenant, &row)?) {
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    pub(super) fn restoration_drop(&self, id: i64) -> Result<u64> {
        let Some(r) = self.restoration_list_where("id=$1 AND finished", &[&id])?.pop() else {
            return Ok(0);
        };
        let mut c = self.conn()?;
        let mut tx = c.transaction().map_err(db)?;
        tx.execute("DELETE FROM restorations WHERE id=$1", &[&id]).map_err(db)?;
        tx.batch_execute(&format!("DROP TABLE IF EXISTS {}", table(id)))
            .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(r.bytes)
    }

    pub(super) fn restoration_erase(&self, sel: &Selection, holds: &[HoldScope]) -> Result<u64> {
        let sets = self.restoration_list(Some(sel.tenant.as_str()))?;
        let mut c = self.conn()?;
        let tenant = sel.tenant.as_str();
        let mut n = 0;
        for r in sets {
            let (sql, args) = filtered(
                &format!(
                    "SELECT stream, seq, pseudonym, scope, ts FROM {} WHERE NOT anonymized",
                    table(r.id)
                ),
                sel.stream.as_ref(),
                sel.scope.as_deref(),
                &sel.pseudonyms,
                sel.since_us,
                sel.until_us,
            );
            let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref()).collect();
            let mut streams = Vec::new();
            let mut seqs = Vec::new();
            for row in c.query(&sql, &refs).map_err(db)? {
                let p: Option<[u8; 32]> = row.get::<_, Option<Vec<u8>>>(2).and_then(|v| v.try_into().ok());
                if !holds
                    .iter()
                    .any(|h| h.covers(tenant, p.as_ref(), row.get(3), row.get(4)))
                {
                    streams.push(row.get::<_, String>(0));
                    seqs.push(row.get::<_, i64>(1));
                }
            }
            if seqs.is_empty() {
                continue;
            }
            let mut tx = c.transaction().map_err(db)?;
            let what = match sel.action {
                Action::Delete => format!("DELETE FROM {} r", table(r.id)),
                Action::Anonymize => format!(
                    "UPDATE {} r SET pseudonym=NULL, key_id=NULL, body=NULL, anonymized=true",
                    table(r.id)
                ),
            };
            let using = match sel.action {
                Action::Delete => "USING",
                Action::Anonymize => "FROM",
            };
            let changed = tx
                .execute(
                    &format!(
                        "{what} {using} unnest($1::text[], $2::bigint[]) AS u(stream, seq)
                         WHERE r.stream=u.stream AND r.seq=u.seq"
                    ),
                    &[&streams, &seqs],
                )
                .map_err(db)?;
            if sel.action == Action::Delete {
                tx.execute(
                    "UPDATE restorations SET records=records-$2 WHERE id=$1",
                    &[&r.id, &(changed as i64)],
                )
                .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            n += changed;
        }
        Ok(n)
    }
}

/// Marks a loaded restoration finished (indexed, counted, visible) with
/// its ledger entry, and clears its bookkeeping mark, in one transaction.
fn finish(c: &mut Client, id: i64, ledger_seq: i64) -> Result<()> {
    let mut tx = c.transaction().map_err(db)?;
    let t = table(id);
    tx.batch_execute(&format!(
        "CREATE INDEX IF NOT EXISTS {t}_ts ON {t}(ts);
         CREATE INDEX IF NOT EXISTS {t}_subject ON {t}(pseudonym) WHERE pseudonym IS NOT NULL;"
    ))
    .map_err(db)?;
    let n: i64 = tx
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .map_err(db)?
        .get(0);
    tx.execute(
        "UPDATE restorations SET ledger_seq=$2, records=$3, finished=true WHERE id=$1",
        &[&id, &ledger_seq, &n],
    )
    .map_err(db)?;
    tx.execute("DELETE FROM meta WHERE key=$1", &[&mark(id)]).map_err(db)?;
    tx.commit().map_err(db)
}

/// `base` with the usual filters appended as ` AND …`, and their arguments.
fn filtered(
    base: &str,
    stream: Option<&StreamId>,
    scope: Option<&str>,
    pseudonyms: &[[u8; 32]],
    since_us: Option<i64>,
    until_us: Option<i64>,
) -> (String, Vec<Box<dyn ToSql + Sync>>) {
    let mut sql = base.to_string();
    let mut args: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    let mut arg = |sql: &mut String, cond: &str, v: Box<dyn ToSql + Sync>| {
        args.push(v);
        sql.push_str(&cond.replace('?', &format!("${}", args.len())));
    };
    if let Some(s) = stream {
        arg(&mut sql, " AND stream=?", Box::new(s.to_string()));
    }
    if let Some(s) = scope {
        arg(&mut sql, " AND scope=?", Box::new(s.to_string()));
    }
    if !pseudonyms.is_empty() {
        let ps: Vec<Vec<u8>> = pseudonyms.iter().map(|p| p.to_vec()).collect();
        arg(&mut sql, " AND pseudonym = ANY(?)", Box::new(ps));
    }
    if let Some(s) = since_us {
        arg(&mut sql, " AND ts>=?", Box::new(s));
    }
    if let Some(u) = until_us {
        arg(&mut sql, " AND ts<?", Box::new(u));
    }
    (sql, args)
}

fn restored_row(tenant: &TenantId, r: &postgres::Row) -> Result<StoredRecord> {
    let stream: String = r.get(0);
    let seq: i64 = r.get(1);
    let bad = || StoreError::Corrupt(format!("restored record {seq} of {tenant}/{stream}"));
    let id: Vec<u8> = r.get(2);
    let class: i16 = r.get(6);
    let pseudo: Option<Vec<u8>> = r.get(7);
    Ok(StoredRecord {
        seq: seq as u64,
        record: NewRecord {
            id: id.as_slice().try_into().map_err(|_| bad())?,
            group: GroupKey {
                tenant: tenant.clone(),
                stream: stream.parse::<StreamId>().map_err(|_| bad())?,
                scope: r.get(5),
                classification: Classification::from_code(class as u8).ok_or_else(bad)?,
            },
            ts_us: r.get(3),
            received_us: r.get(4),
            pseudonym: match pseudo {
                Some(p) => Some(p.as_slice().try_into().map_err(|_| bad())?),
                None => None,
            },
            key_id: r.get(8),
            plain: r.get(9),
            body: r.get(10),
        },
        anonymized: r.get(11),
        seal: None,
    })
}
