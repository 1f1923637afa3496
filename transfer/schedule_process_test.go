package transfer_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/udmg/gateway/httpapi/wire"
	ts "github.com/udmg/gateway/testsupport"
)

// TestSchedulesAcrossFailover runs the three kinds of recurring schedule
// on a three-node cluster with a real OpenSSH partner, and kills the
// ACTIVE node (kill -9) while they run:
//   - poll: each of the partner's files (half of them there before the
//     kill, half written while no node is ACTIVE) is fetched exactly once,
//     and moved at the partner (after: move:<dir>) once fetched;
//   - watch: each file dropped in a local directory (before and during the
//     failover) is sent exactly once;
//   - cron (every second, "* * * * * *"): its slots are unique, each with
//     one transfer, and consecutive slots are one period apart except for
//     one gap at most, across the failover, no longer than the outage plus
//     two periods (the new ACTIVE runs only the latest slot it missed).
func TestSchedulesAcrossFailover(t *testing.T) {
	skipShort(t)
	const (
		files  = 6 // per half, for poll and watch each
		size   = 200 << 10
		period = time.Second
	)
	sshd := ts.StartSSHD(t)
	c := ts.NewCluster(t, 3)
	old := c.WaitOneActive(60*time.Second, "PASSIVE")
	api := old.Admin()
	// A young cluster on a loaded machine may still change leaders: go on
	// once it takes a write.
	if !ts.Eventually(60*time.Second, func() bool {
		r, err := api.Do("POST", "/api/rules", map[string]any{"name": "warm-up", "direction": "send", "path": "/warm-up"})
		return err == nil && (r.Status == 201 || r.Status == 409)
	}) {
		t.Fatal("the cluster takes no writes")
	}
	pushDir, pollDir := t.TempDir(), t.TempDir()
	api.AddSSHDPartner(t, sshd, pushDir)
	for _, d := range []string{"out", "in", "watch"} {
		if err := os.MkdirAll(filepath.Join(c.Home, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sums := map[string]string{} // poll and watch files by name
	write := func(dir, prefix string, from int) {
		for i := from; i < from+files; i++ {
			name := fmt.Sprintf("%s-%02d.bin", prefix, i)
			sums[name] = ts.WriteRandomFile(t, filepath.Join(dir, name), size+int64(i))
		}
	}
	write(pollDir, "poll", 0)
	write(filepath.Join(c.Home, "watch"), "watch", 0)
	ts.WriteRandomFile(t, filepath.Join(c.Home, "out", "tick.txt"), 1<<10)
	onceSum := ts.WriteRandomFile(t, filepath.Join(c.Home, "out", "once.txt"), 1<<10)
	at := time.Now().Add(6 * time.Second).UTC().Truncate(time.Second)
	schedule := func(body map[string]any) {
		body["partner"], body["account"] = "remote", sshd.User
		api.Must(t, 201, "POST", "/api/schedules", body)
	}
	schedule(map[string]any{"name": "fetch", "kind": "poll", "rule": "pull", "dir": pollDir, "after": "move:" + pollDir + "/done", "interval": "1s"})
	schedule(map[string]any{"name": "drop", "kind": "watch", "rule": "push", "dir": "watch", "interval": "1s"})
	schedule(map[string]any{"name": "tick", "kind": "cron", "rule": "push", "cron": "* * * * * *", "file": "tick.txt"})
	schedule(map[string]any{"name": "once", "kind": "at", "rule": "push", "at": at.Format(time.RFC3339), "file": "once.txt"})

	// Kill the ACTIVE once every kind has run and some fetches are
	// still to finish or be moved.
	if !ts.Eventually(90*time.Second, func() bool {
		trs, err := api.Transfers()
		rules := map[string]int{}
		for _, tr := range trs {
			rules[tr.Rule]++
		}
		return err == nil && len(runs(t, api, "tick")) >= 3 && len(runs(t, api, "drop")) > 0 && rules["pull"] > 0
	}) {
		t.Fatalf("schedules did not run on %s; log:\n%s", old.Name, old.LogTail(40))
	}
	moved, _ := filepath.Glob(filepath.Join(pollDir, "done", "*.bin"))
	sent, _ := filepath.Glob(filepath.Join(pushDir, "watch-*.bin"))
	old.Kill()
	killed := time.Now()
	t.Logf("at the kill: %d of %d poll files moved, %d of %d watch files at the partner, %d poll runs open", len(moved), files, len(sent), files, len(runs(t, c.Other(old).Admin(), "fetch")))
	write(pollDir, "poll", files)
	write(filepath.Join(c.Home, "watch"), "watch", files)
	next := c.WaitOneActive(60*time.Second, "", old)
	outage := time.Since(killed)
	t.Logf("killed %s; %s ACTIVE after %s", old.Name, next.Name, outage.Round(time.Millisecond))
	api = next.Admin()

	// Three slots more after the failover, then no more (the state keeps
	// the newest fsm.MaxSlotRuns runs).
	after := len(runs(t, api, "tick"))
	if !ts.Eventually(60*time.Second, func() bool { return len(runs(t, api, "tick")) >= after+3 }) {
		t.Fatalf("cron schedule did not go on after the failover; log:\n%s", next.LogTail(40))
	}
	api.Must(t, 202, "PUT", "/api/schedules/tick/disable", nil)

	// Every poll file fetched and moved, every watch file sent.
	if !ts.Eventually(3*time.Minute, func() bool {
		for name := range sums {
			at := filepath.Join(pushDir, name)
			if name[:4] == "poll" {
				at = filepath.Join(pollDir, "done", name)
				if _, err := os.Stat(filepath.Join(c.Home, "in", name)); err != nil {
					return false
				}
			}
			if _, err := os.Stat(at); err != nil {
				return false
			}
		}
		trs, err := api.Transfers()
		for _, tr := range trs {
			if tr.LocalPath == "out/once.txt" && tr.Status == "DONE" {
				return err == nil
			}
		}
		return false
	}) {
		t.Fatalf("not every file fetched and moved, or sent; log:\n%s", next.LogTail(60))
	}

	trs, err := api.Transfers()
	if err != nil {
		t.Fatal(err)
	}
	byLocal := map[string][]ts.Transfer{}
	for _, tr := range trs {
		byLocal[tr.LocalPath] = append(byLocal[tr.LocalPath], tr)
	}
	for name, sum := range sums {
		local, partner, copyAt := filepath.Join("watch", name), filepath.Join(pushDir, name), filepath.Join(pushDir, name)
		if name[:4] == "poll" {
			local, partner, copyAt = filepath.Join("in", name), filepath.Join(pollDir, "done", name), filepath.Join(c.Home, "in", name)
		}
		got := byLocal[local]
		if len(got) != 1 {
			t.Errorf("%s: %d transfers, want exactly 1: %+v", name, len(got), got)
			continue
		}
		if got[0].Status != "DONE" {
			t.Errorf("%s: transfer %d is %s (%s)", name, got[0].ID, got[0].Status, got[0].ErrorDetails)
		}
		if ts.FileSHA256(t, copyAt) != sum || ts.FileSHA256(t, partner) != sum {
			t.Errorf("%s: copy differs from the source", name)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(pollDir, "*.bin")); len(left) != 0 {
		t.Errorf("files left unmoved at the partner: %v", left)
	}

	// At: one run, at its time, whichever node was ACTIVE then.
	if ts.FileSHA256(t, filepath.Join(pushDir, "once.txt")) != onceSum {
		t.Error("at schedule: the partner's once.txt differs")
	}
	if once := runs(t, api, "once"); len(once) != 1 || len(byLocal["out/once.txt"]) != 1 || once[0].TransferID != byLocal["out/once.txt"][0].ID {
		t.Errorf("at schedule: runs %+v, transfers %+v", once, byLocal["out/once.txt"])
	}

	// Watch: a file gone is forgotten (the runs stay bounded by the
	// directory); the others stay taken.
	if err := os.Remove(filepath.Join(c.Home, "watch", "watch-00.bin")); err != nil {
		t.Fatal(err)
	}
	if !ts.Eventually(30*time.Second, func() bool {
		keys := map[string]bool{}
		for _, r := range runs(t, api, "drop") {
			keys[r.Key] = true
		}
		return !keys["watch-00.bin"] && keys["watch-01.bin"] && len(keys) == 2*files-1
	}) {
		t.Errorf("watch runs after watch-00.bin was removed: %+v", runs(t, api, "drop"))
	}

	// Cron: one transfer per slot, none outside a slot, slots on the
	// spec's chain with one gap at most, across the failover.
	tick := runs(t, api, "tick")
	ids := map[uint64]bool{}
	var slots []time.Time
	for _, r := range tick {
		if ids[r.TransferID] {
			t.Errorf("transfer %d is the run of two slots", r.TransferID)
		}
		ids[r.TransferID] = true
		s, err := time.Parse(time.RFC3339Nano, r.Key)
		if err != nil {
			t.Fatalf("slot key %q: %v", r.Key, err)
		}
		slots = append(slots, s)
	}
	if n := len(byLocal["out/tick.txt"]); n != len(tick) {
		t.Errorf("%d cron transfers for %d slots", n, len(tick))
	}
	for _, tr := range byLocal["out/tick.txt"] {
		if !ids[tr.ID] {
			t.Errorf("cron transfer %d is the run of no slot", tr.ID)
		}
	}
	slices.SortFunc(slots, time.Time.Compare)
	var gaps []time.Duration
	for i := 1; i < len(slots); i++ {
		gap := slots[i].Sub(slots[i-1])
		if gap%period != 0 {
			t.Errorf("slots %s and %s are not %s apart on the chain", slots[i-1], slots[i], period)
		}
		if gap > period {
			gaps = append(gaps, gap)
		}
	}
	if len(gaps) > 1 || len(gaps) == 1 && gaps[0] > outage+2*period {
		t.Errorf("cron slot gaps %v beyond one period (outage %s): a slot was skipped outside the failover", gaps, outage)
	}
	t.Logf("%d poll and %d watch files once each; %d cron slots, gaps beyond %s: %v (outage %s)",
		files*2, files*2, len(slots), period, gaps, outage.Round(time.Millisecond))
}

// runs are a schedule's runs as the API shows them.
func runs(t *testing.T, api *ts.APIClient, name string) []wire.ScheduleRun {
	t.Helper()
	var sc wire.Schedule
	r, err := api.Do("GET", "/api/schedules/"+name, nil)
	if err != nil || r.Status != 200 {
		return nil
	}
	if err := r.Decode(&sc); err != nil {
		t.Fatal(err)
	}
	return sc.Runs
}
