package cluster

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

// writeBoltLog makes an earlier release's DataDir/raft.db: a term, a vote
// and entries first..last (a compacted log starts above 1).
func writeBoltLog(t *testing.T, path string, first, last uint64) {
	t.Helper()
	s, err := raftboltdb.New(raftboltdb.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.SetUint64([]byte("LastVoteTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Set([]byte("LastVoteCand"), []byte("node-b")); err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := first; i <= last; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1 + i/50, Type: raft.LogCommand, Data: []byte(fmt.Sprintf("entry %d", i))})
	}
	if err := s.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
}

// checkLog fails unless s holds the term, the vote and entries first..last
// that writeBoltLog wrote.
func checkLog(t *testing.T, s *logStore, first, last uint64) {
	t.Helper()
	if term, err := s.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
		t.Errorf("CurrentTerm = %d, %v; want 7", term, err)
	}
	if term, err := s.GetUint64([]byte("LastVoteTerm")); err != nil || term != 7 {
		t.Errorf("LastVoteTerm = %d, %v; want 7", term, err)
	}
	if cand, err := s.Get([]byte("LastVoteCand")); err != nil || string(cand) != "node-b" {
		t.Errorf("LastVoteCand = %q, %v; want node-b", cand, err)
	}
	if f, _ := s.FirstIndex(); f != first {
		t.Errorf("FirstIndex = %d, want %d", f, first)
	}
	if l, _ := s.LastIndex(); l != last {
		t.Errorf("LastIndex = %d, want %d", l, last)
	}
	for i := first; i <= last; i++ {
		var l raft.Log
		if err := s.GetLog(i, &l); err != nil || l.Term != 1+i/50 || string(l.Data) != fmt.Sprintf("entry %d", i) {
			t.Fatalf("entry %d: %+v, %v", i, l, err)
		}
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// TestLogStoreMovesBoltLog: a DataDir of an earlier release (raft.db) is
// moved into raft-wal at the first start, with its term, vote and every
// entry; raft.db becomes a placeholder that bbolt (an older release)
// refuses, the original is kept, and the next start opens raft-wal as it
// is, with what was appended since.
func TestLogStoreMovesBoltLog(t *testing.T) {
	dir := t.TempDir()
	writeBoltLog(t, filepath.Join(dir, boltName), 31, 260)

	s, err := openLogStore(dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	checkLog(t, s, 31, 260)
	if err := s.StoreLogs([]*raft.Log{{Index: 261, Term: 9, Type: raft.LogCommand, Data: []byte("after")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	if b, err := os.ReadFile(filepath.Join(dir, boltName)); err != nil || !bytes.Equal(b, placeholder) {
		t.Fatalf("raft.db after the move: %q, %v; want the placeholder", b, err)
	}
	if _, err := bbolt.Open(filepath.Join(dir, boltName), 0o600, &bbolt.Options{Timeout: time.Second}); err == nil {
		t.Fatal("bbolt (an older release) opens the placeholder raft.db")
	}
	if !isBoltDB(filepath.Join(dir, boltKeptName)) {
		t.Fatalf("%s not kept", boltKeptName)
	}
	if _, err := os.Stat(filepath.Join(dir, walDirName+".migrating")); !os.IsNotExist(err) {
		t.Fatalf("the copy's directory is left: %v", err)
	}

	s, err = openLogStore(dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var l raft.Log
	if err := s.GetLog(261, &l); err != nil || string(l.Data) != "after" {
		t.Fatalf("entry 261 after a restart: %+v, %v (moved again from raft.db.before-wal?)", l, err)
	}
}

// TestLogStoreMoveCutShort: a start cut after raft.db was renamed aside
// but before raft-wal was in place (a half copy in raft-wal.migrating)
// copies again from raft.db.before-wal.
func TestLogStoreMoveCutShort(t *testing.T) {
	dir := t.TempDir()
	writeBoltLog(t, filepath.Join(dir, boltKeptName), 1, 120)
	if err := os.MkdirAll(filepath.Join(dir, walDirName+".migrating"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, walDirName+".migrating", "00000000000000000001-0000000000000001.wal"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := openLogStore(dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	checkLog(t, s, 1, 120)
}

// TestLogStoreFreshAndLocked: a new DataDir gets an empty raft-wal and the
// placeholder; a second store on the same DataDir (a second udmg-server)
// is refused (not left waiting), naming the DataDir, and gets it once the first is
// closed.
func TestLogStoreFreshAndLocked(t *testing.T) {
	dir := t.TempDir()
	s, err := openLogStore(dir, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	if l, _ := s.LastIndex(); l != 0 {
		t.Errorf("fresh LastIndex = %d", l)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, boltName)); !bytes.Equal(b, placeholder) {
		t.Errorf("fresh raft.db = %q, want the placeholder", b)
	}
	if _, err := openLogStore(dir, quietLog()); err == nil || !strings.Contains(err.Error(), "in use by another udmg-server") || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second store on one DataDir: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = openLogStore(dir, quietLog())
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	s.Close()
}
