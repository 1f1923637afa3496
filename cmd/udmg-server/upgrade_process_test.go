package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/licensing"
	ts "github.com/udmg/gateway/testsupport"
)

// TestRollingUpgrade upgrades a running three-node cluster node by node,
// followers first, to a binary that writes the next command version (this
// tree linked with fsm.testNextVersion=3), while SFTP uploads flow through
// whichever node is ACTIVE. A node restarted on the old binary once the
// upgraded leader writes newer entries stops with one line naming the entry
// and exits 4, without applying it; upgraded, it applies it. At the end no
// acknowledged upload is lost and the three nodes show the same state.
//
// The previous release (da79d6c) cannot take part: it speaks plain TCP
// between nodes and cannot join a cluster with mutual TLS.
func TestRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster and builds a second binary")
	}
	old := ts.ServerBinary(t)
	next := buildNextVersion(t)
	c := ts.NewCluster(t, 3)
	c.WaitOneActive(60*time.Second, "")
	if m := commitMarker(c, 60*time.Second); m == "" {
		t.Fatal("the new cluster takes no writes")
	} else {
		for _, p := range c.Nodes {
			shows(t, p, m)
		}
	}

	up := startUploads(t, c)
	active := c.WaitOneActive(30*time.Second, "")
	order := []*ts.Proc{c.Other(active)}
	for _, p := range c.Nodes {
		if p != active && p != order[0] {
			order = append(order, p)
		}
	}
	order = append(order, active)
	upgradedAt := map[*ts.Proc]int{}
	for i, p := range order {
		// An upgraded node may win an election before the others are
		// upgraded (a loaded machine misses heartbeats): the old ones then
		// stop, as designed, and the cluster may have no quorum until the
		// next upgrade. So the marker p must show is committed only when
		// the cluster takes writes.
		marker := commitMarker(c, 20*time.Second)
		if p.ExitCode() < 0 {
			p.Signal(syscall.SIGTERM)
			if !p.Wait(30 * time.Second) {
				t.Fatalf("%s did not stop on SIGTERM", p.Name)
			}
		}
		t.Logf("%s stopped (exit %d)", p.Name, p.ExitCode())
		if i == len(order)-1 {
			// The two upgraded nodes lead now and write version 3: a node
			// that missed the upgrade must stop at their first entry.
			c.WaitOneActive(60*time.Second, "", p)
			if commitMarker(c, 60*time.Second) == "" {
				t.Fatal("the two upgraded nodes take no writes")
			}
			from := len(p.Log())
			p.UseBinary(old)
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			if !p.Wait(60 * time.Second) {
				t.Fatalf("%s on the old binary kept running among version-3 entries; log:\n%s", p.Name, p.LogTail(20))
			}
			if code := p.ExitCode(); code != 4 {
				t.Fatalf("%s on the old binary exited %d, want 4; log:\n%s", p.Name, code, p.LogTail(20))
			}
			line := lastLine(p.Log()[from:], "upgrade this node")
			if !strings.Contains(line, newerThan+": upgrade this node") || !strings.Contains(line, "log entry ") {
				t.Fatalf("%s stopped without the line naming the entry; log:\n%s", p.Name, p.LogTail(20))
			}
			t.Logf("%s restarted on the old binary: exit 4, %s", p.Name, line)
		}
		upgradedAt[p] = len(p.Log())
		p.UseBinary(next)
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		if marker != "" {
			shows(t, p, marker)
		} else if !ts.Eventually(60*time.Second, func() bool { _, m := p.Ping(); return m == "PASSIVE" || m == "ACTIVE" }) {
			t.Fatalf("upgraded %s does not stand by; log:\n%s", p.Name, p.LogTail(20))
		}
		t.Logf("%s upgraded; %d uploads acknowledged so far", p.Name, up.count())
	}
	c.WaitOneActive(60*time.Second, "")
	marker := commitMarker(c, 60*time.Second)
	if marker == "" {
		t.Fatal("the upgraded cluster takes no writes")
	}
	for _, p := range c.Nodes {
		shows(t, p, marker)
	}
	acked := up.stop()
	if len(acked) < 10 {
		t.Fatalf("only %d uploads acknowledged during the upgrade", len(acked))
	}
	for name, sum := range acked {
		path := filepath.Join(c.Home, "admin", name)
		if _, err := os.Stat(path); err != nil {
			t.Errorf("acknowledged upload %s lost: %v", name, err)
		} else if got := ts.FileSHA256(t, path); got != sum {
			t.Errorf("acknowledged upload %s changed: sha256 %s, want %s", name, got, sum)
		}
	}
	var digests []string
	if !ts.Eventually(30*time.Second, func() bool {
		digests = digests[:0]
		for _, p := range c.Nodes {
			digests = append(digests, stateDigest(p))
		}
		return digests[0] != "" && digests[0] == digests[1] && digests[1] == digests[2]
	}) {
		t.Fatalf("nodes' states differ after the upgrade: %q", digests)
	}
	halts := 0
	for _, p := range c.Nodes {
		log := p.Log()
		if strings.Contains(log[upgradedAt[p]:], "upgrade this node") {
			t.Errorf("%s stopped at an entry after its upgrade; log:\n%s", p.Name, p.LogTail(20))
		}
		for _, l := range strings.Split(log, "\n") {
			if strings.Contains(l, "upgrade this node") {
				halts++
				if !strings.Contains(l, newerThan) {
					t.Errorf("%s: unclear stop line %s", p.Name, l)
				}
			}
		}
	}
	t.Logf("%d uploads acknowledged, all present; %d stops of old binaries at version-3 entries; state digest %s on all three nodes", len(acked), halts, digests[0][:12])
}

// newerThan is how a node of this release refuses the next one's entries.
var newerThan = fmt.Sprintf("version %d is newer than this binary understands (%d)", fsm.Version+1, fsm.Version)

// buildNextVersion builds this tree as a release writing command version
// fsm.Version+1.
func buildNextVersion(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "udmg-server-v3")
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", bin, "-ldflags",
		"-X github.com/udmg/gateway/licensing.vendorKey="+licensing.EncodePublicKey(ts.VendorPublic())+
			fmt.Sprintf(" -X github.com/udmg/gateway/fsm.testNextVersion=%d", fsm.Version+1), "./cmd/udmg-server")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build (version 3): %v\n%s", err, out)
	}
	return bin
}

// commitMarker commits a new rule through any node that takes writes
// within timeout and returns its name ("" if none did).
func commitMarker(c *ts.Cluster, timeout time.Duration) string {
	name := fmt.Sprintf("marker-%d", time.Now().UnixNano())
	body := map[string]any{"name": name, "direction": "send", "path": "/" + name}
	if !ts.Eventually(timeout, func() bool {
		for _, q := range c.Nodes {
			// 409: a retry of a create that was committed.
			if r, err := q.Admin().Do("POST", "/api/rules", body); err == nil && (r.Status == 201 || r.Status == 409) {
				return true
			}
		}
		return false
	}) {
		return ""
	}
	return name
}

// shows waits until p has applied the marker: it has joined and applied the
// log up to there.
func shows(t *testing.T, p *ts.Proc, marker string) {
	t.Helper()
	if !ts.Eventually(60*time.Second, func() bool {
		r, err := p.Admin().Do("GET", "/api/rules/"+marker+"/send", nil)
		return err == nil && r.Status == 200
	}) {
		t.Fatalf("%s did not apply %s; log:\n%s", p.Name, marker, p.LogTail(20))
	}
}

// stateDigest hashes what a node's API shows of the replicated objects
// ("" when a read fails).
func stateDigest(p *ts.Proc) string {
	h := sha256.New()
	for _, path := range []string{"/api/servers?limit=1000", "/api/partners?limit=1000", "/api/rules?limit=1000", "/api/users?limit=1000", "/api/transfers?limit=1000"} {
		r, err := p.Admin().Do("GET", path, nil)
		if err != nil || r.Status != 200 {
			return ""
		}
		h.Write(r.Body)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func lastLine(log, part string) string {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], part) {
			return lines[i]
		}
	}
	return ""
}

// uploads sends files one after another to whichever node is ACTIVE,
// dialling again after a failure, and keeps those acknowledged.
type uploads struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	acked  map[string]string // name → sha256
}

func startUploads(t *testing.T, c *ts.Cluster) *uploads {
	ctx, cancel := context.WithCancel(context.Background())
	u := &uploads{cancel: cancel, done: make(chan struct{}), acked: map[string]string{}}
	t.Cleanup(func() { u.stop() })
	go func() {
		defer close(u.done)
		for i := 0; ctx.Err() == nil; i++ {
			p, ok := c.ActiveNow()
			if !ok {
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			data := make([]byte, 64<<10)
			rand.Read(data)
			name := fmt.Sprintf("upgrade-%05d.bin", i)
			if ts.UploadSFTP(p.SFTPAddr(), name, data, 15*time.Second) == nil {
				sum := sha256.Sum256(data)
				u.mu.Lock()
				u.acked[name] = hex.EncodeToString(sum[:])
				u.mu.Unlock()
			}
		}
	}()
	return u
}

func (u *uploads) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.acked)
}

// stop ends the uploads and returns the acknowledged ones.
func (u *uploads) stop() map[string]string {
	u.cancel()
	<-u.done
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.acked
}
