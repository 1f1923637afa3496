package transfer_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/udmg/gateway/listeners"
	ts "github.com/udmg/gateway/testsupport"
)

// TestWriteAuditOfANode: with [listeners] WriteAudit, a real node records
// an SFTP upload as JSON lines (its staging file created and written under
// the node's lease epoch, then renamed into place), flushed by the time it
// has stopped on SIGTERM.
func TestWriteAuditOfANode(t *testing.T) {
	skipShort(t)
	needTool(t, "sftp")
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	c := ts.NewCluster(t, 1, "UDMG_LISTENERS_WRITEAUDIT="+auditFile)
	p := c.WaitOneActive(40*time.Second, "")
	keyPath, pub := userKey(t)
	p.Admin().Must(t, 201, "POST", "/api/servers/sftp/accounts", map[string]any{"login": "bob", "publicKeys": []string{pub}})
	src := filepath.Join(t.TempDir(), "audited.bin")
	const size = 3<<20 + 17
	ts.WriteRandomFile(t, src, size)
	if out, err := ts.SFTP(p.SFTPAddr(), "bob", keyPath, "put "+src+" audited.bin\n"); err != nil {
		t.Fatalf("sftp put: %v\n%s", err, out)
	}
	p.Signal(syscall.SIGTERM)
	if !p.Wait(20 * time.Second) {
		t.Fatal("node did not stop on SIGTERM")
	}

	f, err := os.Open(auditFile)
	if err != nil {
		t.Fatalf("no write audit: %v", err)
	}
	defer f.Close()
	final := filepath.Join(c.Home, "bob", "audited.bin")
	var written int64
	var created, renamed bool
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l struct {
			Node   string `json:"node"`
			Epoch  uint64 `json:"epoch"`
			Op     string `json:"op"`
			Path   string `json:"path"`
			From   string `json:"from"`
			Len    int64  `json:"len"`
			BootNs int64  `json:"bootns"`
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		if l.Node == "" || l.Epoch == 0 || l.BootNs <= 0 {
			t.Errorf("audit line without node, epoch or boot time: %s", sc.Text())
		}
		staged := strings.HasPrefix(filepath.Base(l.Path), listeners.StagingPrefix)
		switch {
		case l.Op == "create" && staged:
			created = true
		case l.Op == "write" && staged:
			written += l.Len
		case l.Op == "write":
			t.Errorf("a write outside a staging file: %s", sc.Text())
		case l.Op == "rename" && l.Path == final && strings.HasPrefix(filepath.Base(l.From), listeners.StagingPrefix):
			renamed = true
		}
	}
	if !created || !renamed || written != size {
		t.Fatalf("audit: staging created %v, %d of %d bytes written, renamed into place %v", created, written, size, renamed)
	}
}
