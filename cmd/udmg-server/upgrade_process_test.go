package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/httpapi/wire"
	ts "github.com/udmg/gateway/testsupport"
)

// previousRelease is the release this tree upgrades from: the last commit
// CI landed before this work (stop 17). Move it on with each release.
const previousRelease = "f700935"

// TestRollingUpgrade upgrades a running three-node cluster of the previous
// release (built from this repository's history) node by node, followers
// first, to this tree, while SFTP uploads flow through whichever node is
// ACTIVE. The tree it upgrades to is linked with fsm.testNextVersion =
// fsm.Version+1, so that this tree itself (fsm.Version) can stand for an
// older release of the same log layout at the end. Shown:
//   - during the upgrade no node stops: the leader writes at the lowest
//     version its voters apply (cluster.writeVersion), also once it runs
//     the new release itself;
//   - while the last node on the previous release is down, the upgraded
//     leader refuses a change only the new version carries (a rule with
//     tasks) with 409 naming that node; upgraded, the cluster takes it;
//   - the previous release kept the Raft log in raft.db, which the upgrade
//     moved into raft-wal: a node put back on it refuses to start, naming
//     raft.db, instead of running on an empty log;
//   - once all three gossip the new version, /api/cluster says so, and the
//     leader writes it: a node put back on this tree (one version older)
//     stops at the first such entry with one line naming it, exit 4,
//     without applying it; upgraded again, it applies it;
//   - at the end no acknowledged upload is lost and the three nodes show
//     the same state.
func TestRollingUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node cluster and builds three binaries")
	}
	old := ts.ReleaseBinary(t, previousRelease)
	next, nextVersion := buildNext(t)
	c := ts.NewClusterWith(t, 3, ts.Options{Binary: old})
	c.WaitOneActive(60*time.Second, "")
	if m := commitMarker(c, 60*time.Second); m == "" {
		t.Fatal("the cluster of the previous release takes no writes")
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
	for i, p := range order {
		marker := commitMarker(c, 60*time.Second)
		if marker == "" {
			t.Fatalf("the cluster takes no writes before %s is upgraded", p.Name)
		}
		if i == len(order)-1 && fsm.Version >= 3 {
			// The last node on the previous release stopped: the two
			// upgraded ones lead, and refuse what it could not apply.
			p.Signal(syscall.SIGTERM)
			if !p.Wait(30 * time.Second) {
				t.Fatalf("%s did not stop on SIGTERM", p.Name)
			}
			q := c.WaitOneActive(60*time.Second, "", p)
			var r *ts.Response
			if !ts.Eventually(30*time.Second, func() bool {
				var err error
				r, err = q.Admin().Do("POST", "/api/rules", taskRule("mixed"))
				return err == nil && r.Status != 503
			}) || r.Status != 409 || !strings.Contains(string(r.Body), "needs command version 3") || !strings.Contains(string(r.Body), "upgrade it first") {
				t.Fatalf("a rule with tasks while %s runs the previous release: %v, want 409 naming it", p.Name, r)
			}
			t.Logf("a rule with tasks while %s runs the previous release: %d %s", p.Name, r.Status, oneLine(string(r.Body)))
		}
		restartOn(t, p, next)
		shows(t, p, marker)
		for _, q := range c.Nodes {
			if code := q.ExitCode(); code >= 0 {
				t.Fatalf("%s exited %d during the rolling upgrade; log:\n%s", q.Name, code, q.LogTail(20))
			}
		}
		t.Logf("%s upgraded; %d uploads acknowledged so far", p.Name, up.count())
	}
	if !ts.Eventually(60*time.Second, func() bool { return clusterVersions(c) == strings.Repeat(fmt.Sprint(nextVersion), 3) }) {
		t.Fatalf("after the upgrade /api/cluster shows command versions %q, want %d on all three", clusterVersions(c), nextVersion)
	}

	if fsm.Version >= 3 {
		if !ts.Eventually(30*time.Second, func() bool {
			for _, q := range c.Nodes {
				if r, err := q.Admin().Do("POST", "/api/rules", taskRule("upgraded")); err == nil && (r.Status == 201 || r.Status == 409 && strings.Contains(string(r.Body), "exists")) {
					return true
				}
			}
			return false
		}) {
			t.Fatal("the upgraded cluster refuses a rule with tasks")
		}
	}

	// The previous release kept its log in raft.db, which this tree moved
	// into raft-wal and left as a placeholder: put back on it, a node
	// refuses to start rather than run on an empty log beside this tree's
	// snapshots (its term and vote forgotten).
	back := c.Other(c.WaitOneActive(60*time.Second, ""))
	from := len(back.Log())
	restartOn(t, back, old)
	if !back.Wait(60 * time.Second) {
		t.Fatalf("%s on the previous release runs on the moved log; log:\n%s", back.Name, back.LogTail(20))
	}
	if code, line := back.ExitCode(), lastLine(back.Log()[from:], "raft.db"); code == 0 || !strings.Contains(line, "invalid database") {
		t.Fatalf("%s on the previous release exited %d, want a refusal naming raft.db; log:\n%s", back.Name, code, back.LogTail(20))
	} else {
		t.Logf("%s put back on the previous release: exit %d, %s", back.Name, code, line)
	}

	// Writes are at the new version now: this tree, one version older,
	// cannot follow.
	from = len(back.Log())
	restartOn(t, back, ts.ServerBinary(t))
	if !ts.Eventually(90*time.Second, func() bool { commitMarker(c, 5*time.Second); return back.ExitCode() >= 0 }) {
		t.Fatalf("%s on command version %d kept running among version-%d entries; log:\n%s", back.Name, fsm.Version, nextVersion, back.LogTail(20))
	}
	if code := back.ExitCode(); code != 4 {
		t.Fatalf("%s on command version %d exited %d, want 4; log:\n%s", back.Name, fsm.Version, code, back.LogTail(20))
	}
	want := fmt.Sprintf("version %d is newer than this binary understands (%d): upgrade this node", nextVersion, fsm.Version)
	line := lastLine(back.Log()[from:], "upgrade this node")
	if !strings.Contains(line, want) || !strings.Contains(line, "log entry ") {
		t.Fatalf("%s stopped without the line naming the entry; log:\n%s", back.Name, back.LogTail(20))
	}
	t.Logf("%s put back on command version %d: exit 4, %s", back.Name, fsm.Version, line)
	upgradedAt := len(back.Log())
	restartOn(t, back, next)

	c.WaitOneActive(60*time.Second, "")
	marker := commitMarker(c, 60*time.Second)
	if marker == "" {
		t.Fatal("the upgraded cluster takes no writes")
	}
	for _, p := range c.Nodes {
		shows(t, p, marker)
	}
	if strings.Contains(back.Log()[upgradedAt:], "upgrade this node") {
		t.Errorf("%s stopped at an entry after its upgrade; log:\n%s", back.Name, back.LogTail(20))
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
	t.Logf("%s → this tree (command version %d): %d uploads acknowledged, all present; no node stopped during the upgrade; state digest %s on all three nodes",
		previousRelease, nextVersion, len(acked), digests[0][:12])
}

// taskRule is a rule with a post-task: a change only command version 3
// carries.
func taskRule(name string) map[string]any {
	return map[string]any{"name": name, "direction": "receive", "path": "/" + name,
		"postTasks": []map[string]any{{"type": "COPY", "args": map[string]any{"path": "archive"}}}}
}

// restartOn stops p (SIGTERM) if it runs and starts it again on bin.
func restartOn(t *testing.T, p *ts.Proc, bin string) {
	t.Helper()
	if p.ExitCode() < 0 {
		p.Signal(syscall.SIGTERM)
		if !p.Wait(30 * time.Second) {
			t.Fatalf("%s did not stop on SIGTERM", p.Name)
		}
	}
	p.UseBinary(bin)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
}

// clusterVersions is each node's command version as the first node that
// answers GET /api/cluster lists them, concatenated ("" when none answers).
func clusterVersions(c *ts.Cluster) string {
	for _, p := range c.Nodes {
		var st wire.ClusterStatus
		if r, err := p.Admin().Do("GET", "/api/cluster", nil); err != nil || r.Status != 200 || json.Unmarshal(r.Body, &st) != nil {
			continue
		}
		var b strings.Builder
		for _, e := range st.Nodes {
			fmt.Fprint(&b, e.CommandVersion)
		}
		return b.String()
	}
	return ""
}

// buildNext builds this tree with the test vendor key as the next release:
// linked with fsm.testNextVersion = fsm.Version+1, the version it returns.
func buildNext(t *testing.T) (string, int) {
	t.Helper()
	next := fsm.Version + 1
	return ts.BuildServer(t, fmt.Sprintf("-X github.com/udmg/gateway/fsm.testNextVersion=%d", next)), next
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
