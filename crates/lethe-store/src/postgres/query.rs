//! Reading records and counts back on PostgreSQL: queries of one tenant,
//! stats from the catalog, record lookup by id.

use std::collections::{BTreeMap, HashMap};

use lethe_core::policy::GroupKey;
use lethe_core::TenantId;
use postgres::types::ToSql;

use super::chain::{columns_of, raw_row_at};
use super::{db, group_key, PgStore};
use crate::{CaptureDrop, GroupStats, RecordQuery, Result, StoredRecord};

impl PgStore {
    pub(super) fn query(&self, q: &RecordQuery, visit: &mut dyn FnMut(StoredRecord) -> bool) -> Result<()> {
        let mut c = self.conn()?;
        let stream = q.stream.as_ref().map(|s| s.to_string());
        let since = q.since_us.unwrap_or(i64::MIN);
        let until = q.until_us.unwrap_or(i64::MAX);
        let order = if q.ascending { "ASC" } else { "DESC" };
        let parts = Self::parts_where(
            &mut *c,
            &format!(
                "tenant=$1 AND ($2::text IS NULL OR stream=$2) AND end_us>$3 AND start_us<$4 ORDER BY start_us {order}, stream"
            ),
            &[&q.tenant.as_str(), &stream, &since, &until],
        )?;
        let mut remaining = q.limit.unwrap_or(usize::MAX);
        let mut i = 0;
        let cols = columns_of("r");
        while i < parts.len() && remaining > 0 {
            // Partitions with the same start overlap in time: read them together.
            let j = parts[i..]
                .iter()
                .position(|p| p.start != parts[i].start)
                .map_or(parts.len(), |k| i + k);
            let ids: Vec<i64> = parts[i..j].iter().map(|p| p.id).collect();
            let buckets: Vec<i64> = parts[i..j].iter().map(|p| p.bucket).collect();
            let mut sql = format!(
                "SELECT p.stream, {cols} FROM records r JOIN partitions p ON p.id = r.part
                 WHERE r.bucket = ANY($1) AND r.part = ANY($2) AND r.state < 2"
            );
            let mut args: Vec<Box<dyn ToSql + Sync>> = vec![Box::new(buckets), Box::new(ids)];
            let mut arg = |sql: &mut String, cond: &str, v: Box<dyn ToSql + Sync>| {
                args.push(v);
                sql.push_str(&format!(" AND {cond}${}", args.len()));
            };
            if let Some(s) = &q.scope {
                arg(&mut sql, "r.scope=", Box::new(s.clone()));
            }
            if let Some(p) = &q.pseudonym {
                arg(&mut sql, "r.pseudonym=", Box::new(p.to_vec()));
            }
            if let Some(s) = q.since_us {
                arg(&mut sql, "r.ts>=", Box::new(s));
            }
            if let Some(u) = q.until_us {
                arg(&mut sql, "r.ts<", Box::new(u));
            }
            sql.push_str(&format!(" ORDER BY r.ts {order}, p.stream {order}, r.seq {order}"));
            if q.limit.is_some() {
                sql.push_str(&format!(" LIMIT {remaining}"));
            }
            let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref()).collect();
            let rows = c.query(&sql, &refs).map_err(db)?;
            for r in &rows {
                let stream: String = r.get(0);
                let p = parts[i..j]
                    .iter()
                    .find(|p| p.stream.to_string() == stream)
                    .expect("a row of a partition read");
                let raw = raw_row_at(r, 1);
                remaining -= 1;
                if !visit(raw.into_stored(&p.tenant, &p.stream)) {
                    return Ok(());
                }
                if remaining == 0 {
                    break;
                }
            }
            i = j;
        }
        Ok(())
    }

    pub(super) fn stats(&self, tenant: Option<&TenantId>) -> Result<Vec<GroupStats>> {
        let mut c = self.conn()?;
        // Every tenant's groups are read, whoever asks: a bucket holds
        // partitions of every tenant, and its bytes are split over all the
        // groups in it by record share (tombstones count: they take room).
        let rows = c
            .query(
                "SELECT p.tenant, p.stream, p.bucket, g.scope, g.class, g.records, g.anonymized, g.min_ts, g.max_ts,
                        g.deleted
                 FROM partitions p JOIN partition_groups g ON g.partition_id = p.id",
                &[],
            )
            .map_err(db)?;
        let sizes: HashMap<i64, u64> = c
            .query(
                "SELECT id, coalesce(pg_total_relation_size(to_regclass('records_b' || id)), 0) FROM buckets WHERE state=0",
                &[],
            )
            .map_err(db)?
            .iter()
            .map(|r| (r.get::<_, i64>(0), r.get::<_, i64>(1) as u64))
            .collect();
        let mut files: HashMap<i64, (i64, usize)> = HashMap::new();
        for r in &rows {
            let f = files.entry(r.get(2)).or_default();
            f.0 += r.get::<_, i64>(5) + r.get::<_, i64>(9);
            f.1 += 1;
        }
        let mut out: BTreeMap<GroupKey, GroupStats> = BTreeMap::new();
        let mut given: HashMap<i64, (u64, u64, usize, GroupKey)> = HashMap::new();
        for r in &rows {
            let t: String = r.get(0);
            if tenant.is_some_and(|want| want.as_str() != t) {
                continue;
            }
            let (bucket, n, anon, deleted): (i64, i64, i64, i64) = (r.get(2), r.get(5), r.get(6), r.get(9));
            let (min, max): (Option<i64>, Option<i64>) = (r.get(7), r.get(8));
            let key = group_key(&t, r.get(1), r.get(3), r.get(4))?;
            let g = given
                .entry(bucket)
                .or_insert_with(|| (sizes.get(&bucket).copied().unwrap_or(0), 0, 0, key.clone()));
            let total = files[&bucket].0.max(1);
            let share = (g.0 as u128 * (n + deleted) as u128 / total as u128) as u64;
            g.1 += share;
            g.2 += 1;
            g.3 = key.clone();
            let e = out.entry(key.clone()).or_insert(GroupStats {
                key,
                records: 0,
                anonymized: 0,
                oldest_us: None,
                newest_us: None,
                tombstones: 0,
                partitions: 0,
                bytes: 0,
            });
            e.records += n as u64;
            e.tombstones += deleted as u64;
            e.anonymized += anon as u64;
            e.partitions += 1;
            e.bytes += share;
            e.oldest_us = match (e.oldest_us, min) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            e.newest_us = match (e.newest_us, max) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        for (bucket, (bytes, sum, counted, last)) in given {
            if counted == files[&bucket].1 {
                if let Some(e) = out.get_mut(&last) {
                    e.bytes += bytes.saturating_sub(sum);
                }
            }
        }
        Ok(out.into_values().collect())
    }

    /// See [`crate::Store::groups`]: the groups each chain has held
    /// (`chain_groups`) that some partition still holds, found by an index
    /// probe per chain's partitions that stops at the first. Reading the
    /// distinct groups of every partition took half a second on 100 tenants
    /// over a year (272,000 partition-group rows); the statistics would send
    /// them all to this process.
    pub(super) fn groups(&self, tenant: Option<&TenantId>) -> Result<Vec<GroupKey>> {
        let mut c = self.conn()?;
        // LATERAL … LIMIT 1 keeps it a loop of probes: as EXISTS the
        // planner may hash every partition's groups instead.
        let rows = c
            .query(
                "SELECT cg.tenant, cg.stream, cg.scope, cg.class FROM chain_groups cg
                 CROSS JOIN LATERAL (SELECT 1 FROM partitions p JOIN partition_groups g
                     ON g.partition_id = p.id AND g.scope = cg.scope AND g.class = cg.class
                   WHERE p.tenant = cg.tenant AND p.stream = cg.stream LIMIT 1) AS held
                 WHERE $1::text IS NULL OR cg.tenant = $1",
                &[&tenant.map(|t| t.as_str())],
            )
            .map_err(db)?;
        let mut out = rows
            .iter()
            .map(|r| group_key(r.get(0), r.get(1), r.get(2), r.get(3)))
            .collect::<Result<Vec<_>>>()?;
        out.sort();
        Ok(out)
    }

    pub(super) fn capture_drops(&self) -> Result<Vec<CaptureDrop>> {
        let mut c = self.conn()?;
        let rows = c
            .query(
                "SELECT tenant,stream,scope,class,count FROM capture_drops ORDER BY 1,2,3,4",
                &[],
            )
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(CaptureDrop {
                    key: group_key(r.get(0), r.get(1), r.get(2), r.get(3))?,
                    count: r.get::<_, i64>(4) as u64,
                })
            })
            .collect()
    }

    pub(super) fn disk_bytes(&self) -> Result<u64> {
        let mut c = self.conn()?;
        let r = c
            .query_one(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c
                 JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')",
                &[&self.schema],
            )
            .map_err(db)?;
        Ok(r.get::<_, i64>(0) as u64)
    }

    pub(super) fn locate(&self, id: &[u8; 16]) -> Result<Option<(String, String, u64)>> {
        let mut c = self.conn()?;
        let parts = Self::parts_where(&mut *c, "true ORDER BY start_us DESC", &[])?;
        for p in parts {
            let r = c
                .query_opt(
                    "SELECT seq FROM records WHERE bucket=$1 AND part=$2 AND id=$3",
                    &[&p.bucket, &p.id, &&id[..]],
                )
                .map_err(db)?;
            if let Some(r) = r {
                return Ok(Some((
                    p.tenant.to_string(),
                    p.stream.to_string(),
                    r.get::<_, i64>(0) as u64,
                )));
            }
        }
        Ok(None)
    }
}
