package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// TestSecureDataDir: a DataDir left by an earlier release with 0755
// directories and 0644 files is tightened to 0700/0600, symbolic links and
// a GatewayHome inside it are left alone.
func TestSecureDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "node")
	home := filepath.Join(dir, "home")
	for _, d := range []string{filepath.Join(dir, "snapshots", "1-2-3"), filepath.Join(home, "alice")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := []string{"raft.db", "udmg.db", "udmg.db-wal", "node-id", "snapshots/1-2-3/state.bin"}
	for _, f := range append(files, "home/alice/upload.csv") {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	outside := filepath.Join(t.TempDir(), "outside.txt")
	if err := os.WriteFile(outside, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := secureDataDir(dir, home); err != nil {
		t.Fatal(err)
	}
	mode := func(p string) fs.FileMode {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode().Perm()
	}
	for _, d := range []string{dir, filepath.Join(dir, "snapshots"), filepath.Join(dir, "snapshots", "1-2-3")} {
		if m := mode(d); m != 0o700 {
			t.Errorf("%s: %o, want 700", d, m)
		}
	}
	for _, f := range files {
		if m := mode(filepath.Join(dir, f)); m != 0o600 {
			t.Errorf("%s: %o, want 600", f, m)
		}
	}
	if m := mode(outside); m != 0o644 {
		t.Errorf("the target of a symbolic link was changed: %o", m)
	}
	if m := mode(filepath.Join(home, "alice", "upload.csv")); m != 0o644 {
		t.Errorf("a file of GatewayHome inside DataDir was changed: %o", m)
	}
}

// TestDataDirModes: a real node's DataDir (Raft log, snapshots, embedded
// database, node ID, keys) is 0700 with every file 0600 once it runs.
func TestDataDirModes(t *testing.T) {
	c := ts.NewCluster(t, 1)
	p := c.WaitOneActive(60*time.Second, "")
	var bad []string
	if !ts.Eventually(20*time.Second, func() bool {
		bad = bad[:0]
		found := map[string]bool{}
		err := filepath.WalkDir(p.DataDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			info, err := d.Info()
			if err != nil {
				return err
			}
			found[d.Name()] = true
			want := fs.FileMode(0o600)
			if d.IsDir() {
				want = 0o700
			}
			if d.Type()&fs.ModeSymlink == 0 && info.Mode().Perm() != want {
				rel, _ := filepath.Rel(p.DataDir, path)
				bad = append(bad, rel+" "+info.Mode().Perm().String())
			}
			return nil
		})
		return err == nil && len(bad) == 0 && found["raft.db"] && found["udmg.db"] && found["node-id"]
	}) {
		t.Fatalf("DataDir %s: wrong modes %v (want directories 0700, files 0600, and raft.db, udmg.db, node-id present)", p.DataDir, bad)
	}
}
