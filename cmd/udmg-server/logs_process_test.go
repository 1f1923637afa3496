package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// modeChange is one "mode changed" line.
type modeChange struct{ from, to, reason string }

// jsonLog parses a node's log, failing on any line that is not one JSON
// object: raft's and memberlist's lines must come through slog too.
func jsonLog(t *testing.T, p *ts.Proc) (lines []map[string]any, changes []modeChange) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(p.Log()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Errorf("%s: a log line is not JSON: %q", p.Name, sc.Text())
			continue
		}
		lines = append(lines, m)
		if m["msg"] == "mode changed" {
			changes = append(changes, modeChange{str(m["from"]), str(m["to"]), str(m["reason"])})
		}
	}
	return lines, changes
}

func str(v any) string { s, _ := v.(string); return s }

// waitChange polls p's log until a mode change matching want is logged.
func waitChange(t *testing.T, p *ts.Proc, want func(modeChange) bool, what string) modeChange {
	t.Helper()
	var found modeChange
	if !ts.Eventually(30*time.Second, func() bool {
		_, changes := jsonLog(t, p)
		i := slices.IndexFunc(changes, want)
		if i >= 0 {
			found = changes[i]
		}
		return i >= 0
	}) {
		_, changes := jsonLog(t, p)
		t.Fatalf("%s: no mode change %s; logged %+v", p.Name, what, changes)
	}
	return found
}

// TestLogs: with JSON logs every line of a node (raft and memberlist
// included) is one JSON object with its component, and each mode change is
// one line with its reason: taking the lease, handing over on SIGTERM, and
// losing the lease while frozen.
func TestLogs(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-node test")
	}
	c := ts.NewCluster(t, 3, "UDMG_LOG_FORMAT=json")
	first := c.WaitOneActive(60*time.Second, "PASSIVE")
	waitChange(t, first, func(m modeChange) bool { return m.to == "ACTIVE" && m.reason == "lease acquired" }, "to ACTIVE (lease acquired)")

	// Handover: the ACTIVE node stops on SIGTERM and says why.
	first.Signal(syscall.SIGTERM)
	if !first.Wait(15 * time.Second) {
		t.Fatalf("%s did not stop on SIGTERM", first.Name)
	}
	waitChange(t, first, func(m modeChange) bool { return m.from == "ACTIVE" && m.reason == "shutting down" }, "from ACTIVE on SIGTERM")
	second := c.WaitOneActive(30*time.Second, "", first)
	waitChange(t, second, func(m modeChange) bool { return m.to == "ACTIVE" && m.reason == "lease acquired" }, "to ACTIVE after the handover")

	// Frozen past its lease, the ACTIVE node wakes up fenced and says so
	// (the first node is back, so that two of three keep a quorum).
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	c.WaitOneActive(30*time.Second, "PASSIVE")
	second.Signal(syscall.SIGSTOP)
	c.WaitOneActive(30*time.Second, "", second)
	second.Signal(syscall.SIGCONT)
	got := waitChange(t, second, func(m modeChange) bool { return m.from == "ACTIVE" }, "from ACTIVE after the freeze")
	// Whichever sees it first, the fencing goroutine or the mode watch, the
	// reason is what ended the lease.
	if !slices.Contains([]string{"lease expired", "leadership lost", "lease lost"}, got.reason) {
		t.Errorf("%s left ACTIVE after the freeze with reason %q", second.Name, got.reason)
	}
	t.Logf("after the freeze %s logged: %s -> %s (%s)", second.Name, got.from, got.to, got.reason)
	components := map[string]bool{}
	for _, p := range c.Nodes {
		lines, changes := jsonLog(t, p)
		for _, l := range lines {
			components[str(l["component"])] = true
			if str(l["level"]) == "" || str(l["msg"]) == "" {
				t.Errorf("%s: line without level or msg: %v", p.Name, l)
			}
		}
		for _, ch := range changes {
			if ch.reason == "" || ch.from == ch.to {
				t.Errorf("%s: mode change without a reason or a change: %+v", p.Name, ch)
			}
		}
	}
	for _, want := range []string{"raft", "memberlist"} {
		if !components[want] {
			t.Errorf("no %s lines in the node logs (components seen: %v)", want, components)
		}
	}
}

// TestLogFormatFlag: -log-format json makes JSON logs even when the
// environment asks for text, and a wrong value stops the process with one
// line.
func TestLogFormatFlag(t *testing.T) {
	bin := ts.ServerBinary(t)
	out, err := exec.Command(bin, "-log-format", "xml").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || string(out) != "udmg-server: -log-format \"xml\": use text or json\n" {
		t.Fatalf("-log-format xml: %v, output %q", err, out)
	}

	dir := t.TempDir()
	ip := fmt.Sprintf("127.0.%d.250", 10+rand.IntN(240))
	cmd := exec.Command(bin, "-log-format", "json")
	cmd.Env = append(cmd.Environ(), "UDMG_LOG_FORMAT=text", "UDMG_ADMIN_HOST="+ip,
		"UDMG_ADMIN_INITIALPASSWORD=x", "UDMG_PATHS_GATEWAYHOME="+filepath.Join(dir, "home"),
		"UDMG_CLUSTER_DATADIR="+filepath.Join(dir, "node"), "UDMG_CLUSTER_RAFTADDRESS="+ip+":8300",
		"UDMG_CLUSTER_GOSSIPADDRESS="+ip+":7946", "UDMG_LISTENERS_HOST="+ip)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	// The first line comes at once; a hung process ends with the kill above
	// only after the test fails, so bound the read by a timer.
	timer := time.AfterFunc(30*time.Second, func() { cmd.Process.Kill() })
	defer timer.Stop()
	line, err := bufio.NewReader(stderr).ReadString('\n')
	var m map[string]any
	if err != nil || json.Unmarshal([]byte(line), &m) != nil || m["msg"] == nil {
		t.Fatalf("first log line with -log-format json: %q (%v)", line, err)
	}
}
