package cluster_test

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// Combined faults with real processes (issue 11): a node's DataDir on its
// own loop-mounted ext4 frozen with fsfreeze, Raft and gossip cut with
// iptables rules matching the node's uid while clients still reach it, and
// signals. A prober polls every node's /ping, SFTP and FTP throughout; no
// two nodes may ever serve at once.

// faultTimings are the settings: a lease long enough to act within.
var faultTimings = []string{
	"UDMG_CONTROLLER_HEARTBEAT=1s",
	"UDMG_CONTROLLER_DEADLINE=10s",
	"UDMG_CONTROLLER_HEARTBEATCHECK=1s",
}

// faultCluster starts n nodes with the fault options, or skips loudly when
// the machine lacks a facility they need.
func faultCluster(t *testing.T, n int, o ts.Options) (*ts.Cluster, *ts.Firewall) {
	t.Helper()
	if testing.Short() {
		t.Skip("combined-fault process tests run in the full suite")
	}
	o.UIDs = true
	why := o.FaultsAvailable()
	if why == "" {
		why = ts.FirewallAvailable()
	}
	if why != "" {
		t.Skip("!!!!!!!! SKIPPED: combined-fault test needs root facilities: " + why + " !!!!!!!!")
	}
	c := ts.NewClusterWith(t, n, o)
	return c, ts.NewFirewall(t)
}

// acquisition is one "lease acquired" line of a node's log.
type acquisition struct {
	node *ts.Proc
	line int // index among the node's acquisitions
	wait time.Duration
	text string
}

var waitField = regexp.MustCompile(`\bwait=(\S+)`)

// acquisitions parses every "lease acquired" line of p's log.
func acquisitions(p *ts.Proc) []acquisition {
	var out []acquisition
	for _, l := range strings.Split(p.Log(), "\n") {
		if !strings.Contains(l, `msg="lease acquired"`) {
			continue
		}
		a := acquisition{node: p, line: len(out), text: l, wait: -1}
		if m := waitField.FindStringSubmatch(l); m != nil {
			if d, err := time.ParseDuration(m[1]); err == nil {
				a.wait = d
			}
		}
		out = append(out, a)
	}
	return out
}

// acquireMarks counts each node's acquisitions so far.
func acquireMarks(c *ts.Cluster) map[*ts.Proc]int {
	m := map[*ts.Proc]int{}
	for _, p := range c.Nodes {
		m[p] = len(acquisitions(p))
	}
	return m
}

// nextAcquisition waits for a node other than skip to log an acquisition
// after marks and returns the first one found.
func nextAcquisition(t *testing.T, c *ts.Cluster, marks map[*ts.Proc]int, timeout time.Duration, skip ...*ts.Proc) acquisition {
	t.Helper()
	var got acquisition
	if !ts.Eventually(timeout, func() bool {
		for _, p := range c.Nodes {
			if isOneOf(p, skip) {
				continue
			}
			if as := acquisitions(p); len(as) > marks[p] {
				got = as[marks[p]]
				return true
			}
		}
		return false
	}) {
		t.Fatalf("no node logged \"lease acquired\" within %s; modes %q", timeout, c.Modes())
	}
	return got
}

func isOneOf(p *ts.Proc, set []*ts.Proc) bool {
	for _, s := range set {
		if s == p {
			return true
		}
	}
	return false
}

// threadFiles reads file (stat, stack, …) of every thread of pid, by
// thread id; a thread gone meanwhile is left out.
func threadFiles(pid int, file string) map[string]string {
	paths, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/%s", pid, file))
	out := map[string]string{}
	for _, f := range paths {
		if b, err := os.ReadFile(f); err == nil {
			out[filepath.Base(filepath.Dir(f))] = string(b)
		}
	}
	return out
}

// blockedOnDisk reports whether a thread of p sleeps uninterruptibly (state
// D): with its DataDir frozen, that is Raft's log write.
func blockedOnDisk(p *ts.Proc) bool {
	for _, s := range threadFiles(p.Pid(), "stat") {
		if i := strings.LastIndexByte(s, ')'); i > 0 && strings.HasPrefix(s[i+1:], " D") {
			return true
		}
	}
	return false
}

// freezeLeader freezes p's DataDir and waits until its Raft is stuck in a
// log write (it can then neither commit nor step down), then cuts its Raft
// and gossip off from the others in direction d.
func freezeLeader(t *testing.T, c *ts.Cluster, fw *ts.Firewall, p *ts.Proc, d ts.Direction) {
	t.Helper()
	if err := p.DataFS.Freeze(); err != nil {
		t.Fatal(err)
	}
	if !ts.Eventually(10*time.Second, func() bool { return blockedOnDisk(p) }) {
		t.Fatalf("%s: no thread blocked on its frozen DataDir within 10s", p.Name)
	}
	if err := fw.Isolate(p, c.Nodes, d); err != nil {
		t.Fatal(err)
	}
}

// checkNoOverlap stops the prober and fails if two nodes served at once.
func checkNoOverlap(t *testing.T, prober *ts.Prober) {
	t.Helper()
	prober.Stop()
	overlap, first := prober.Overlap()
	t.Logf("prober: %d serves, overlap %s", len(prober.Serves()), overlap)
	if overlap != 0 {
		t.Errorf("two nodes served at once for %s in total (first: %s)", overlap, first)
	}
}

// TestFaultFrozenLeaderSuccessorStopped is the reproduced overlap:
// the ACTIVE A's DataDir is frozen and A is cut off from the others' Raft
// and gossip (not from clients); the new leader C acquires the lease and
// must wait out A's; C is stopped with SIGTERM during that wait. The next
// leader D must still wait for A (C never served, so its release cancels
// nothing), and at no moment may two nodes answer ACTIVE or accept SFTP.
func TestFaultFrozenLeaderSuccessorStopped(t *testing.T) {
	c, fw := faultCluster(t, 5, ts.Options{Env: faultTimings, LoopDataDirs: true})
	a := c.WaitOneActive(90*time.Second, "PASSIVE")
	if !ts.Eventually(10*time.Second, func() bool { return ts.Greeting(a.SFTPAddr(), time.Second, "SSH-2.0-Go") }) {
		t.Fatal("ACTIVE node has no SFTP banner")
	}
	prober := ts.StartPingProber(c.Nodes, 15*time.Millisecond)
	defer prober.Stop()

	marks := acquireMarks(c)
	freezeLeader(t, c, fw, a, ts.Both)
	frozen := time.Now()

	cAcq := nextAcquisition(t, c, marks, 60*time.Second, a)
	cNode := cAcq.node
	if cAcq.wait <= 0 {
		t.Fatalf("%s took over from the frozen %s without waiting: %s", cNode.Name, a.Name, cAcq.text)
	}
	cNode.Term()
	termAt := time.Now()
	t.Logf("%s frozen and cut at %s; %s acquired (%s) and got SIGTERM %s after the freeze",
		a.Name, frozen.Format("15:04:05.000"), cNode.Name, waitField.FindString(cAcq.text), termAt.Sub(frozen).Round(time.Millisecond))

	marks = acquireMarks(c)
	dAcq := nextAcquisition(t, c, marks, 60*time.Second, a, cNode)
	t.Logf("next leader %s: %s", dAcq.node.Name, strings.TrimSpace(dAcq.text[strings.Index(dAcq.text, "msg="):]))
	if dAcq.wait <= 0 {
		t.Errorf("%s started at once after %s released a lease it never served under, while %s may still serve: %s",
			dAcq.node.Name, cNode.Name, a.Name, dAcq.text)
	}
	if !cNode.Wait(30 * time.Second) {
		t.Fatalf("%s did not exit after SIGTERM", cNode.Name)
	}

	// The frozen A fences itself when its lease ends on its own clock.
	if !ts.Eventually(40*time.Second, func() bool { code, _ := a.Ping(); return code != 200 }) {
		t.Errorf("%s still answers ACTIVE 40s after its DataDir froze", a.Name)
	}
	// D serves once its wait is over.
	if !ts.Eventually(40*time.Second, func() bool { code, _ := dAcq.node.Ping(); return code == 200 }) {
		t.Errorf("%s never became ACTIVE; modes %q", dAcq.node.Name, c.Modes())
	}
	if s, ok := prober.FirstServe(termAt, a.Name); ok {
		if last, ok := prober.LastServe(a.Name, time.Now()); ok {
			t.Logf("%s last served at %s; %s first served at %s (gap %s)", a.Name, last.Recv.Format("15:04:05.000"),
				s.Node, s.Dial.Format("15:04:05.000"), s.Dial.Sub(last.Recv).Round(time.Millisecond))
		}
	}

	// Thaw and heal: the cluster settles with one ACTIVE.
	if err := a.DataFS.Thaw(); err != nil {
		t.Fatal(err)
	}
	if err := fw.Heal(); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	checkNoOverlap(t, prober)
}

var raftStateLine = regexp.MustCompile(`(?m)^udmg_raft_state\{state="(\w+)"\} 1$`)

// raftState is p's Raft state as its /metrics reports it ("" when it does
// not answer).
func raftState(p *ts.Proc) string {
	r, err := p.Admin().Do("GET", "/metrics", nil)
	if err != nil || r.Status != 200 {
		return ""
	}
	if m := raftStateLine.FindSubmatch(r.Body); m != nil {
		return string(m[1])
	}
	return ""
}

// settle restarts every node that exited (fenced by exiting, or stopped by
// the test) and waits until one node is ACTIVE and all others PASSIVE.
func settle(t *testing.T, c *ts.Cluster) *ts.Proc {
	t.Helper()
	var modes []string
	var active *ts.Proc
	if !ts.Eventually(120*time.Second, func() bool {
		for _, p := range c.Nodes {
			if !p.Running() {
				if err := p.Start(); err != nil {
					t.Fatal(err)
				}
			}
		}
		modes, active = c.Modes(), nil
		for i, m := range modes {
			switch {
			case m == "ACTIVE" && active == nil:
				active = c.Nodes[i]
			case m != "PASSIVE":
				return false
			}
		}
		return active != nil
	}) {
		t.Fatalf("the cluster did not settle with one ACTIVE and the others PASSIVE; modes %q", modes)
	}
	return active
}

// TestFaultLeaderFlapsDuringWait partitions and heals the leader that is
// waiting out a frozen holder's lease, again and again, so that leadership
// moves or returns to it mid-wait: whoever leads next still owes the
// frozen holder its wait, including a node whose own (never served) lease
// is the current one. Three nodes: with the frozen one cut off, the two
// others have quorum only together, so each heal gives the flapping node
// an even chance to lead again.
func TestFaultLeaderFlapsDuringWait(t *testing.T) {
	timings := []string{"UDMG_CONTROLLER_HEARTBEAT=1s", "UDMG_CONTROLLER_DEADLINE=20s", "UDMG_CONTROLLER_HEARTBEATCHECK=1s"}
	c, fw := faultCluster(t, 3, ts.Options{Env: timings, LoopDataDirs: true})
	a := c.WaitOneActive(90*time.Second, "PASSIVE")
	prober := ts.StartPingProber(c.Nodes, 15*time.Millisecond)
	defer prober.Stop()

	marks := acquireMarks(c)
	freezeLeader(t, c, fw, a, ts.Both)
	frozen := time.Now()
	acq := nextAcquisition(t, c, marks, 60*time.Second, a)
	flaps, regained := 0, 0
	for time.Since(frozen) < 18*time.Second && flaps < 8 {
		l := acq.node
		if err := fw.Isolate(l, c.Nodes, ts.Both); err != nil {
			t.Fatal(err)
		}
		if !ts.Eventually(20*time.Second, func() bool { s := raftState(l); return s == "Follower" || s == "Candidate" }) {
			t.Fatalf("flap %d: %s kept leading while cut off", flaps, l.Name)
		}
		marks = acquireMarks(c)
		// Heal everything but the frozen node's cut.
		if err := fw.Heal(); err != nil {
			t.Fatal(err)
		}
		if err := fw.Isolate(a, c.Nodes, ts.Both); err != nil {
			t.Fatal(err)
		}
		flaps++
		acq = nextAcquisition(t, c, marks, 30*time.Second, a)
		if acq.node == l {
			regained++
		}
		t.Logf("flap %d at +%s: %s lost leadership; %s acquired (%s)", flaps, time.Since(frozen).Round(time.Millisecond),
			l.Name, acq.node.Name, waitField.FindString(acq.text))
		if acq.wait <= 0 && time.Since(frozen) < 15*time.Second {
			t.Errorf("%s did not wait although the frozen %s's lease (20s) may still run: %s", acq.node.Name, a.Name, acq.text)
		}
	}
	t.Logf("%d flaps, leadership regained by the flapping node %d times", flaps, regained)
	if flaps < 2 {
		t.Fatalf("only %d flaps within the frozen holder's lease", flaps)
	}
	if err := a.DataFS.Thaw(); err != nil {
		t.Fatal(err)
	}
	if err := fw.Heal(); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	checkNoOverlap(t, prober)
}

// auditLine is one line of a node's write audit ([listeners] WriteAudit).
type auditLine struct {
	Node   string `json:"node"`
	Epoch  uint64 `json:"epoch"`
	Op     string `json:"op"`
	Path   string `json:"path"`
	From   string `json:"from"`
	Off    int64  `json:"off"`
	Len    int64  `json:"len"`
	BootNs int64  `json:"bootns"`
	UnixNs int64  `json:"unixns"`
}

// auditPath is where node p keeps its write audit: beside its log, outside
// GatewayHome and DataDir (neither of which may be frozen under it).
func auditPath(p *ts.Proc) string {
	return filepath.Join(filepath.Dir(p.LogPath), p.Name+".audit.jsonl")
}

// withAudit turns the write audit on for every node, except when running a
// prebuilt binary of another revision (which may not know the key).
func withAudit(o ts.Options) ts.Options {
	if os.Getenv("UDMGTEST_SERVER") != "" {
		return o
	}
	prev := o.NodeEnv
	o.NodeEnv = func(i int, p *ts.Proc) []string {
		var env []string
		if prev != nil {
			env = prev(i, p)
		}
		return append(env, "UDMG_LISTENERS_WRITEAUDIT="+auditPath(p))
	}
	return o
}

// readAudit reads p's audit lines (none when it has no audit).
func readAudit(t *testing.T, p *ts.Proc) []auditLine {
	t.Helper()
	b, err := os.ReadFile(auditPath(p))
	if err != nil {
		return nil
	}
	var out []auditLine
	for _, l := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(l) == "" {
			continue
		}
		var a auditLine
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			t.Errorf("%s audit: %v in %q", p.Name, err, l)
			continue
		}
		out = append(out, a)
	}
	return out
}

// TestFaultStuckWriteDuringFence: an SFTP upload is in progress on the
// ACTIVE A when GatewayHome freezes, so the session is stuck in a write;
// then A is cut off from the cluster and its lease ends. Its fence cannot
// close that session: A must exit non-zero within the fence bound, logging
// "fencing did not finish", and never release the lease; the successor
// takes over after the full wait, and no byte A wrote after the successor
// became ACTIVE lands in an acknowledged file.
func TestFaultStuckWriteDuringFence(t *testing.T) {
	timings := []string{"UDMG_CONTROLLER_HEARTBEAT=1s", "UDMG_CONTROLLER_DEADLINE=5s", "UDMG_CONTROLLER_HEARTBEATCHECK=1s"}
	c, fw := faultCluster(t, 3, withAudit(ts.Options{Env: timings, LoopHome: true}))
	a := c.WaitOneActive(90*time.Second, "PASSIVE")
	prober := ts.StartPingProber(c.Nodes, 15*time.Millisecond)
	defer prober.Stop()

	acked := map[string]string{} // name -> sha256 of what the client was told is stored
	upload := func(p *ts.Proc, name string, size int) {
		t.Helper()
		data := make([]byte, size)
		rand.Read(data)
		var err error
		if !ts.Eventually(30*time.Second, func() bool { err = ts.UploadSFTP(p.SFTPAddr(), name, data, 10*time.Second); return err == nil }) {
			t.Fatalf("upload %s through %s: %v", name, p.Name, err)
		}
		acked[name] = ts.SHA256Hex(data)
	}
	for i := range 3 {
		upload(a, fmt.Sprintf("before-%d.bin", i), 100_000+i)
	}

	// The upload that gets stuck: it writes until the storage freezes.
	s, err := ts.DialSFTP(a.SFTPAddr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	f, err := s.SFTP.OpenFile("stuck.bin", os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		t.Fatal(err)
	}
	var written atomic.Int64
	writerDone := make(chan error, 1)
	go func() {
		chunk := make([]byte, 32<<10)
		for {
			if _, err := f.Write(chunk); err != nil {
				writerDone <- err
				return
			}
			written.Add(int64(len(chunk)))
		}
	}()
	defer func() { s.Close(); <-writerDone }()
	if !ts.Eventually(20*time.Second, func() bool { return written.Load() >= 1<<20 }) {
		t.Fatalf("the upload to %s did not get going: %d bytes", a.Name, written.Load())
	}
	if err := c.HomeFS.Freeze(); err != nil {
		t.Fatal(err)
	}
	if !ts.Eventually(10*time.Second, func() bool { return blockedOnDisk(a) }) {
		t.Fatalf("%s: no thread blocked on the frozen GatewayHome", a.Name)
	}
	stuckAt := written.Load()
	if err := fw.Isolate(a, c.Nodes, ts.Both); err != nil {
		t.Fatal(err)
	}
	cut := time.Now()

	// Lease end (≤ Deadline) plus the fence bound (10s), with slack.
	const fenceLimit = 5*time.Second + 10*time.Second + 10*time.Second
	if !ts.Eventually(fenceLimit, func() bool { return a.CountLog("fencing did not finish") > 0 }) {
		t.Errorf("%s did not give up fencing within %s of being cut off (stuck write at %d bytes)", a.Name, fenceLimit, stuckAt)
	} else {
		t.Logf("%s gave up fencing %s after being cut off", a.Name, time.Since(cut).Round(100*time.Millisecond))
	}
	// The successor may need the storage to start; let go of it now.
	var succ *ts.Proc
	ts.Eventually(30*time.Second, func() bool { var ok bool; succ, ok = c.ActiveNow(a); return ok })
	succAt := time.Now()
	if err := c.HomeFS.Thaw(); err != nil {
		t.Fatal(err)
	}
	if !a.Wait(15 * time.Second) {
		t.Errorf("%s still runs 15s after the storage thawed", a.Name)
	} else if code := a.ExitCode(); code == 0 {
		t.Errorf("%s exited 0 after a failed fence; want non-zero", a.Name)
	} else {
		t.Logf("%s exited with code %d", a.Name, code)
	}
	if a.CountLog("lease released") > 0 {
		t.Errorf("%s released the lease after a failed fence", a.Name)
	}
	if succ == nil {
		succ = c.WaitOneActive(60*time.Second, "", a)
		succAt = time.Now()
	}
	t.Logf("successor %s ACTIVE by %s", succ.Name, succAt.Format("15:04:05.000"))

	// The successor acknowledges the same name and another file.
	upload(succ, "stuck.bin", 200_000)
	upload(succ, "after.bin", 150_000)
	if err := fw.Heal(); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	checkNoOverlap(t, prober)

	checkAcked(t, c, acked)
	for _, l := range readAudit(t, a) {
		if l.UnixNs > succAt.UnixNano() && l.Op == "write" && !strings.Contains(l.Path, ".udmg-staging.") {
			t.Errorf("%s wrote %d bytes to %s at %s, after %s became ACTIVE", a.Name, l.Len, l.Path,
				time.Unix(0, l.UnixNs).Format("15:04:05.000"), succ.Name)
		}
	}
}

// checkAcked fails for every acknowledged upload that is missing under its
// name in the administrator's home or holds other bytes.
func checkAcked(t *testing.T, c *ts.Cluster, acked map[string]string) (missing, corrupted int) {
	t.Helper()
	for name, sum := range acked {
		path := filepath.Join(c.Home, "admin", name)
		if _, err := os.Stat(path); err != nil {
			t.Errorf("acknowledged upload %s: %v", name, err)
			missing++
			continue
		}
		if got := ts.FileSHA256(t, path); got != sum {
			t.Errorf("acknowledged upload %s: sha256 %s, want %s", name, got, sum)
			corrupted++
		}
	}
	return missing, corrupted
}
