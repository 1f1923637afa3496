package cluster_test

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// The chaos campaign without Docker (make chaos TRIALS=N): one cluster of
// real processes, each node as its own uid with its DataDir on its own
// loop-mounted ext4, GatewayHome on one more, and per trial a seeded random
// combination of kill -9, SIGSTOP past Deadline, disk stall (fsfreeze of a
// node's DataDir: its Raft log; or of GatewayHome: every session's writes,
// which the fence must get out of or die), partitions (symmetric and
// one-way, iptables owner match), SIGTERM and restarts at random moments,
// while clients upload (SFTP and FTP) and download through every node's
// address. After each trial: every acknowledged upload is there with its
// sha256, no two nodes served at once, the write audit shows every write
// under a valid lease; failover times are recorded.

var (
	chaosTrials = flag.Int("chaos.trials", 0, "trials of the chaos campaign (TestChaos; make chaos TRIALS=N); 0 skips it")
	chaosSeed   = flag.Uint64("chaos.seed", 0, "seed of the chaos campaign's fault schedule (0: from the clock)")
	chaosNodes  = flag.Int("chaos.nodes", 3, "nodes in the chaos campaign's cluster")
	chaosEnv    = flag.String("chaos.env", "", "comma-separated UDMG_*=value settings for the campaign's nodes (default: the product's timings)")
)

// chaosFaults are the fault kinds a trial combines.
var chaosFaults = []string{"kill9", "sigstop", "diskstall", "homestall", "part-both", "part-out", "part-in", "sigterm", "restart"}

// chaosFault is one fault of a trial's schedule.
type chaosFault struct {
	kind   string
	node   int           // index into the cluster's nodes
	active bool          // the node was ACTIVE when the trial began
	at     time.Duration // offset from the trial's start
}

func (f chaosFault) String() string {
	who := fmt.Sprintf("node%d", f.node+1)
	if f.active {
		who += "*"
	}
	return fmt.Sprintf("%s(%s)@%s", f.kind, who, f.at.Round(10*time.Millisecond))
}

// stopTimeout is how long a node may take to exit after SIGTERM (the main
// loop's own shutdown bound is 15 s).
const stopTimeout = 30 * time.Second

// termedRun is a process run that got SIGTERM, and when.
type termedRun struct {
	pid int
	at  time.Time
}

// chaosAck is one acknowledged upload.
type chaosAck struct {
	name, sum, proto, via string
	trial                 int
}

// chaosClients upload and download through every node until stopped; a
// client refused by one node tries the next.
type chaosClients struct {
	c     *ts.Cluster
	mu    sync.Mutex
	trial int
	seq   int
	acks  []chaosAck
	// downloads whose bytes differed from the acknowledged ones
	corrupt []string
}

func (cc *chaosClients) run(ctx context.Context, id int, rng *rand.Rand) {
	for ctx.Err() == nil {
		cc.mu.Lock()
		cc.seq++
		trial, seq := cc.trial, cc.seq
		var old *chaosAck
		if len(cc.acks) > 0 && rng.IntN(3) == 0 {
			a := cc.acks[rng.IntN(len(cc.acks))]
			old = &a
		}
		cc.mu.Unlock()
		proto := "sftp"
		if rng.IntN(5) < 2 {
			proto = "ftp"
		}
		start := rng.IntN(len(cc.c.Nodes))
		if old != nil {
			cc.download(ctx, *old, proto, start)
			continue
		}
		data := make([]byte, 1024+rng.IntN(256<<10))
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		name := fmt.Sprintf("chaos-t%04d-c%d-%06d.%s", trial, id, seq, proto)
		for i := range cc.c.Nodes {
			if ctx.Err() != nil {
				return
			}
			p := cc.c.Nodes[(start+i)%len(cc.c.Nodes)]
			var err error
			if proto == "sftp" {
				err = ts.UploadSFTP(p.SFTPAddr(), name, data, 5*time.Second)
			} else {
				err = ts.UploadFTP(p.FTPAddr(), name, data, 5*time.Second)
			}
			if err == nil {
				cc.mu.Lock()
				cc.acks = append(cc.acks, chaosAck{name: name, sum: ts.SHA256Hex(data), proto: proto, via: p.Name, trial: trial})
				cc.mu.Unlock()
				break
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// download reads an acknowledged file back through the first node that
// serves; a complete download with other bytes is corruption.
func (cc *chaosClients) download(ctx context.Context, a chaosAck, proto string, start int) {
	for i := range cc.c.Nodes {
		if ctx.Err() != nil {
			return
		}
		p := cc.c.Nodes[(start+i)%len(cc.c.Nodes)]
		var sum string
		var err error
		if proto == "sftp" {
			sum, err = ts.DownloadSFTP(p.SFTPAddr(), a.name, 5*time.Second)
		} else {
			sum, err = ts.DownloadFTP(p.FTPAddr(), a.name, 5*time.Second)
		}
		if err != nil {
			continue
		}
		if sum != a.sum {
			cc.mu.Lock()
			cc.corrupt = append(cc.corrupt, fmt.Sprintf("%s via %s/%s: sha256 %s, acknowledged %s", a.name, p.Name, proto, sum, a.sum))
			cc.mu.Unlock()
		}
		return
	}
}

// trialRow accumulates one fault combination's results.
type trialRow struct {
	trials, missing, corrupted, auditBad, lateStaging, hung int
	overlap                                                 time.Duration
	failovers                                               []time.Duration
}

func TestChaos(t *testing.T) {
	if *chaosTrials == 0 {
		t.Skip("chaos campaign: run with make chaos TRIALS=N (-chaos.trials=N)")
	}
	// FTP passive ports of their own: ftpserverlib binds them on every
	// address, and make e2e's load balancer holds the default range on
	// 127.0.0.1, so the campaign runs beside it.
	env := []string{"UDMG_LISTENERS_PASSIVEPORTS=31000-31049"}
	if *chaosEnv != "" {
		env = append(env, strings.Split(*chaosEnv, ",")...)
	}
	deadline := 2 * time.Second // the product default, unless -chaos.env says otherwise
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "UDMG_CONTROLLER_DEADLINE="); ok {
			if d, err := time.ParseDuration(v); err == nil {
				deadline = d
			}
		}
	}
	c, fw := faultCluster(t, *chaosNodes, withAudit(ts.Options{Env: env, LoopDataDirs: true, LoopHome: true}))
	seed := *chaosSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("chaos: seed=%d trials=%d nodes=%d deadline=%s (replay the schedule with -chaos.seed=%d)", seed, *chaosTrials, len(c.Nodes), deadline, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	settle(t, c)
	prober := ts.StartPingProber(c.Nodes, 15*time.Millisecond)
	defer prober.Stop()
	clients := &chaosClients{c: c}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range 2 {
		crng := rand.New(rand.NewPCG(seed+uint64(i)+1, 7))
		wg.Add(1)
		go func() { defer wg.Done(); clients.run(ctx, i, crng) }()
	}
	stopClients := func() { cancel(); wg.Wait() }
	defer stopClients()

	rows := map[string]*trialRow{}
	audit := &auditChecker{}
	checked := 0
	endMissing, endCorrupted := -1, -1
	defer func() {
		// Also when a trial stops the campaign: the table of what ran.
		t.Log("\n" + chaosTable(rows, endMissing, endCorrupted))
	}()
	// Interrupted (Ctrl-C, SIGTERM), the campaign stops after the current
	// trial and still cleans up (thaw, kill, unmount, firewall) and reports.
	interrupted, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stopSignals()
	for trial := 1; trial <= *chaosTrials; trial++ {
		if interrupted.Err() != nil {
			t.Logf("interrupted after %d trials", trial-1)
			break
		}
		clients.mu.Lock()
		clients.trial = trial
		clients.mu.Unlock()
		active := settle(t, c)
		prober.Drain()
		trialStart := time.Now()

		// The schedule: 1 to 3 faults, mostly on the ACTIVE node.
		var faults []chaosFault
		kinds := slices.Clone(chaosFaults)
		rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
		for _, kind := range kinds[:1+rng.IntN(3)] {
			node := slices.Index(c.Nodes, active)
			if rng.IntN(10) >= 7 {
				node = rng.IntN(len(c.Nodes))
			}
			faults = append(faults, chaosFault{kind: kind, node: node, active: c.Nodes[node] == active,
				at: time.Duration(rng.Int64N(int64(deadline)))})
		}
		sort.Slice(faults, func(i, j int) bool { return faults[i].at < faults[j].at })
		hold := deadline + time.Duration(rng.Int64N(int64(deadline)+int64(time.Second)))
		names := make([]string, len(faults))
		for i, f := range faults {
			names[i] = f.kind
		}
		slices.Sort(names)
		combo := strings.Join(names, "+")

		var firstHit time.Time
		var restarts sync.WaitGroup
		termed := map[*ts.Proc]termedRun{} // the runs that got SIGTERM
		for _, f := range faults {
			time.Sleep(time.Until(trialStart.Add(f.at))) // the random moment itself
			p := c.Nodes[f.node]
			if f.active && firstHit.IsZero() {
				firstHit = time.Now()
			}
			switch f.kind {
			case "kill9":
				p.Signal(syscall.SIGKILL)
			case "sigstop":
				p.Stop()
			case "diskstall":
				if err := p.DataFS.Freeze(); err != nil {
					t.Fatal(err)
				}
			case "homestall":
				// GatewayHome is shared: this stalls the ACTIVE's
				// sessions and its successor's takeover alike.
				if err := c.HomeFS.Freeze(); err != nil {
					t.Fatal(err)
				}
			case "part-both", "part-out", "part-in":
				d := map[string]ts.Direction{"part-both": ts.Both, "part-out": ts.Outbound, "part-in": ts.Inbound}[f.kind]
				if err := fw.Isolate(p, c.Nodes, d); err != nil {
					t.Fatal(err)
				}
			case "sigterm":
				if p.Running() {
					termed[p] = termedRun{pid: p.Pid(), at: time.Now()}
				}
				p.Term()
			case "restart":
				if p.Running() {
					termed[p] = termedRun{pid: p.Pid(), at: time.Now()}
				}
				p.Term()
				restarts.Add(1)
				go func() {
					defer restarts.Done()
					if p.Wait(15*time.Second) && !p.Running() {
						p.Start()
					}
				}()
			}
		}
		// Faults hold past Deadline, then everything heals.
		time.Sleep(time.Until(trialStart.Add(faults[len(faults)-1].at + hold))) // the fault's duration itself
		if err := c.HealAll(fw); err != nil {
			t.Fatal(err)
		}
		restarts.Wait()
		// As a service manager would: a node that has not stopped within
		// stopTimeout of its SIGTERM is killed, and that is a failure.
		hung := 0
		for p, run := range termed {
			still := func() bool { return p.Running() && p.Pid() == run.pid }
			if ts.Eventually(time.Until(run.at.Add(stopTimeout)), func() bool { return !still() }) {
				continue
			}
			hung++
			// SIGQUIT first: the Go runtime writes every goroutine's stack
			// to the node's log, which shows where the shutdown hangs.
			p.Signal(syscall.SIGQUIT)
			p.Wait(5 * time.Second)
			t.Errorf("trial %d: %s (pid %d) still ran %s after SIGTERM; its goroutines are in %s (SIGQUIT)", trial, p.Name, run.pid, stopTimeout, p.LogPath)
			p.Kill()
		}
		settle(t, c)

		serves := prober.Drain()
		overlap, first := ts.OverlapOf(serves)
		var failover time.Duration
		if !firstHit.IsZero() {
			for _, s := range serves {
				if s.Proto == "sftp" && s.Node != active.Name && !s.Dial.Before(firstHit) {
					failover = s.Recv.Sub(firstHit)
					break
				}
			}
		}
		clients.mu.Lock()
		acks := slices.Clone(clients.acks[checked:])
		checked = len(clients.acks)
		corrupt := slices.Clone(clients.corrupt)
		clients.corrupt = nil
		clients.mu.Unlock()
		missing, corrupted := checkChaosAcks(t, c, acks)
		corrupted += len(corrupt)
		for _, s := range corrupt {
			t.Errorf("trial %d: download %s", trial, s)
		}
		bad, late := audit.check(t, c, trial)

		row := rows[combo]
		if row == nil {
			row = &trialRow{}
			rows[combo] = row
		}
		row.trials++
		row.missing += missing
		row.corrupted += corrupted
		row.auditBad += bad
		row.lateStaging += late
		row.hung += hung
		row.overlap += overlap
		fo := "-"
		if failover > 0 {
			row.failovers = append(row.failovers, failover)
			fo = failover.Round(time.Millisecond).String()
		}
		t.Logf("trial %d/%d: %s failover=%s overlap=%s acked=%d missing=%d corrupted=%d audit_violations=%d late_staging=%d hung=%d",
			trial, *chaosTrials, faultList(faults), fo, overlap, len(acks), missing, corrupted, bad, late, hung)
		if overlap != 0 {
			t.Errorf("trial %d: two nodes served at once for %s (first: %s)", trial, overlap, first)
		}
		if trial%25 == 0 && trial < *chaosTrials {
			t.Logf("after %d trials:\n%s", trial, chaosTable(rows, -1, -1))
		}
	}
	stopClients()
	settle(t, c)
	clients.mu.Lock()
	all := slices.Clone(clients.acks)
	clients.mu.Unlock()
	missing, corrupted := checkChaosAcks(t, c, all)
	endMissing, endCorrupted = missing, corrupted
	var ftpAcks int
	for _, a := range all {
		if a.proto == "ftp" {
			ftpAcks++
		}
	}
	if ftpAcks == 0 || ftpAcks == len(all) {
		t.Errorf("acknowledged uploads: %d of %d over FTP; the clients must get both SFTP and FTP through", ftpAcks, len(all))
	}
	t.Logf("campaign end: %d acknowledged uploads (%d FTP) re-checked: missing=%d corrupted=%d; audit lines checked=%d", len(all), ftpAcks, missing, corrupted, audit.lines)
}

func faultList(fs []chaosFault) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = f.String()
	}
	return "[" + strings.Join(s, " ") + "]"
}

// checkChaosAcks checks acknowledged uploads on GatewayHome: present under
// their name, with their sha256.
func checkChaosAcks(t *testing.T, c *ts.Cluster, acks []chaosAck) (missing, corrupted int) {
	t.Helper()
	for _, a := range acks {
		path := filepath.Join(c.Home, "admin", a.name)
		if _, err := os.Stat(path); err != nil {
			t.Errorf("trial %d: upload %s acknowledged by %s over %s is missing: %v", a.trial, a.name, a.via, a.proto, err)
			missing++
			continue
		}
		if got := ts.FileSHA256(t, path); got != a.sum {
			t.Errorf("trial %d: upload %s acknowledged by %s over %s: sha256 %s, want %s", a.trial, a.name, a.via, a.proto, got, a.sum)
			corrupted++
		}
	}
	return missing, corrupted
}

func chaosTable(rows map[string]*trialRow, endMissing, endCorrupted int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-36s %6s %9s %8s %9s %6s %6s %5s %9s %9s %9s\n", "faults", "trials", "overlap", "missing", "corrupted", "audit", "late", "hung", "failovers", "median", "p99")
	keys := make([]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	total := &trialRow{}
	line := func(name string, r *trialRow) {
		med, p99 := "-", "-"
		if len(r.failovers) > 0 {
			d := slices.Clone(r.failovers)
			slices.Sort(d)
			med, p99 = percentile(d, 0.5).String(), percentile(d, 0.99).String()
		}
		fmt.Fprintf(&b, "%-36s %6d %9s %8d %9d %6d %6d %5d %9d %9s %9s\n", name, r.trials, r.overlap, r.missing, r.corrupted, r.auditBad, r.lateStaging, r.hung, len(r.failovers), med, p99)
	}
	for _, k := range keys {
		r := rows[k]
		line(k, r)
		total.trials += r.trials
		total.overlap += r.overlap
		total.missing += r.missing
		total.corrupted += r.corrupted
		total.auditBad += r.auditBad
		total.lateStaging += r.lateStaging
		total.hung += r.hung
		total.failovers = append(total.failovers, r.failovers...)
	}
	line("ALL", total)
	fmt.Fprintf(&b, "audit: stale-epoch changes to users' files (must be 0); late: stale-epoch writes into the writer's own staging file; hung: nodes still running %s after SIGTERM (killed)\n", stopTimeout)
	if endMissing >= 0 {
		fmt.Fprintf(&b, "re-checked at the end: missing=%d corrupted=%d\n", endMissing, endCorrupted)
	}
	return b.String()
}

// auditChecker checks the nodes' write audits as they grow: every write
// under an epoch whose lease was valid at that moment, i.e. no write under
// an epoch older than one that had already written or become ACTIVE.
type auditChecker struct {
	offsets  map[string]int // bytes of each audit file already checked
	newest   uint64         // newest epoch seen writing
	newestAt int64
	lines    int
}

// staging says whether path is an upload's staging file, where a fenced
// node's late write may land by design (it never becomes a client's file).
func staging(path string) bool { return strings.Contains(filepath.Base(path), ".udmg-staging.") }

var (
	acquiredEpoch = regexp.MustCompile(`^time=(\S+) .*msg="lease acquired" .*\bepoch=(\d+)`)
	becameActive  = regexp.MustCompile(`^time=(\S+) .*msg="mode changed" .*\bto=ACTIVE\b`)
)

// activations reads, from every node's log, when each epoch's holder
// reported ACTIVE (unix ns).
func activations(c *ts.Cluster) map[uint64]int64 {
	out := map[uint64]int64{}
	for _, p := range c.Nodes {
		var epoch uint64
		for _, l := range strings.Split(p.Log(), "\n") {
			if m := acquiredEpoch.FindStringSubmatch(l); m != nil {
				epoch, _ = strconv.ParseUint(m[2], 10, 64)
			} else if m := becameActive.FindStringSubmatch(l); m != nil && epoch != 0 {
				if at, err := time.Parse(time.RFC3339Nano, m[1]); err == nil {
					if _, seen := out[epoch]; !seen {
						out[epoch] = at.UnixNano()
					}
				}
			}
		}
	}
	return out
}

// check reads the audit lines written since the last check; bad counts
// stale-epoch changes to users' files, late the stale-epoch writes that
// landed in staging files (harmless by design, reported apart).
func (ac *auditChecker) check(t *testing.T, c *ts.Cluster, trial int) (bad, late int) {
	t.Helper()
	if ac.offsets == nil {
		ac.offsets = map[string]int{}
	}
	var lines []auditLine
	for _, p := range c.Nodes {
		all := readAudit(t, p)
		lines = append(lines, all[min(ac.offsets[p.Name], len(all)):]...)
		ac.offsets[p.Name] = len(all)
	}
	ac.lines += len(lines)
	for _, f := range ac.judge(lines, activations(c)) {
		if f.late {
			late++
			t.Logf("trial %d: late write (never a client's file): %s", trial, f.why)
			continue
		}
		bad++
		if bad <= 5 {
			t.Errorf("trial %d: %s", trial, f.why)
		}
	}
	return bad, late
}

// auditFinding is one change made under a stale epoch; late marks a write
// into a staging file.
type auditFinding struct {
	late bool
	why  string
}

// judge checks lines (any order) against the epochs' activation times (unix
// ns) and what earlier calls saw: a change is stale when a newer epoch had
// already written, or its holder had already become ACTIVE.
func (ac *auditChecker) judge(lines []auditLine, act map[uint64]int64) []auditFinding {
	epochs := make([]uint64, 0, len(act))
	for e := range act {
		epochs = append(epochs, e)
	}
	slices.Sort(epochs)
	at := func(ns int64) string { return time.Unix(0, ns).Format("15:04:05.000000") }
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].UnixNs < lines[j].UnixNs })
	var out []auditFinding
	for _, l := range lines {
		why := ""
		if l.Epoch < ac.newest {
			why = fmt.Sprintf("after epoch %d wrote at %s", ac.newest, at(ac.newestAt))
		} else {
			for _, e := range epochs {
				if e > l.Epoch && act[e] < l.UnixNs {
					why = fmt.Sprintf("after epoch %d's holder became ACTIVE at %s", e, at(act[e]))
					break
				}
			}
		}
		if why == "" || l.Epoch > ac.newest {
			ac.newest, ac.newestAt = max(ac.newest, l.Epoch), l.UnixNs
		}
		if why != "" {
			out = append(out, auditFinding{late: l.Op == "write" && staging(l.Path),
				why: fmt.Sprintf("%s %s %s (%d bytes at %d) under epoch %d at %s, %s", l.Node, l.Op, l.Path, l.Len, l.Off, l.Epoch, at(l.UnixNs), why)})
		}
	}
	return out
}
