package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/migrate"
	"go.etcd.io/bbolt"
)

// The node's Raft log and stable store live in DataDir/raft-wal
// (hashicorp/raft-wal: append-only segment files, one fdatasync per batch
// of entries). Earlier releases kept them in DataDir/raft.db
// (raft-boltdb), whose every commit costs two fdatasyncs (the pages, then
// the meta page) and, measured here, about 2.5 times the CPU and the
// latency of a raft-wal append; a renewal is such a commit, so the lease
// waits on it. A raft.db found at start-up is copied into raft-wal once
// (migrateBoltLog) and kept as raft.db.before-wal.
const (
	walDirName   = "raft-wal"
	boltName     = "raft.db"
	boltKeptName = "raft.db.before-wal"
	lockName     = "raft.lock"

	// segmentSize is the size of each log segment, allocated when the
	// segment starts (raft-wal's default is 64 MiB). The log keeps a
	// snapshot's worth of entries (SnapshotThreshold 4096 beyond
	// TrailingLogs 2048, a few MB): two segments of 16 MiB hold it.
	segmentSize = 16 << 20
)

// placeholder is what DataDir/raft.db holds once the log is in raft-wal:
// an older udmg-server refuses it (bbolt: "invalid database") instead of
// starting on an empty log beside this one's snapshots, with a term and a
// vote forgotten.
var placeholder = []byte("udmg-server: this DataDir's Raft log is in raft-wal/ (moved from raft.db, kept as raft.db.before-wal).\n" +
	"This file stops an older udmg-server, which reads raft.db, from starting on this DataDir.\n")

// logStore is the node's raft.LogStore and raft.StableStore, holding the
// DataDir's lock until it is closed.
type logStore struct {
	*wal.WAL
	meta *metadb.BoltMetaDB
	lock *os.File
}

// Close closes the log and releases the DataDir.
func (s *logStore) Close() error {
	err := errors.Join(s.WAL.Close(), s.meta.Close())
	s.lock.Close()
	return err
}

// openWAL opens the raft-wal in dir. WAL.Close leaves the metadata
// database (bbolt) open, and with it bbolt's flock, which a second open in
// this process would wait for without end: the caller closes meta.
func openWAL(dir string, log *slog.Logger) (*wal.WAL, *metadb.BoltMetaDB, error) {
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(dir, wal.WithMetaStore(meta), wal.WithSegmentSize(segmentSize), wal.WithLogger(newHCLogger(log, "raft-wal")))
	if err != nil {
		meta.Close()
		return nil, nil, fmt.Errorf("open the Raft log %s: %w", dir, err)
	}
	return w, meta, nil
}

// openLogStore locks dataDir for this process (a second udmg-server on it
// is refused, not left waiting), moves an earlier release's raft.db into
// raft-wal, and opens raft-wal.
func openLogStore(dataDir string, log *slog.Logger) (*logStore, error) {
	lock, err := lockDataDir(dataDir)
	if err != nil {
		return nil, err
	}
	s, err := func() (*logStore, error) {
		dir := filepath.Join(dataDir, walDirName)
		if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			if err := migrateBoltLog(dataDir, log); err != nil {
				return nil, err
			}
			if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
				return nil, fmt.Errorf("create %s: %w", dir, err)
			}
		}
		if err := keepOldReleasesOut(dataDir); err != nil {
			return nil, err
		}
		w, meta, err := openWAL(dir, log)
		if err != nil {
			return nil, err
		}
		return &logStore{WAL: w, meta: meta, lock: lock}, nil
	}()
	if err != nil {
		lock.Close()
	}
	return s, err
}

// lockDataDir takes an exclusive flock on DataDir/raft.lock, held while
// the file stays open (and given back by the kernel if the process dies).
func lockDataDir(dataDir string) (*os.File, error) {
	path := filepath.Join(dataDir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock the DataDir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("DataDir %s is in use by another udmg-server (%s is locked)", dataDir, path)
		}
		return nil, fmt.Errorf("lock the DataDir: flock %s: %w", path, err)
	}
	return f, nil
}

// migrateBoltLog copies an earlier release's raft.db (term, vote and
// every log entry) into DataDir/raft-wal. The copy is made in a
// directory of its own and renamed into place when complete, so a crash
// part-way leaves raft.db (or, after its rename, raft.db.before-wal) to
// copy again at the next start. Nothing to copy: nothing done.
func migrateBoltLog(dataDir string, log *slog.Logger) error {
	src := filepath.Join(dataDir, boltName)
	if !isBoltDB(src) {
		src = filepath.Join(dataDir, boltKeptName)
		if !isBoltDB(src) {
			return nil
		}
	}
	start := time.Now()
	tmp := filepath.Join(dataDir, walDirName+".migrating")
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("move the Raft log to raft-wal: %w", err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fmt.Errorf("move the Raft log to raft-wal: %w", err)
	}
	entries, err := copyBoltLog(src, tmp, log)
	if err != nil {
		return fmt.Errorf("move the Raft log from %s to raft-wal: %w", src, err)
	}
	if src == filepath.Join(dataDir, boltName) {
		if err := os.Rename(src, filepath.Join(dataDir, boltKeptName)); err != nil {
			return fmt.Errorf("move the Raft log to raft-wal: %w", err)
		}
	}
	if err := os.Rename(tmp, filepath.Join(dataDir, walDirName)); err != nil {
		return fmt.Errorf("move the Raft log to raft-wal: %w", err)
	}
	if err := syncDir(dataDir); err != nil {
		return fmt.Errorf("move the Raft log to raft-wal: %w", err)
	}
	log.Info("raft log moved from raft.db to raft-wal", "entries", entries,
		"took", time.Since(start).Round(time.Millisecond), "kept", filepath.Join(dataDir, boltKeptName))
	return nil
}

// copyBoltLog copies the bolt store at src into a new raft-wal in dir.
func copyBoltLog(src, dir string, log *slog.Logger) (entries uint64, err error) {
	old, err := raftboltdb.New(raftboltdb.Options{Path: src, BoltOptions: &bbolt.Options{Timeout: 2 * time.Second}})
	if err != nil {
		return 0, fmt.Errorf("open %s: %w (is another udmg-server using this DataDir?)", src, err)
	}
	defer old.Close()
	dst, meta, err := openWAL(dir, log)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := errors.Join(dst.Close(), meta.Close()); err == nil {
			err = cerr
		}
	}()
	// Raft's own keys; one never set (a node that never voted) stays
	// unset. The numbers go through GetUint64/SetUint64: the two stores
	// encode them in opposite byte orders.
	for _, k := range []string{"CurrentTerm", "LastVoteTerm"} {
		v, err := old.GetUint64([]byte(k))
		if errors.Is(err, raftboltdb.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("read %s: %w", k, err)
		}
		if err := dst.SetUint64([]byte(k), v); err != nil {
			return 0, fmt.Errorf("write %s: %w", k, err)
		}
	}
	if v, err := old.Get([]byte("LastVoteCand")); err == nil {
		if err := dst.Set([]byte("LastVoteCand"), v); err != nil {
			return 0, fmt.Errorf("write LastVoteCand: %w", err)
		}
	} else if !errors.Is(err, raftboltdb.ErrKeyNotFound) {
		return 0, fmt.Errorf("read LastVoteCand: %w", err)
	}
	first, err := old.FirstIndex()
	if err != nil {
		return 0, err
	}
	last, err := old.LastIndex()
	if err != nil || last == 0 {
		return 0, err
	}
	if err := migrate.CopyLogs(context.Background(), dst, old, 1<<20, nil); err != nil {
		return 0, err
	}
	return last - first + 1, nil
}

// keepOldReleasesOut makes DataDir/raft.db the placeholder (written to a
// temporary name and renamed, so it is never half there).
func keepOldReleasesOut(dataDir string) error {
	path := filepath.Join(dataDir, boltName)
	if b, err := os.ReadFile(path); err == nil && bytes.Equal(b, placeholder) {
		return nil
	}
	if isBoltDB(path) {
		// raft-wal is in place, but raft.db came back (restored from a
		// backup, or an older release started once on this DataDir):
		// it is not the log, keep it aside rather than lose it.
		if err := os.Rename(path, path+".stale"); err != nil {
			return fmt.Errorf("put %s aside: %w", path, err)
		}
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, placeholder, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return syncDir(dataDir)
}

// isBoltDB says whether path is a bbolt database (its first meta page
// carries bbolt's magic number).
func isBoltDB(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var head [32]byte
	if _, err := f.ReadAt(head[:], 0); err != nil {
		return false
	}
	// page header (16 bytes), then meta: magic uint32 0xED0CDAED.
	return bytes.Equal(head[16:20], []byte{0xED, 0xDA, 0x0C, 0xED})
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// logStore is what raft needs of it: a log that only appends (raft-wal
// refuses a gap, so after installing a snapshot raft must empty it
// first), and a stable store.
var (
	_ raft.MonotonicLogStore = (*logStore)(nil)
	_ raft.StableStore       = (*logStore)(nil)
)
