//! Purge selections: the exact rows a subject's, a time range's or a scope's erasure selects, found through per-partition subject filters.

use std::collections::{BTreeMap, HashMap};

use lethe_core::hold::HoldScope;
use lethe_core::policy::Action;
use rusqlite::OptionalExtension;

use super::*;

impl SqliteStore {
    pub(super) fn select(&self, sel: &Selection, holds: &[HoldScope]) -> Result<Selected> {
        let mut inner = self.lock();
        let inner = &mut *inner;
        let tenant = sel.tenant.as_str();
        let stream = sel.stream.as_ref().map(|s| s.to_string());
        let since = sel.since_us.unwrap_or(i64::MIN);
        let until = sel.until_us.unwrap_or(i64::MAX);
        let parts = self.parts_where(
            &inner.cat,
            "tenant=?1 AND (?2 IS NULL OR stream=?2) AND end_us>?3 AND start_us<?4 AND state != 2
             ORDER BY stream, start_us",
            &[&tenant, &stream, &since, &until],
        )?;
        if !sel.pseudonyms.is_empty() && !sel.exhaustive {
            self.refresh_filters(inner, tenant)?;
        }
        let holds: Vec<&HoldScope> = holds.iter().filter(|h| h.tenant == tenant).collect();
        let mut heads: HashMap<String, u64> = HashMap::new();
        let mut groups: BTreeMap<(String, String), SelectedGroup> = BTreeMap::new();
        let mut chains: BTreeMap<(String, String), ChainRemoval> = BTreeMap::new();
        let mut found = std::collections::BTreeSet::new();
        let mut held_subjects = std::collections::BTreeSet::new();
        let mut later = 0u64;
        for p in &parts {
            let subjects: Vec<Option<[u8; 32]>> = if sel.pseudonyms.is_empty() {
                vec![None]
            } else if sel.exhaustive {
                sel.pseudonyms.iter().copied().map(Some).collect()
            } else {
                Self::candidates(inner, p.id, &sel.pseudonyms)
                    .into_iter()
                    .map(Some)
                    .collect()
            };
            // Every stream in range gets its head, searched or not: the
            // bound a later check of this selection uses must not leave a
            // stream out (its records would all count as later).
            let stream = p.stream.to_string();
            let max_seq = match heads.get(&stream) {
                Some(h) => *h,
                None => {
                    let h = Self::head(&inner.cat, tenant, &stream)?;
                    heads.insert(stream.clone(), h);
                    h
                }
            };
            if subjects.is_empty() {
                continue;
            }
            let bound = match &sel.stored_up_to {
                Some(b) => b.get(&stream).copied().unwrap_or(0),
                None => u64::MAX,
            };
            let f = partition::RowFilter {
                scope: sel.scope.as_deref(),
                since_us: since,
                until_us: until,
                max_seq,
                anonymize: sel.action == Action::Anonymize,
            };
            let fetch = |c: &Connection| -> Result<Vec<(Option<[u8; 32]>, partition::SelectedRow)>> {
                // Many candidate subjects here: one pass over the subject index.
                if subjects.len() > MANY_SUBJECTS {
                    let set: std::collections::HashSet<[u8; 32]> = subjects.iter().flatten().copied().collect();
                    return Ok(partition::select_rows_of(c, p.id, &set, &f)?
                        .into_iter()
                        .map(|r| (r.pseudonym, r))
                        .collect());
                }
                let mut all = Vec::new();
                for subject in &subjects {
                    all.extend(
                        partition::select_rows(c, p.id, subject.as_ref(), &f)?
                            .into_iter()
                            .map(|r| (*subject, r)),
                    );
                }
                Ok(all)
            };
            // Selections go through read-only connections kept between
            // purges, so a lookup costs an indexed read per partition — not
            // an open and a statement compile per file, nor churning the
            // writer's connection cache. (A heavy subject's preview visits
            // every daily partition of the year, ~730: through the writer's
            // cache of 32 open + 512 idle files it reopened every one of
            // them each time, ~1 s on the 10M bench store.)
            let c = self.lookup_conn(inner, p)?;
            let Some(c) = c else {
                continue;
            };
            let rows = fetch(c)?;
            let mut seqs = Vec::new();
            {
                for (subject, r) in rows {
                    if r.seq > bound {
                        later += 1;
                        continue;
                    }
                    let g = groups
                        .entry((stream.clone(), r.scope.clone()))
                        .or_insert_with(|| SelectedGroup {
                            stream: stream.clone(),
                            scope: r.scope.clone(),
                            ..SelectedGroup::default()
                        });
                    if let (Some(ps), Some(_)) = (r.pseudonym, subject) {
                        found.insert(ps);
                    }
                    if holds
                        .iter()
                        .any(|h| h.covers(tenant, r.pseudonym.as_ref(), &r.scope, r.ts))
                    {
                        g.held += 1;
                        if let (Some(ps), Some(_)) = (r.pseudonym, subject) {
                            held_subjects.insert(ps);
                        }
                        continue;
                    }
                    g.records += 1;
                    g.bytes += r.bytes;
                    g.oldest_us = Some(g.oldest_us.map_or(r.ts, |o| o.min(r.ts)));
                    g.newest_us = Some(g.newest_us.map_or(r.ts, |o| o.max(r.ts)));
                    seqs.push([r.seq, r.seq]);
                }
            }
            if !seqs.is_empty() {
                crate::plan::chain_entry(&mut chains, p.tenant.as_str(), &stream)
                    .rows
                    .push(RowRemoval {
                        partition_start_us: p.start,
                        action: sel.action,
                        seqs: crate::merge_ranges(seqs),
                    });
            }
        }
        Ok(Selected {
            groups: groups.into_values().collect(),
            chains: chains.into_values().collect(),
            found: found.into_iter().collect(),
            held_subjects: held_subjects.into_iter().collect(),
            heads: heads.into_iter().collect(),
            later,
        })
    }

    /// A partition's current subject filter (`None` if it has none, e.g.
    /// written by an older version: any subject may be in it).
    pub(super) fn subject_filter<'a>(&self, inner: &'a mut Inner, part: i64) -> Result<Option<&'a SubjectFilter>> {
        let version: Option<i64> = inner
            .cat
            .prepare_cached("SELECT version FROM subject_filters WHERE partition_id=?1")
            .map_err(db)?
            .query_row([part], |r| r.get(0))
            .optional()
            .map_err(db)?;
        make_room(inner, &[part]);
        self.load_filter(inner, part, version)?;
        Ok(inner.filters.get(&part).map(|(_, f)| f))
    }

    /// See [`crate::Store::filter_misses`]: the filter as the catalog has it
    /// now, used only if its bits match their checksum (as lookups do).
    pub(super) fn filter_misses(&self, part: i64, pseudonyms: &[[u8; 32]]) -> Result<Vec<[u8; 32]>> {
        let mut misses = self.filter_misses_of(&[(part, pseudonyms.to_vec())])?;
        Ok(misses.pop().unwrap_or_default())
    }

    /// See [`crate::Store::filter_misses_of`]: each partition's filter read
    /// once, with its checksum, in one statement per partition under one
    /// lock — and not through the lookup cache, which a verify of every
    /// chain would otherwise empty again and again (it holds 4,096
    /// filters; 100 tenants over a year have 73,000).
    pub(super) fn filter_misses_of(&self, asks: &[(i64, Vec<[u8; 32]>)]) -> Result<Vec<Vec<[u8; 32]>>> {
        let inner = self.lock();
        let mut st = inner
            .cat
            .prepare_cached("SELECT version, bits FROM subject_filters WHERE partition_id=?1")
            .map_err(db)?;
        let mut read: HashMap<i64, Option<SubjectFilter>> = HashMap::new();
        let mut out = Vec::with_capacity(asks.len());
        for (part, pseudonyms) in asks {
            if !read.contains_key(part) {
                let row: Option<(i64, Vec<u8>)> = st
                    .query_row([part], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .map_err(db)?;
                // A filter that fails its checksum is not used (the
                // partition is searched), as in a lookup.
                read.insert(*part, row.and_then(|(v, bits)| SubjectFilter::checked(bits, v)));
            }
            out.push(read[part].as_ref().map_or_else(Vec::new, |f| f.misses(pseudonyms)));
        }
        Ok(out)
    }

    /// Makes the cache hold version `version` of a partition's filter (or
    /// nothing), however full it is: callers make room first ([`make_room`]).
    fn load_filter(&self, inner: &mut Inner, part: i64, version: Option<i64>) -> Result<()> {
        let Some(v) = version else {
            inner.filters.remove(&part);
            return Ok(());
        };
        if inner.filters.get(&part).is_some_and(|(have, _)| *have == v) {
            return Ok(());
        }
        let bits: Option<Vec<u8>> = inner
            .cat
            .prepare_cached("SELECT bits FROM subject_filters WHERE partition_id=?1")
            .map_err(db)?
            .query_row([part], |r| r.get(0))
            .optional()
            .map_err(db)?;
        // The version is the filter's checksum: a filter whose bits do not
        // match it (damaged) is not used — the partition is searched.
        match bits.and_then(|b| SubjectFilter::checked(b, v)) {
            Some(f) => inner.filters.insert(part, (v, f)),
            None => inner.filters.remove(&part),
        };
        Ok(())
    }

    /// Brings the cached filters of a tenant's partitions up to date with
    /// one catalog query (plus a read of each filter that changed).
    pub(super) fn refresh_filters(&self, inner: &mut Inner, tenant: &str) -> Result<()> {
        let versions: Vec<(i64, Option<i64>)> = {
            let mut st = inner
                .cat
                .prepare_cached(
                    "SELECT p.id, f.version FROM partitions p LEFT JOIN subject_filters f ON f.partition_id = p.id
                     WHERE p.tenant = ?1",
                )
                .map_err(db)?;
            let rows = st.query_map([tenant], |r| Ok((r.get(0)?, r.get(1)?))).map_err(db)?;
            rows.collect::<std::result::Result<_, _>>().map_err(db)?
        };
        // Room for the whole tenant first, keeping what it already has.
        let parts: Vec<i64> = versions.iter().map(|(p, _)| *p).collect();
        make_room(inner, &parts);
        for (part, v) in versions {
            self.load_filter(inner, part, v)?;
        }
        Ok(())
    }

    /// Of `pseudonyms`, those that may have records in the partition.
    /// Filters must be fresh ([`Self::refresh_filters`]).
    pub(super) fn candidates(inner: &Inner, part: i64, pseudonyms: &[[u8; 32]]) -> Vec<[u8; 32]> {
        match inner.filters.get(&part) {
            Some((_, f)) => pseudonyms.iter().filter(|p| f.may_contain(p)).copied().collect(),
            None => pseudonyms.to_vec(),
        }
    }

    /// A partition's subject filter with `added` in it, ready to store: the
    /// stored one extended, or (when there is none, or it is crowded) one
    /// built from every pseudonym in the partition file. `None` when the
    /// stored filter already has every bit of `added` set — nothing to
    /// write (most batches of a busy partition bring subjects it has).
    pub(super) fn extended_filter(
        &self,
        inner: &mut Inner,
        p: &Part,
        added: &[[u8; 32]],
    ) -> Result<Option<SubjectFilter>> {
        if let Some(old) = self.subject_filter(inner, p.id)? {
            let mut f = old.clone();
            for a in added {
                f.insert(a);
            }
            if f.as_bytes() == old.as_bytes() {
                return Ok(None);
            }
            if !f.crowded() {
                return Ok(Some(f));
            }
        }
        let all = partition::pseudonyms(self.conn(inner, p, false)?, p.id)?;
        Ok(Some(filter::sized_for(all.iter().chain(added))))
    }
}

/// Makes room in the filter cache for the filters of `parts`, keeping
/// those it already holds: when they would not fit beside the rest, the rest
/// goes. Done once before a batch of loads, never in the middle of one —
/// starting the cache over half-way dropped the filters just loaded, and a
/// lookup then searched each of those files (up to 730 opens, 0.26 s, for a
/// subject with no records on 100 tenants over a year). `parts` larger than
/// the cache are kept whole.
fn make_room(inner: &mut Inner, parts: &[i64]) {
    if inner.filters.len() + parts.len() > CACHED_FILTERS {
        let wanted: std::collections::HashSet<i64> = parts.iter().copied().collect();
        inner.filters.retain(|p, _| wanted.contains(p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The partitions of `tenant` that have a stored filter.
    fn filtered_partitions(s: &SqliteStore, tenant: &str) -> Vec<i64> {
        let inner = s.lock();
        let mut st = inner
            .cat
            .prepare(
                "SELECT p.id FROM partitions p JOIN subject_filters f ON f.partition_id = p.id WHERE p.tenant = ?1",
            )
            .unwrap();
        let ids = st.query_map([tenant], |r| r.get(0)).unwrap();
        ids.collect::<std::result::Result<_, _>>().unwrap()
    }

    #[test]
    fn refreshing_a_tenants_filters_keeps_every_one_of_them_when_the_cache_overflows() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path(), 86_400).unwrap();
        crate::testsuite::random_store(&s, 5, 2000);
        let (acme, beta) = (filtered_partitions(&s, "acme"), filtered_partitions(&s, "beta"));
        // Each tenant fits the cache, the two together do not.
        assert!(acme.len() <= CACHED_FILTERS && beta.len() <= CACHED_FILTERS);
        assert!(
            acme.len() + beta.len() > CACHED_FILTERS,
            "{} + {}",
            acme.len(),
            beta.len()
        );
        for (tenant, parts) in [("acme", &acme), ("beta", &beta), ("acme", &acme)] {
            let mut inner = s.lock();
            s.refresh_filters(&mut inner, tenant).unwrap();
            let missing = parts.iter().filter(|p| !inner.filters.contains_key(p)).count();
            assert_eq!(missing, 0, "{tenant}: {missing} of {} filters not cached", parts.len());
            assert!(inner.filters.len() <= CACHED_FILTERS);
        }
    }
}
