package tasks

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCopyIdempotent: a COPY run twice, and a COPY rerun over the partial
// temporary file a crash left, both end with one whole copy.
func TestCopyIdempotent(t *testing.T) {
	h := newHome(t)
	h.put("in/a.txt", "hello")
	f := facts("in/a.txt")
	args := map[string]any{"path": "backup/#DATE#"}
	r := h.run("COPY", args, f)
	if r.Path != "" {
		t.Errorf("COPY moved the chain to %q", r.Path)
	}
	// A crash in the middle of the second copy: half a temp file.
	h.put("backup/20261201/.a.txt.42.tmp", "hel")
	h.run("COPY", args, f)
	if got := h.read("backup/20261201/a.txt"); got != "hello" {
		t.Errorf("copy holds %q", got)
	}
	if h.read("in/a.txt") != "hello" {
		t.Error("the original changed")
	}
	h.noTemps()
}

// TestMoveIdempotent covers MOVE's crash points: before the rename (a
// plain rerun), after the rename but before the task's end was recorded
// (source gone, destination there), and a file lost (both gone).
func TestMoveIdempotent(t *testing.T) {
	h := newHome(t)
	h.put("in/a.txt", "hello")
	f := facts("in/a.txt")
	args := map[string]any{"path": "done"}
	r := h.run("MOVE", args, f)
	if r.Path != filepath.Join("done", "a.txt") || h.exists("in/a.txt") || h.read("done/a.txt") != "hello" {
		t.Fatalf("MOVE = %+v; source there %v", r, h.exists("in/a.txt"))
	}
	// The runner did not record the end: it runs MOVE again on the old path.
	r2 := h.run("MOVE", args, f)
	if r2.Path != r.Path || !strings.Contains(r2.Output, "already moved") {
		t.Errorf("rerun = %+v, want the same path, already moved", r2)
	}
	if h.read("done/a.txt") != "hello" {
		t.Error("the moved file changed on the rerun")
	}
	if err := os.Remove(filepath.Join(h.dir, "done/a.txt")); err != nil {
		t.Fatal(err)
	}
	h.fail("MOVE", args, f, "neither in/a.txt nor done/a.txt exists")
}

// TestRenameIdempotent: RENAME to a path with variables, run twice.
func TestRenameIdempotent(t *testing.T) {
	h := newHome(t)
	h.put("in/a.txt", "hello")
	f := facts("in/a.txt")
	args := map[string]any{"path": "out/#PARTNER#-#TRANSFERID#-#TRUEFILENAME#"}
	for range 2 {
		r := h.run("RENAME", args, f)
		if r.Path != filepath.Join("out", "acme-42-a.txt") {
			t.Fatalf("RENAME = %+v", r)
		}
	}
	if h.read("out/acme-42-a.txt") != "hello" || h.exists("in/a.txt") {
		t.Error("the file was not renamed")
	}
}

// TestDeleteIdempotent: a DELETE of a file already gone is done.
func TestDeleteIdempotent(t *testing.T) {
	h := newHome(t)
	h.put("in/a.txt", "x")
	f := facts("in/a.txt")
	h.run("DELETE", nil, f)
	if h.exists("in/a.txt") {
		t.Fatal("not deleted")
	}
	if r := h.run("DELETE", nil, f); !strings.Contains(r.Output, "already deleted") {
		t.Errorf("second DELETE = %+v", r)
	}
}

// TestConfinement: paths out of GatewayHome by "..", by an absolute path,
// by a symlink, and into DataDir are refused, for reads and for writes;
// an absolute path inside home is accepted.
func TestConfinement(t *testing.T) {
	h := newHome(t)
	outside := t.TempDir()
	h.put("in/a.txt", "x")
	if err := os.Symlink(outside, filepath.Join(h.dir, "out")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret"), filepath.Join(h.dir, "in", "link")); err != nil {
		t.Fatal(err)
	}
	f := facts("in/a.txt")
	cases := []struct {
		name, typ string
		args      map[string]any
		facts     Facts
		want      string
	}{
		{"dot-dot destination", "COPY", map[string]any{"path": "../elsewhere"}, f, "outside GatewayHome"},
		{"absolute destination outside", "MOVE", map[string]any{"path": outside}, f, "outside GatewayHome"},
		{"symlinked directory out", "COPY", map[string]any{"path": "out"}, f, "leads through a symlink"},
		{"DataDir", "COPY", map[string]any{"path": "node/raft"}, f, "no rule, transfer or account may read or write it"},
		{"file through dot-dot", "DELETE", nil, facts("../x"), "outside GatewayHome"},
		{"file through a symlink", "CHECKSUM", nil, facts("in/link"), "leads through a symlink"},
		{"variable into dot-dot", "RENAME", map[string]any{"path": "#ERRORMSG#/x"}, Facts{TransferID: 1, Path: "in/a.txt", ErrorMsg: "../.."}, "outside GatewayHome"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := h.fail(tc.typ, tc.args, tc.facts, tc.want)
			if tc.want == "outside GatewayHome" && !errors.Is(err, ErrOutside) {
				t.Errorf("%v is not ErrOutside", err)
			}
		})
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Errorf("something was written outside home: %v", entries)
	}
	// Absolute inside home is fine.
	h.run("COPY", map[string]any{"path": filepath.Join(h.dir, "copies")}, f)
	if h.read("copies/a.txt") != "x" {
		t.Error("absolute path inside home was not used")
	}
}

// TestCheck refuses by name and size, before the file exists (announced
// size) and after.
func TestCheck(t *testing.T) {
	h := newHome(t)
	h.put("in/big.csv", strings.Repeat("x", 100))
	f := facts("in/big.csv")
	h.run("CHECK", map[string]any{"namePattern": "*.csv", "maxSize": 100}, f)
	err := h.fail("CHECK", map[string]any{"namePattern": "*.xml"}, f, `name "big.csv" does not match namePattern "*.xml"`)
	if !errors.Is(err, ErrRefused) {
		t.Errorf("%v is not ErrRefused", err)
	}
	h.fail("CHECK", map[string]any{"nameRegexp": `^\d+\.csv$`}, f, "does not match nameRegexp")
	h.fail("CHECK", map[string]any{"maxSize": 99}, f, `"big.csv" is 100 bytes, over maxSize 99`)
	h.fail("CHECK", map[string]any{"minSize": 101}, f, "under minSize 101")
	// A receive's pre-task: no file yet, the announced size counts.
	pre := facts("in/new.csv")
	pre.Filesize = 5000
	h.fail("CHECK", map[string]any{"maxSize": 4096}, pre, "5000 bytes, over maxSize 4096")
	pre.Filesize = -1
	h.run("CHECK", map[string]any{"maxSize": 4096}, pre)
}

// TestChecksum writes the sidecar (twice: the same), checks against it and
// against a value, and refuses a changed file.
func TestChecksum(t *testing.T) {
	h := newHome(t)
	h.put("in/a.bin", "payload")
	sum := sha256.Sum256([]byte("payload"))
	want := hex.EncodeToString(sum[:]) + "  a.bin\n"
	f := facts("in/a.bin")
	for range 2 {
		h.run("CHECKSUM", nil, f)
		if got := h.read("in/a.bin.sha256"); got != want {
			t.Fatalf("sidecar %q, want %q", got, want)
		}
	}
	h.run("CHECKSUM", map[string]any{"sidecar": "#TRUEFULLPATH#.sha256"}, f)
	h.run("CHECKSUM", map[string]any{"expect": strings.ToUpper(want[:64])}, f)
	h.put("in/a.bin", "payload!")
	err := h.fail("CHECKSUM", map[string]any{"sidecar": "in/a.bin.sha256"}, f, "expected "+want[:64])
	if !errors.Is(err, ErrRefused) {
		t.Errorf("%v is not ErrRefused", err)
	}
	h.noTemps()
}
