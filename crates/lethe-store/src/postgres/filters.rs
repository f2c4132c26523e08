//! Subject filters on PostgreSQL: a Bloom filter of the pseudonyms each
//! partition holds (table `subject_filters`), extended with every append and
//! cached per process, so a subject's erasure reads only the partitions
//! that may hold the subject. Without them a subject lookup touched every
//! partition of the tenant — ~0.2 ms of planning and executor start-up
//! each, 180 ms for a tenant with two streams of a year's daily partitions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use postgres::GenericClient;

use super::{bucket_table, db, Part};
use crate::filter::{self, SubjectFilter};
use crate::Result;

/// Filters kept in memory at once; past this the cache starts over (a
/// filter is at least 64 bytes, typically a few KB).
const CACHED: usize = 50_000;

/// Filters by partition id with their version, as last read.
#[derive(Default)]
pub(super) struct FilterCache(Mutex<HashMap<i64, (i64, SubjectFilter)>>);

impl FilterCache {
    /// Of `parts`, those that may hold any of `pseudonyms`: a partition
    /// without a (valid) filter always may. Filters are read fresh: their
    /// versions are compared with the database's, and changed ones fetched.
    pub(super) fn candidates<'a>(
        &self,
        c: &mut impl GenericClient,
        parts: &'a [Part],
        pseudonyms: &[[u8; 32]],
    ) -> Result<Vec<&'a Part>> {
        let ids: Vec<i64> = parts.iter().map(|p| p.id).collect();
        let (have_ids, have_versions): (Vec<i64>, Vec<i64>) = {
            let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
            ids.iter()
                .filter_map(|id| cache.get(id).map(|(v, _)| (*id, *v)))
                .unzip()
        };
        // One round trip: every filter's version, and the bits of those
        // this process does not hold at that version.
        let rows = c
            .query(
                "SELECT f.partition_id, f.version, CASE WHEN h.version IS DISTINCT FROM f.version THEN f.bits END
                 FROM subject_filters f
                 LEFT JOIN unnest($2::bigint[], $3::bigint[]) AS h(id, version) ON h.id = f.partition_id
                 WHERE f.partition_id = ANY($1)",
                &[&ids, &have_ids, &have_versions],
            )
            .map_err(db)?;
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Room for this lookup's filters first, keeping those it uses:
        // starting the cache over in the middle of the loop below dropped
        // the filters read (or held at the current version) before, and
        // their partitions were searched as if they had none.
        let arriving = rows.iter().filter(|r| r.get::<_, Option<&[u8]>>(2).is_some()).count();
        if cache.len() + arriving > CACHED {
            let wanted: std::collections::HashSet<i64> = ids.iter().copied().collect();
            cache.retain(|id, _| wanted.contains(id));
        }
        let mut versions: HashMap<i64, i64> = HashMap::with_capacity(rows.len());
        for r in &rows {
            let (id, version, bits): (i64, i64, Option<Vec<u8>>) = (r.get(0), r.get(1), r.get(2));
            versions.insert(id, version);
            let Some(bits) = bits else { continue };
            // The version is the bits' checksum: a damaged filter is not
            // trusted (its partition is searched).
            match SubjectFilter::checked(bits, version) {
                Some(f) => cache.insert(id, (version, f)),
                None => cache.remove(&id),
            };
        }
        // A filter is used only at the version the database has now.
        Ok(parts
            .iter()
            .filter(|p| match (versions.get(&p.id), cache.get(&p.id)) {
                (Some(v), Some((have, f))) if v == have => pseudonyms.iter().any(|s| f.may_contain(s)),
                _ => true,
            })
            .collect())
    }
}

/// See [`crate::Store::filter_misses`]: the filter as the database has it
/// now, used only if its bits match their checksum (as lookups do).
pub(super) fn misses(c: &mut impl GenericClient, part: i64, pseudonyms: &[[u8; 32]]) -> Result<Vec<[u8; 32]>> {
    let row = c
        .query_opt(
            "SELECT version, bits FROM subject_filters WHERE partition_id=$1",
            &[&part],
        )
        .map_err(db)?;
    let filter = row.and_then(|r| SubjectFilter::checked(r.get(1), r.get(0)));
    Ok(filter.map_or_else(Vec::new, |f| f.misses(pseudonyms)))
}

/// [`misses`] of several partitions, with one read of their filters.
pub(super) fn misses_of(c: &mut impl GenericClient, asks: &[(i64, Vec<[u8; 32]>)]) -> Result<Vec<Vec<[u8; 32]>>> {
    let ids: Vec<i64> = asks.iter().map(|(p, _)| *p).collect();
    let filters: HashMap<i64, SubjectFilter> = c
        .query(
            "SELECT partition_id, version, bits FROM subject_filters WHERE partition_id = ANY($1)",
            &[&ids],
        )
        .map_err(db)?
        .iter()
        .filter_map(|r| Some((r.get(0), SubjectFilter::checked(r.get(2), r.get(1))?)))
        .collect();
    Ok(asks
        .iter()
        .map(|(p, subjects)| filters.get(p).map_or_else(Vec::new, |f| f.misses(subjects)))
        .collect())
}

/// Adds each partition's new pseudonyms to its filter, inside the append's
/// transaction, after its rows are written. The caller holds the row locks
/// of the partitions' chains, so no other writer changes these filters
/// meanwhile (a partition belongs to one chain). A filter may only ever
/// claim too much: removals never shrink it.
///
/// `added`: by partition, its bucket, whether this append created it, and
/// the pseudonyms it received.
pub(super) fn extend(
    tx: &mut postgres::Transaction<'_>,
    added: &BTreeMap<i64, (i64, bool, Vec<[u8; 32]>)>,
) -> Result<()> {
    if added.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = added.keys().copied().collect();
    let stored: HashMap<i64, Vec<u8>> = tx
        .query(
            "SELECT partition_id, bits FROM subject_filters WHERE partition_id = ANY($1)",
            &[&ids],
        )
        .map_err(db)?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let (mut put_ids, mut put_versions, mut put_bits) = (Vec::new(), Vec::new(), Vec::<Vec<u8>>::new());
    for (part, (bucket, created, subjects)) in added {
        let old = stored.get(part).cloned().and_then(SubjectFilter::from_bytes);
        let grown = old.as_ref().map(|o| {
            let mut f = o.clone();
            for s in subjects {
                f.insert(s);
            }
            f
        });
        let f = match (old, grown) {
            (Some(o), Some(f)) if f.as_bytes() == o.as_bytes() => continue,
            (_, Some(f)) if !f.crowded() => f,
            // A partition made by this append holds only this batch's.
            (None, None) if *created => filter::sized_for(subjects.iter()),
            // Crowded, or a partition older than filters: sized for every
            // subject the partition holds (this batch's rows are in it).
            _ => {
                let all: Vec<[u8; 32]> = tx
                    .query(
                        &format!(
                            "SELECT DISTINCT pseudonym FROM {} WHERE part=$1 AND pseudonym IS NOT NULL",
                            bucket_table(*bucket)
                        ),
                        &[part],
                    )
                    .map_err(db)?
                    .iter()
                    .filter_map(|r| r.get::<_, Vec<u8>>(0).try_into().ok())
                    .collect();
                filter::sized_for(all.iter().chain(subjects))
            }
        };
        put_ids.push(*part);
        put_versions.push(filter::version(f.as_bytes()));
        put_bits.push(f.as_bytes().to_vec());
    }
    if !put_ids.is_empty() {
        tx.execute(
            "INSERT INTO subject_filters(partition_id, version, bits)
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[])
             ON CONFLICT (partition_id) DO UPDATE SET version=EXCLUDED.version, bits=EXCLUDED.bits",
            &[&put_ids, &put_versions, &put_bits],
        )
        .map_err(db)?;
    }
    Ok(())
}
