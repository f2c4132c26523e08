"""Storage cost of what Lethe keeps for deleted records (docs/benchmarks.md).

Usage: python3 scripts/tombstone-cost.py DATA_DIR

Copies the newest partition of DATA_DIR, turns every row into a tombstone the
way a row-level delete does, vacuums, and prints bytes per record before and
after; then prints the sizes of sweep intents (range markers), segments and
kept Merkle heads in the catalog.
"""
import sqlite3, shutil, os, glob, sys
data = sys.argv[1]
parts = sorted(glob.glob(f"{data}/partitions/*/*/*.db"))
src = parts[-1]
tmp = "/tmp/tomb_test.db"
for suf in ["", "-wal", "-shm"]:
    if os.path.exists(tmp + suf): os.remove(tmp + suf)
shutil.copy(src, tmp)
c = sqlite3.connect(tmp)
c.execute("PRAGMA journal_mode=DELETE")
c.execute("VACUUM")
n = c.execute("SELECT count(*) FROM records").fetchone()[0]
live = os.path.getsize(tmp)
avg = c.execute("SELECT avg(length(id)+8+8+length(scope)+1+coalesce(length(pseudonym),0)+8+length(plain)+coalesce(length(body),0)+length(prev)+length(mac)) FROM records").fetchone()[0]
c.execute("UPDATE records SET plain='', body=NULL, pseudonym=NULL, key_id=NULL, state=2, redacted=randomblob(64)")
c.commit()
c.execute("VACUUM")
tomb = os.path.getsize(tmp)
print(f"partition {src}: {n} records; live file {live} B = {live/n:.0f} B/record (avg payload {avg:.0f} B);"
      f" all tombstones after VACUUM {tomb} B = {tomb/n:.0f} B/record")
cat = sqlite3.connect(f"{data}/catalog.db")
intents = cat.execute("SELECT count(*), coalesce(sum(length(body)),0) FROM ledger WHERE kind='sweep.intent'").fetchone()
nodes = cat.execute("SELECT count(*) FROM merkle_nodes").fetchone()[0]
segs = cat.execute("SELECT count(*) FROM segments").fetchone()[0]
ledger = cat.execute("SELECT count(*), sum(length(body)) FROM ledger").fetchone()
print(f"sweep intents: {intents[0]} entries, {intents[1]} B; merkle_nodes: {nodes} rows; segments: {segs} rows; ledger: {ledger[0]} entries, {ledger[1]} B of bodies")
