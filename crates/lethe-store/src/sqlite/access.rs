//! API keys in the catalog: who may call the service, kept as keyed hashes.

use rusqlite::params;

use super::*;
use crate::AccessKey;

impl SqliteStore {
    pub(super) fn access_put(&self, k: &AccessKey) -> Result<()> {
        let cat = self.key_conn();
        let tenants = serde_json::to_string(&k.tenants).map_err(|e| StoreError::Misuse(e.to_string()))?;
        match cat.execute(
            "INSERT INTO access_keys(id,name,role,tenants,secret_hash,creator,created_us,expires_us)
             VALUES(?1,?2,?3,?4,?5,?6,?7,?8)",
            params![
                k.id,
                k.name,
                k.role,
                tenants,
                k.secret_hash,
                k.creator,
                k.created_us,
                k.expires_us
            ],
        ) {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                Err(StoreError::Misuse("an API key with this id exists".into()))
            }
            Err(e) => Err(db(e)),
        }
    }

    pub(super) fn access_list(&self) -> Result<Vec<AccessKey>> {
        let cat = self.key_conn();
        let mut st = cat
            .prepare_cached(
                "SELECT id,name,role,tenants,secret_hash,creator,created_us,expires_us,last_used_us,revoked_us
                 FROM access_keys ORDER BY created_us, id",
            )
            .map_err(db)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    AccessKey {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        role: r.get(2)?,
                        tenants: Vec::new(),
                        secret_hash: r.get(4)?,
                        creator: r.get(5)?,
                        created_us: r.get(6)?,
                        expires_us: r.get(7)?,
                        last_used_us: r.get(8)?,
                        revoked_us: r.get(9)?,
                    },
                    r.get::<_, String>(3)?,
                ))
            })
            .map_err(db)?;
        let mut out = Vec::new();
        for row in rows {
            let (mut k, tenants) = row.map_err(db)?;
            k.tenants = serde_json::from_str(&tenants)
                .map_err(|e| StoreError::Corrupt(format!("API key {}: tenant list: {e}", k.id)))?;
            out.push(k);
        }
        Ok(out)
    }

    pub(super) fn access_revoke(&self, id: &str, now_us: i64) -> Result<bool> {
        let cat = self.key_conn();
        let n = cat
            .execute(
                "UPDATE access_keys SET revoked_us=?2 WHERE id=?1 AND revoked_us IS NULL",
                params![id, now_us],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    pub(super) fn access_touch(&self, id: &str, now_us: i64) -> Result<()> {
        let cat = self.key_conn();
        cat.execute(
            "UPDATE access_keys SET last_used_us=?2 WHERE id=?1 AND (last_used_us IS NULL OR last_used_us < ?2)",
            params![id, now_us],
        )
        .map_err(db)?;
        Ok(())
    }
}
