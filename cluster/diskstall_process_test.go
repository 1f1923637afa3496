package cluster_test

import (
	"strings"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// TestDiskStallDoesNotPauseTheProcess: a stalled DataDir stops the writes
// into it, never the rest of the process. A goroutine that writes to a
// file through a shared mapping (SQLite's WAL index in udmg.db-shm, once)
// blocks in the page fault, where the Go runtime cannot stop it, and the
// next garbage collection then waits for it with every other goroutine
// stopped: the lease timer, the fence, /ping. With GOGC=1 a collection
// starts within milliseconds of any allocation, so such a mapping pauses
// the node at once. The node must keep answering /ping throughout, fence
// on its own clock once its lease runs out (Deadline 2s), and have no
// thread waiting in a write fault on a mapped page.
func TestDiskStallDoesNotPauseTheProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("process test")
	}
	o := ts.Options{LoopDataDirs: true, Env: []string{"GOGC=1"}}
	if why := o.FaultsAvailable(); why != "" {
		t.Skip("!!!!!!!! SKIPPED: needs a loop-mounted DataDir to freeze: " + why + " !!!!!!!!")
	}
	c := ts.NewClusterWith(t, 1, o)
	p := c.WaitOneActive(60*time.Second, "")
	if err := p.DataFS.Freeze(); err != nil {
		t.Fatal(err)
	}
	frozen := time.Now()
	var slowest time.Duration
	var fencedAfter time.Duration
	var faulting []string
	for time.Since(frozen) < 6*time.Second {
		start := time.Now()
		code, _ := p.Ping() // 0: no answer within the client's 2s
		slowest = max(slowest, time.Since(start))
		if code != 200 && code != 0 && fencedAfter == 0 {
			fencedAfter = time.Since(frozen)
		}
		if f := writeFaulting(p.Pid()); len(f) > 0 {
			faulting = f
		}
		time.Sleep(50 * time.Millisecond) // the probe's pace, not a wait for a condition
	}
	if err := p.DataFS.Thaw(); err != nil {
		t.Fatal(err)
	}
	t.Logf("frozen 6s: slowest /ping %s, fenced %s after the freeze", slowest.Round(time.Millisecond), fencedAfter.Round(time.Millisecond))
	if len(faulting) > 0 {
		t.Errorf("threads waiting in a write fault on a mapped page of the frozen DataDir: %s", strings.Join(faulting, "; "))
	}
	if slowest > 1500*time.Millisecond {
		t.Errorf("/ping took %s while the DataDir was frozen: the process paused", slowest.Round(time.Millisecond))
	}
	if fencedAfter == 0 || fencedAfter > 3500*time.Millisecond {
		t.Errorf("fenced %s after the freeze (0: never in 6s), want within Deadline (2s) and a little", fencedAfter.Round(time.Millisecond))
	}
	if !ts.Eventually(30*time.Second, func() bool { code, _ := p.Ping(); return code == 200 }) {
		t.Errorf("the node did not take the lease again after the thaw")
	}
}

// writeFaulting lists the threads of pid whose kernel stack is in a write
// fault on a shared mapping (ext4_page_mkwrite and the like).
func writeFaulting(pid int) []string {
	var out []string
	for tid, st := range threadFiles(pid, "stack") {
		if strings.Contains(st, "page_mkwrite") {
			out = append(out, "thread "+tid+": "+strings.Join(strings.Fields(st), " "))
		}
	}
	return out
}
