package tasks

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/udmg/gateway/confine"
)

// home is a GatewayHome for one test, with DataDir inside it (the layout
// where confinement matters most) guarded.
type home struct {
	t    *testing.T
	dir  string
	env  Env
	keys map[string]string
}

func newHome(t *testing.T) *home {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "node", "raft"), 0o700); err != nil {
		t.Fatal(err)
	}
	g, err := confine.New(filepath.Join(dir, "node"))
	if err != nil {
		t.Fatal(err)
	}
	h := &home{t: t, dir: dir, keys: map[string]string{}}
	h.env = Env{Home: dir, Guard: g, Keys: func(name string) (string, error) {
		k, ok := h.keys[name]
		if !ok {
			return "", errors.New("no such key")
		}
		return k, nil
	}}
	return h
}

// with is h for a subtest (its failures are the subtest's).
func (h *home) with(t *testing.T) *home {
	c := *h
	c.t = t
	return &c
}

// put writes a file under home.
func (h *home) put(rel, content string) {
	h.t.Helper()
	p := filepath.Join(h.dir, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o640); err != nil {
		h.t.Fatal(err)
	}
}

// read returns a file's content under home, failing the test if absent.
func (h *home) read(rel string) string {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir, rel))
	if err != nil {
		h.t.Fatal(err)
	}
	return string(b)
}

func (h *home) exists(rel string) bool {
	_, err := os.Lstat(filepath.Join(h.dir, rel))
	return err == nil
}

// noTemps fails the test if a temporary file of a write is left anywhere.
func (h *home) noTemps() {
	h.t.Helper()
	_ = filepath.WalkDir(h.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".tmp") {
			h.t.Errorf("temporary file left: %s", p)
		}
		return nil
	})
}

func facts(path string) Facts {
	return Facts{
		TransferID: 42, Rule: "inbound", Partner: "acme", Account: "alice",
		Path: path, OriginalName: filepath.Base(path), Filesize: -1,
		RemoteHost: "192.0.2.7", NodeID: "node-1", TaskKey: "post/0",
		Now: time.Date(2026, 12, 1, 9, 8, 7, 0, time.UTC),
	}
}

// run runs a task and fails the test on error.
func (h *home) run(typ string, a map[string]any, f Facts) Result {
	h.t.Helper()
	r, err := Run(context.Background(), Task{Type: typ, Args: a}, f, h.env)
	if err != nil {
		h.t.Fatalf("%s %v: %v", typ, a, err)
	}
	return r
}

// fail runs a task that must fail with an error holding want.
func (h *home) fail(typ string, a map[string]any, f Facts, want string) error {
	h.t.Helper()
	_, err := Run(context.Background(), Task{Type: typ, Args: a}, f, h.env)
	if err == nil || !strings.Contains(err.Error(), want) {
		h.t.Fatalf("%s %v: error %v, want one containing %q", typ, a, err, want)
	}
	return err
}
