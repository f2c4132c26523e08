//! Purge selections on PostgreSQL: the exact rows a subject's, a time
//! range's or a scope's erasure selects, through the subject index of each
//! partition's bucket.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use lethe_core::hold::HoldScope;
use lethe_core::policy::Action;

use super::PgStore;
use crate::row::{ANONYMIZED, DELETED};
use crate::{ChainRemoval, Result, RowRemoval, Selected, SelectedGroup, Selection};

impl PgStore {
    pub(super) fn select(&self, sel: &Selection, holds: &[HoldScope]) -> Result<Selected> {
        // A partition listed may be dropped by an expiry on another node
        // before its table is read: then its records are gone and a fresh
        // list no longer has it.
        super::while_buckets_drop("a selection", || self.select_once(sel, holds))
    }

    /// One attempt of [`Self::select`]; `None` when a partition it listed
    /// was dropped before it was read.
    fn select_once(&self, sel: &Selection, holds: &[HoldScope]) -> Result<Option<Selected>> {
        let mut c = self.conn()?;
        let tenant = sel.tenant.as_str();
        let stream = sel.stream.as_ref().map(|s| s.to_string());
        let since = sel.since_us.unwrap_or(i64::MIN);
        let until = sel.until_us.unwrap_or(i64::MAX);
        let parts = Self::parts_where(
            &mut *c,
            "tenant=$1 AND ($2::text IS NULL OR stream=$2) AND end_us>$3 AND start_us<$4 ORDER BY stream, start_us",
            &[&tenant, &stream, &since, &until],
        )?;
        let holds: Vec<&HoldScope> = holds.iter().filter(|h| h.tenant == tenant).collect();
        let target: i16 = if sel.action == Action::Anonymize {
            ANONYMIZED as i16
        } else {
            DELETED as i16
        };
        // Distinct: each is one probe per partition, and a row must come
        // back once.
        let pseudonyms: Vec<Vec<u8>> = sel
            .pseudonyms
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .map(|p| p.to_vec())
            .collect();
        let mut heads: HashMap<String, u64> = HashMap::new();
        let mut groups: BTreeMap<(String, String), SelectedGroup> = BTreeMap::new();
        let mut chains: BTreeMap<(String, String), ChainRemoval> = BTreeMap::new();
        let mut found = BTreeSet::new();
        let mut held_subjects = BTreeSet::new();
        let mut later = 0u64;
        let by_subject = !sel.pseudonyms.is_empty();
        // One statement, one round trip, over the child tables of the
        // selection's partitions themselves: a query per partition cost two
        // round trips and a plan each (hundreds per subject in a year of
        // daily partitions), and one over the parent with `bucket = ANY`
        // made the planner prune and plan every bucket (~0.3 ms each).
        let searched: Vec<&super::Part> = if by_subject && !sel.exhaustive {
            self.filters.candidates(&mut *c, &parts, &sel.pseudonyms)?
        } else {
            parts.iter().collect()
        };
        let mut all = Vec::new();
        let ids: Vec<(i64, i64)> = searched.iter().map(|p| (p.bucket, p.id)).collect();
        // The statements are written for the index that should serve them
        // whatever the bucket's statistics: a bucket not yet analyzed (all
        // of them just after a bulk load) estimates one row for any
        // (bucket, part) prefix, so every index ties and the planner read
        // whole partitions, checking the subjects as a filter (preview p50
        // 10 → 13–35 ms on the bench shape). A subject's rows: one probe of
        // the subject index per subject (a lateral subquery on plain
        // equality, kept apart by `OFFSET 0`), the time bounds written
        // `ts + 0` so no other index fits. A time range without subjects:
        // the (bucket, part, ts) prefix of the `ts` index.
        let ts = if by_subject { "ts + 0" } else { "ts" };
        let mut bounds = String::new();
        if sel.since_us.is_some() {
            bounds.push_str(&format!(" AND {ts} >= $3"));
        }
        if sel.until_us.is_some() {
            bounds.push_str(&format!(" AND {ts} < $4"));
        }
        let scope = if sel.scope.is_some() { " AND scope = $2" } else { "" };
        let columns = "part, seq, scope, ts, pseudonym, length(plain) + coalesce(octet_length(body), 0)";
        for sql in super::union_over(&ids, |table, bucket, id| {
            let partition = format!("bucket = {bucket} AND part = {id} AND state < $1{scope}{bounds}");
            if by_subject {
                format!(
                    "SELECT r.* FROM unnest($5::bytea[]) AS s(p) CROSS JOIN LATERAL
                       (SELECT {columns} FROM {table} WHERE {partition} AND pseudonym = s.p OFFSET 0) r"
                )
            } else {
                format!("SELECT {columns} FROM {table} WHERE {partition}")
            }
        }) {
            use postgres::types::Type;
            let rows = c.query_typed(
                &format!("{sql} ORDER BY 1, 2"),
                &[
                    (&target, Type::INT2),
                    (&sel.scope, Type::TEXT),
                    (&since, Type::INT8),
                    (&until, Type::INT8),
                    (&pseudonyms, Type::BYTEA_ARRAY),
                ],
            );
            match super::unless_gone(rows)? {
                Some(rows) => all.extend(rows),
                None => return Ok(None),
            }
        }
        let mut by_part: HashMap<i64, Vec<&postgres::Row>> = HashMap::new();
        for r in &all {
            by_part.entry(r.get(0)).or_default().push(r);
        }
        for p in &parts {
            let stream = p.stream.to_string();
            if !heads.contains_key(&stream) {
                let h = Self::head(&mut *c, tenant, &stream)?;
                heads.insert(stream.clone(), h);
            }
            let bound = match &sel.stored_up_to {
                Some(b) => b.get(&stream).copied().unwrap_or(0),
                None => u64::MAX,
            };
            let rows = by_part.remove(&p.id).unwrap_or_default();
            let mut seqs = Vec::new();
            for r in rows {
                let seq = r.get::<_, i64>(1) as u64;
                if seq > bound {
                    later += 1;
                    continue;
                }
                let scope: String = r.get(2);
                let ts: i64 = r.get(3);
                let ps: Option<[u8; 32]> = r.get::<_, Option<Vec<u8>>>(4).and_then(|v| v.try_into().ok());
                let g = groups
                    .entry((stream.clone(), scope.clone()))
                    .or_insert_with(|| SelectedGroup {
                        stream: stream.clone(),
                        scope: scope.clone(),
                        ..SelectedGroup::default()
                    });
                if let (Some(x), true) = (ps, by_subject) {
                    found.insert(x);
                }
                if holds.iter().any(|h| h.covers(tenant, ps.as_ref(), &scope, ts)) {
                    g.held += 1;
                    if let (Some(x), true) = (ps, by_subject) {
                        held_subjects.insert(x);
                    }
                    continue;
                }
                g.records += 1;
                g.bytes += r.get::<_, i32>(5) as u64;
                g.oldest_us = Some(g.oldest_us.map_or(ts, |o| o.min(ts)));
                g.newest_us = Some(g.newest_us.map_or(ts, |o| o.max(ts)));
                seqs.push([seq, seq]);
            }
            if !seqs.is_empty() {
                chains
                    .entry((p.tenant.to_string(), stream.clone()))
                    .or_insert_with(|| ChainRemoval {
                        tenant: p.tenant.to_string(),
                        stream: stream.clone(),
                        dropped: Vec::new(),
                        rows: Vec::new(),
                    })
                    .rows
                    .push(RowRemoval {
                        partition_start_us: p.start,
                        action: sel.action,
                        seqs: crate::merge_ranges(seqs),
                    });
            }
        }
        Ok(Some(Selected {
            groups: groups.into_values().collect(),
            chains: chains.into_values().collect(),
            found: found.into_iter().collect(),
            held_subjects: held_subjects.into_iter().collect(),
            heads: heads.into_iter().collect(),
            later,
        }))
    }
}
