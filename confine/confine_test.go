package confine

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestGuard checks the layouts an operator can write: DataDir beside
// GatewayHome, DataDir and the key file inside it (relative, as in a
// ./data layout), and paths that reach them through ".." or symlinks.
func TestGuard(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	home := filepath.Join(dir, "data")
	for _, d := range []string{"data/node/raft", "data/alice/in", "keys"} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"data/passphrase.aes", "keys/kek", "data/alice/in/report.csv"} {
		if err := os.WriteFile(f, []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A user's symlinks into what is protected.
	if err := os.Symlink(filepath.Join(home, "node"), filepath.Join(home, "alice", "n")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../passphrase.aes", filepath.Join(home, "alice", "p.aes")); err != nil {
		t.Fatal(err)
	}
	g, err := New("./data/node", "keys/kek", "data/passphrase.aes", "")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
		tree       bool
		refused    bool
	}{
		{"DataDir itself", filepath.Join(home, "node"), false, true},
		{"a file under DataDir", filepath.Join(home, "node", "raft", "raft.db"), false, true},
		{"through ..", filepath.Join(home, "alice", "..", "node", "node-id"), false, true},
		{"the key file", filepath.Join(home, "passphrase.aes"), false, true},
		{"the operator key file", filepath.Join(dir, "keys", "kek"), false, true},
		{"a symlink to DataDir", filepath.Join(home, "alice", "n", "raft.db"), false, true},
		{"a symlink to the key file", filepath.Join(home, "alice", "p.aes"), false, true},
		{"a relative path into DataDir", "data/node/x", false, true},
		{"an ordinary file", filepath.Join(home, "alice", "in", "report.csv"), false, false},
		{"a file not written yet", filepath.Join(home, "alice", "in", "new", "f.bin"), false, false},
		{"named like the key elsewhere", filepath.Join(home, "alice", "passphrase.aes"), false, false},
		{"GatewayHome as a file's directory", home, false, false},
		{"a home containing DataDir", home, true, true},
		{"a home containing the key file", home, true, true},
		{"an ordinary home", filepath.Join(home, "alice", "in"), true, false},
		{"a home that is the key file", filepath.Join(home, "passphrase.aes"), true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			check := g.File
			if tc.tree {
				check = g.Tree
			}
			err := check(tc.path)
			if tc.refused != (err != nil) {
				t.Fatalf("check(%s) = %v, refused want %v", tc.path, err, tc.refused)
			}
			if err != nil && !errors.Is(err, ErrProtected) {
				t.Errorf("error %v is not ErrProtected", err)
			}
		})
	}
	// A symlink swapped in after the path check: the opened file is
	// recognised as the key file.
	fi, err := os.Stat(filepath.Join(home, "alice", "p.aes"))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Opened("alice/p.aes", fi); !errors.Is(err, ErrProtected) {
		t.Errorf("Opened(the key file through a symlink) = %v, want ErrProtected", err)
	}
	fi, _ = os.Stat(filepath.Join(home, "alice", "in", "report.csv"))
	if err := g.Opened("alice/in/report.csv", fi); err != nil {
		t.Errorf("Opened(an ordinary file) = %v", err)
	}
	var none *Guard
	if none.File(filepath.Join(home, "node")) != nil || none.Tree(home) != nil {
		t.Error("a nil Guard refused a path")
	}
}
