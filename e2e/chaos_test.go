package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Trial is one fault injected and healed.
type Trial struct {
	Failover  time.Duration // fault → first acknowledged upload started after it; <0: not measured
	Recovery  time.Duration // heal → all three nodes back (one ACTIVE, two PASSIVE) and an upload acknowledged; <0: n/a
	Errors    int           // failed client attempts from the fault to recovery
	Takeovers int           // times a node began answering ACTIVE, fault to recovery
	Notes     []string
}

// Result is one scenario's figures.
type Result struct {
	Name, What  string
	Trials      []Trial
	Start, End  time.Time
	Overlap     time.Duration
	OverlapDesc string
	PingOverlap time.Duration
	Acked       int
	Missing     int
	Corrupt     int
	Notes       []string
	Failures    []string // reasons the suite fails
}

func (r *Result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Suite is the running cluster with its prober and client.
type Suite struct {
	t *testing.T
	c *Cluster
	p *Prober
	u *Uploader
}

type scenario struct {
	name, what string
	trials     int
	run        func(s *Suite, r *Result, trials int)
}

var scenarios = []scenario{
	{"kill9", "docker kill -s KILL the ACTIVE; docker start it Deadline+1s later (rejoins PASSIVE)", 8, (*Suite).kill9},
	{"disconnect", "docker network disconnect the ACTIVE from the cluster network for Deadline+3s, reconnect", 4, (*Suite).disconnect},
	{"minority", "iptables: cut one PASSIVE node off from the two others for Deadline+3s, heal (no failover expected)", 3, (*Suite).minority},
	{"noquorum", "iptables: cut all three nodes off from each other for Deadline+6s (nobody may serve), heal", 2, (*Suite).noQuorum},
	{"pause", "docker pause the ACTIVE for Deadline+3s (stale leader), unpause", 4, (*Suite).pause},
	{"dbdown", "docker stop PostgreSQL; kill -9 the ACTIVE while it is down; start both again", 2, (*Suite).dbDown},
	{"restartall", "restart all three nodes at once (docker restart, then kill -9 + start); failover counted from the restart", 2, (*Suite).restartAll},
	{"rolling", "rolling restart, one node at a time, ACTIVE first (SIGTERM: planned handover)", 2, (*Suite).rolling},
}

func TestChaos(t *testing.T) {
	requireDocker(t)
	wall := time.Now()
	only := map[string]bool{}
	for _, n := range strings.Split(os.Getenv("E2E_SCENARIOS"), ",") {
		if n = strings.TrimSpace(n); n != "" {
			only[n] = true
		}
	}
	mult := 1.0
	if v, err := strconv.ParseFloat(os.Getenv("E2E_TRIALS"), 64); err == nil && v > 0 {
		mult = v
	}
	soak := envDuration("E2E_SOAK", 10*time.Minute)

	c := StartCluster(t)
	s := &Suite{t: t, c: c, p: StartProber(c.Nodes)}
	defer s.p.Stop()
	if _, err := s.waitNodes(90 * time.Second); err != nil {
		t.Fatalf("cluster did not come up: %v", err)
	}
	s.u = StartUploader(fmt.Sprintf("%s:%d", c.lbHost, c.sftpPort), "admin", adminPassword)
	defer s.u.Stop()
	if _, err := s.waitStable(time.Now(), 60*time.Second); err != nil {
		t.Fatalf("no upload through the load balancer: %v; client errors: %v", err, lastFailures(s.u, 5))
	}
	t.Logf("cluster up, uploads through lb acknowledged; startup took %v", time.Since(wall).Round(time.Second))
	s.ftpSmoke()

	// Stop in time for the teardown: a `go test -timeout` panic would leave
	// the containers behind.
	left := func() time.Duration {
		if d, ok := t.Deadline(); ok {
			return time.Until(d) - 5*time.Minute
		}
		return time.Hour
	}
	var results []*Result
	for _, sc := range scenarios {
		if len(only) > 0 && !only[sc.name] {
			continue
		}
		if left() < 3*time.Minute {
			t.Errorf("%s: not run, the test's -timeout is too close", sc.name)
			continue
		}
		trials := max(1, int(math.Round(float64(sc.trials)*mult)))
		r := &Result{Name: sc.name, What: sc.what}
		t.Run(sc.name, func(t *testing.T) {
			s.t = t
			s.scenario(r, func() { sc.run(s, r, trials) })
		})
		results = append(results, r)
	}
	if soak = min(soak, left()); soak > 0 && (len(only) == 0 || only["soak"]) {
		r := &Result{Name: "soak", What: fmt.Sprintf("no fault for %v (spurious elections; goal 0)", soak)}
		t.Run("soak", func(t *testing.T) {
			s.t = t
			s.scenario(r, func() { s.soak(r, soak) })
		})
		results = append(results, r)
	}
	s.t = t

	// Every acknowledged upload of the whole run, once more at the end.
	all := s.u.Acks("")
	missing, corrupt, err := c.verify(all)
	if err != nil {
		t.Errorf("final verification: %v", err)
	}
	total := &Result{Name: "whole run", Acked: len(all), Missing: len(missing), Corrupt: len(corrupt), Start: wall, End: time.Now()}
	total.Overlap, total.OverlapDesc = s.p.GreetOverlap(wall, time.Now())
	total.PingOverlap, _ = s.p.PingOverlap(wall, time.Now())
	if keys := s.u.HostKeys(); len(keys) != 1 {
		total.note("SSH host keys seen through lb: %d (%s)", len(keys), strings.Join(keys, ", "))
	}
	if len(missing)+len(corrupt) > 0 {
		t.Errorf("acknowledged uploads lost: %d missing (%s), %d corrupted (%s)", len(missing), firstN(missing, 5), len(corrupt), firstN(corrupt, 5))
	}
	if total.Overlap > 0 {
		t.Errorf("two nodes served at once for %v: %s", total.Overlap, total.OverlapDesc)
	}
	results = append(results, total)

	table := formatTable(c, results, time.Since(wall))
	fmt.Println(table)
	reportPath := os.Getenv("E2E_REPORT")
	if reportPath == "" {
		reportPath = filepath.Join(c.root, "bin", "e2e-report.txt")
	}
	os.MkdirAll(filepath.Dir(reportPath), 0o755)
	if err := os.WriteFile(reportPath, []byte(table+"\n"), 0o644); err == nil {
		t.Logf("table written to %s", reportPath)
	}
}

// scenario runs body with the uploads tagged by the scenario and then
// checks its window: overlap, lost uploads.
func (s *Suite) scenario(r *Result, body func()) {
	t := s.t
	r.Start = time.Now()
	s.u.SetTag(r.Name)
	if _, err := s.waitStable(time.Now(), 60*time.Second); err != nil {
		s.fail(r, "cluster not stable before the scenario: %v", err)
		r.End = time.Now()
		return
	}
	body()
	// Uploads tagged with this scenario have all ended before verifying.
	s.u.SetTag("between")
	s.u.Settle()
	r.End = time.Now()
	acks := s.u.Acks(r.Name)
	r.Acked = len(acks)
	missing, corrupt, err := s.c.verify(acks)
	if err != nil {
		t.Errorf("verify: %v", err)
	}
	r.Missing, r.Corrupt = len(missing), len(corrupt)
	if len(missing)+len(corrupt) > 0 {
		s.fail(r, "acknowledged uploads lost: %d missing (%s), %d corrupted (%s)", len(missing), firstN(missing, 5), len(corrupt), firstN(corrupt, 5))
	}
	r.Overlap, r.OverlapDesc = s.p.GreetOverlap(r.Start, r.End)
	if r.Overlap > 0 {
		s.fail(r, "two nodes served at once for %v: %s", r.Overlap, r.OverlapDesc)
	}
	r.PingOverlap, _ = s.p.PingOverlap(r.Start, r.End)
	if r.PingOverlap > 0 {
		r.note("two nodes answered /ping ACTIVE in intersecting probes for %v", r.PingOverlap)
	}
	for i, tr := range r.Trials {
		t.Logf("%s trial %d: failover=%s recovery=%s errors=%d %s", r.Name, i+1, fmtDur(tr.Failover), fmtDur(tr.Recovery), tr.Errors, strings.Join(tr.Notes, "; "))
	}
	for _, n := range r.Notes {
		t.Logf("%s: %s", r.Name, n)
	}
}

// ---- waiting ----

func (s *Suite) modesString() string {
	m := s.p.Modes()
	var b strings.Builder
	for i, n := range s.c.Nodes {
		if i > 0 {
			b.WriteString(" ")
		}
		b.WriteString(n.Name + "=" + m[i])
	}
	return b.String()
}

// waitNodes waits until every node answers /ping and exactly one is ACTIVE.
func (s *Suite) waitNodes(timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if s.healthy() {
			return time.Now(), nil
		}
		time.Sleep(probeEvery)
	}
	return time.Time{}, fmt.Errorf("after %v: %s", timeout, s.modesString())
}

func (s *Suite) healthy() bool {
	active, passive := 0, 0
	for _, m := range s.p.Modes() {
		switch m {
		case "ACTIVE":
			active++
		case "PASSIVE":
			passive++
		}
	}
	return active == 1 && passive == len(s.c.Nodes)-1
}

// waitStable waits until one node is ACTIVE and the others PASSIVE for a
// second without interruption (counted from no earlier than from) and an
// upload started after from was acknowledged. It returns the moment the
// cluster was back: the later of the start of that steady period and the
// acknowledgement.
func (s *Suite) waitStable(from time.Time, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	var streak time.Time
	for time.Now().Before(deadline) {
		now := time.Now()
		if s.healthy() {
			if streak.IsZero() {
				streak = now
			}
		} else {
			streak = time.Time{}
		}
		if !streak.IsZero() && now.Sub(streak) >= time.Second {
			if a, ok := s.u.FirstAckAfter(from); ok {
				back := streak
				if a.Done.After(back) {
					back = a.Done
				}
				if back.Before(from) {
					back = from
				}
				return back, nil
			}
		}
		time.Sleep(probeEvery)
	}
	return time.Time{}, fmt.Errorf("not stable after %v: %s; last client errors: %s", timeout, s.modesString(), lastFailures(s.u, 3))
}

// activeNode waits for a stable cluster and returns its ACTIVE node.
func (s *Suite) activeNode() (*Node, error) {
	if _, err := s.waitStable(time.Now().Add(-time.Second), 60*time.Second); err != nil {
		return nil, err
	}
	if i := s.p.Active(); i >= 0 {
		return s.c.Nodes[i], nil
	}
	return nil, errors.New("no single ACTIVE node: " + s.modesString())
}

func (s *Suite) passiveNode(except *Node) *Node {
	m := s.p.Modes()
	for i, n := range s.c.Nodes {
		if n != except && m[i] == "PASSIVE" {
			return n
		}
	}
	return nil
}

// failover waits until the prober has seen a node other than old (any node
// when old is nil) answer ACTIVE to a /ping sent after since, then for the
// first upload started after that answer to be acknowledged: that upload
// went to the new ACTIVE (two nodes never serve at once). It returns the
// time from t0 to that acknowledgement, or -1.
func (s *Suite) failover(t0, since time.Time, old *Node, timeout time.Duration) time.Duration {
	except := -1
	if old != nil {
		except = old.Idx
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if seen, ok := s.p.FirstActive(since, except); ok {
			if a, ok := s.u.FirstAckAfter(seen); ok {
				return a.Done.Sub(t0)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return -1
}

// fencedAfter is how long after t0 node n last answered ACTIVE or greeted
// (its lease ended within that time), looking until until.
func (s *Suite) fencedAfter(n *Node, t0, until time.Time) time.Duration {
	last := t0
	for _, g := range s.p.GreetsBetween(t0, until) {
		if g.Node == n.Idx && g.Recv.After(last) {
			last = g.Recv
		}
	}
	for _, pg := range s.p.PingsBetween(t0, until) {
		if pg.Node == n.Idx && pg.Mode == "ACTIVE" && pg.Recv.After(last) {
			last = pg.Recv
		}
	}
	return last.Sub(t0)
}

// firstModeAfter returns node n's first /ping answer (other than no answer)
// sent after t.
func (s *Suite) firstModeAfter(n *Node, t time.Time) string {
	for _, pg := range s.p.PingsBetween(t, time.Now()) {
		if pg.Node == n.Idx && pg.Mode != "-" {
			return pg.Mode
		}
	}
	return "-"
}

// finish records recovery, errors and takeovers for a trial whose fault
// began at t0 and was healed at heal.
func (s *Suite) finish(r *Result, tr *Trial, t0, heal time.Time) {
	back, err := s.waitStable(heal, 90*time.Second)
	if err != nil {
		tr.Recovery = -1
		tr.Notes = append(tr.Notes, "did not recover: "+err.Error())
		s.fail(r, "trial %d did not recover: %v", len(r.Trials)+1, err)
		back = time.Now()
	} else {
		tr.Recovery = back.Sub(heal)
	}
	tr.Errors = len(s.u.FailuresBetween(t0, back))
	starts := s.p.ActiveStarts(t0, back)
	tr.Takeovers = len(starts)
	if len(starts) > 0 {
		tr.Notes = append(tr.Notes, "ACTIVE taken: "+strings.Join(starts, ","))
	}
}

// fail records a reason for the suite to fail.
func (s *Suite) fail(r *Result, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.Failures = append(r.Failures, msg)
	s.t.Errorf("%s: %s", r.Name, msg)
}

func (s *Suite) must(r *Result, what string, err error) bool {
	if err != nil {
		s.fail(r, "%s: %v", what, err)
		return false
	}
	return true
}

// ---- scenarios ----

// fault is one kind of trial: inject a fault into a node, hold it, heal it.
type fault struct {
	what     string
	target   func(s *Suite, active *Node) *Node // nil: the ACTIVE node
	inject   func(n *Node) error
	failover bool                         // a new ACTIVE is expected: measure it
	hold     func(s *Suite) time.Duration // fault → heal (at least until the failover was seen)
	heal     func(n *Node) error
	during   func(s *Suite, r *Result, tr *Trial, n *Node, t0 time.Time)   // checks before the heal
	after    func(s *Suite, r *Result, tr *Trial, n *Node, heal time.Time) // checks once recovered
}

// trials runs f trials times, one after the other on a stable cluster.
func (s *Suite) trials(r *Result, trials int, f fault) {
	for range trials {
		a, err := s.activeNode()
		if !s.must(r, "find ACTIVE", err) {
			return
		}
		n := a
		if f.target != nil {
			if n = f.target(s, a); n == nil {
				s.must(r, "find a target", errors.New(s.modesString()))
				return
			}
		}
		tr := Trial{Failover: -1}
		start := time.Now()
		if !s.must(r, f.what+" "+n.Name, f.inject(n)) {
			return
		}
		// The fault is surely in effect once the command returned; the
		// docker CLI itself can take a second on a loaded machine.
		t0 := time.Now()
		if d := t0.Sub(start); d > 500*time.Millisecond {
			tr.Notes = append(tr.Notes, fmt.Sprintf("%s took %v", f.what, d.Round(10*time.Millisecond)))
		}
		if f.failover {
			tr.Failover = s.failover(t0, t0, n, 30*time.Second)
		}
		time.Sleep(time.Until(t0.Add(f.hold(s))))
		if f.during != nil {
			f.during(s, r, &tr, n, t0)
		}
		heal := time.Now()
		if !s.must(r, "heal "+n.Name, f.heal(n)) {
			return
		}
		s.finish(r, &tr, start, heal)
		if f.after != nil {
			f.after(s, r, &tr, n, heal)
		}
		r.Trials = append(r.Trials, tr)
	}
}

// deadlinePlus is a hold: Deadline plus d.
func deadlinePlus(d time.Duration) func(s *Suite) time.Duration {
	return func(s *Suite) time.Duration { return s.c.timing.Deadline + d }
}

// comesBackPassive checks a restarted or resumed ACTIVE does not serve again first.
func comesBackPassive(s *Suite, r *Result, tr *Trial, n *Node, heal time.Time) {
	if m := s.firstModeAfter(n, heal); m == "ACTIVE" {
		tr.Notes = append(tr.Notes, n.Name+" answered ACTIVE first after the heal")
	}
}

// fencedInTime notes how long the cut-off ACTIVE went on serving.
func fencedInTime(s *Suite, r *Result, tr *Trial, n *Node, t0 time.Time) {
	fenced := s.fencedAfter(n, t0, time.Now())
	tr.Notes = append(tr.Notes, fmt.Sprintf("old ACTIVE last served %v after the cut", fenced.Round(time.Millisecond)))
	if fenced > s.c.timing.Deadline+time.Second {
		r.note("%s kept serving %v after being cut off (Deadline %v)", n.Name, fenced.Round(time.Millisecond), s.c.timing.Deadline)
	}
}

func (s *Suite) kill9(r *Result, trials int) {
	s.trials(r, trials, fault{what: "kill -9", inject: s.c.Kill, failover: true,
		hold: deadlinePlus(time.Second), heal: s.c.Start, after: comesBackPassive})
}

func (s *Suite) disconnect(r *Result, trials int) {
	s.trials(r, trials, fault{what: "disconnect", inject: s.c.Disconnect, failover: true,
		hold: deadlinePlus(3 * time.Second), heal: s.c.Reconnect, during: fencedInTime})
}

func (s *Suite) pause(r *Result, trials int) {
	s.trials(r, trials, fault{what: "pause", inject: s.c.Pause, failover: true,
		hold: deadlinePlus(3 * time.Second), heal: s.c.Unpause, after: comesBackPassive})
}

func (s *Suite) minority(r *Result, trials int) {
	s.trials(r, trials, fault{what: "partition",
		target: func(s *Suite, a *Node) *Node { return s.passiveNode(a) },
		inject: func(n *Node) error {
			var rest []*Node
			for _, m := range s.c.Nodes {
				if m != n {
					rest = append(rest, m)
				}
			}
			return s.c.Partition([]*Node{n}, rest)
		},
		hold: deadlinePlus(3 * time.Second),
		heal: func(*Node) error { return s.c.Heal() },
		during: func(s *Suite, r *Result, tr *Trial, n *Node, t0 time.Time) {
			if starts := s.p.ActiveStarts(t0, time.Now()); len(starts) > 0 {
				r.note("the ACTIVE changed while only the PASSIVE %s was cut off: %s", n.Name, strings.Join(starts, ","))
			}
		},
	})
}

func (s *Suite) noQuorum(r *Result, trials int) {
	s.trials(r, trials, fault{what: "partition all",
		inject: func(*Node) error {
			var groups [][]*Node
			for _, n := range s.c.Nodes {
				groups = append(groups, []*Node{n})
			}
			return s.c.Partition(groups...)
		},
		hold: deadlinePlus(6 * time.Second),
		heal: func(*Node) error { return s.c.Heal() },
		during: func(s *Suite, r *Result, tr *Trial, _ *Node, t0 time.Time) {
			// Every lease still held was proposed before the cut, so
			// Deadline later nobody may serve; one more second covers
			// probe latency.
			quiet, now := t0.Add(s.c.timing.Deadline+time.Second), time.Now()
			var last time.Duration
			for _, n := range s.c.Nodes {
				last = max(last, s.fencedAfter(n, t0, now))
			}
			tr.Notes = append(tr.Notes, fmt.Sprintf("last service %v after the cut", last.Round(time.Millisecond)))
			for i, what := range s.p.ServedBetween(quiet, now) {
				s.fail(r, "%s served without quorum (%s)", s.c.Nodes[i].Name, what)
			}
			if acks := s.ackedBetween(quiet, now); acks > 0 {
				s.fail(r, "%d uploads acknowledged without quorum", acks)
			}
		},
	})
}

func (s *Suite) ackedBetween(from, to time.Time) int {
	n := 0
	for _, a := range s.u.Acks("") {
		if !a.Start.Before(from) && !a.Done.After(to) {
			n++
		}
	}
	return n
}

func (s *Suite) dbDown(r *Result, trials int) {
	for range trials {
		if _, err := s.activeNode(); !s.must(r, "find ACTIVE", err) {
			return
		}
		tr := Trial{}
		tdb := time.Now()
		if !s.must(r, "stop db", s.c.Stop(s.c.db)) {
			return
		}
		// Service goes on without the database: an upload acknowledged
		// after it stopped, with no failover.
		if _, err := s.waitStable(time.Now(), 30*time.Second); err != nil {
			tr.Notes = append(tr.Notes, "not stable right after the database stopped: "+err.Error())
		}
		a, err := s.activeNode()
		if !s.must(r, "find ACTIVE with the database down", err) {
			s.c.Start(s.c.db)
			return
		}
		if !s.must(r, "kill "+a.Name, s.c.Kill(a)) {
			s.c.Start(s.c.db)
			return
		}
		t0 := time.Now()
		tr.Failover = s.failover(t0, t0, a, 30*time.Second)
		s.must(r, "start "+a.Name, s.c.Start(a))
		if _, err := s.waitStable(time.Now(), 60*time.Second); err != nil {
			tr.Notes = append(tr.Notes, "not stable with the database down: "+err.Error())
		}
		heal := time.Now()
		tr.Notes = append(tr.Notes, fmt.Sprintf("database down for %v", heal.Sub(tdb).Round(100*time.Millisecond)))
		if !s.must(r, "start db", s.c.Start(s.c.db)) {
			return
		}
		s.finish(r, &tr, tdb, heal)
		tr.Notes = append(tr.Notes, s.mirrorCatchUp(heal))
		r.Trials = append(r.Trials, tr)
	}
}

// mirrorCatchUp reports whether the node table in PostgreSQL is written
// again after the database came back.
func (s *Suite) mirrorCatchUp(back time.Time) string {
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		out, err := s.c.psql("SELECT count(*) FILTER (WHERE last_update > now() - interval '5 seconds') || '/' || count(*) FROM udmg_nodes")
		if err == nil {
			last = out
			if fresh, _, ok := strings.Cut(out, "/"); ok && fresh == strconv.Itoa(len(s.c.Nodes)) {
				return fmt.Sprintf("mirror caught up %v after the database returned", time.Since(back).Round(100*time.Millisecond))
			}
		} else {
			last = err.Error()
		}
		time.Sleep(500 * time.Millisecond)
	}
	return "mirror: not caught up after 30 s (" + firstLine(last) + ")"
}

// parallel runs f on every node at once.
func (s *Suite) parallel(f func(n *Node) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(s.c.Nodes))
	for i, n := range s.c.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(n)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Suite) restartAll(r *Result, trials int) {
	before := s.nodeIDs()
	for i := range trials {
		if _, err := s.activeNode(); !s.must(r, "find ACTIVE", err) {
			return
		}
		tr := Trial{}
		how := "SIGTERM"
		t0 := time.Now()
		var err error
		if i%2 == 0 {
			err = s.parallel(s.c.Restart)
		} else if how = "kill -9"; true {
			if err = s.parallel(s.c.Kill); err == nil {
				err = s.parallel(s.c.Start)
			}
		}
		if !s.must(r, "restart all ("+how+")", err) {
			return
		}
		heal := time.Now()
		tr.Failover = s.failover(t0, heal, nil, 90*time.Second)
		tr.Notes = append(tr.Notes, fmt.Sprintf("%s; containers back after %v", how, heal.Sub(t0).Round(100*time.Millisecond)))
		s.finish(r, &tr, t0, heal)
		r.Trials = append(r.Trials, tr)
	}
	after := s.nodeIDs()
	if !slices.Equal(before, after) {
		s.fail(r, "node IDs changed across restarts: %v -> %v", before, after)
	} else {
		r.note("node IDs kept: %s", strings.Join(after, ", "))
	}
}

func (s *Suite) rolling(r *Result, rounds int) {
	handovers := 0
	for round := range rounds {
		done := map[*Node]bool{}
		for range s.c.Nodes {
			a, err := s.activeNode()
			if !s.must(r, "find ACTIVE", err) {
				return
			}
			// The ACTIVE node if it has not been restarted yet in this
			// round, else the next one not restarted.
			n := a
			if done[a] {
				for _, m := range s.c.Nodes {
					if !done[m] {
						n = m
						break
					}
				}
			}
			done[n] = true
			tr := Trial{Failover: -1}
			start := time.Now()
			if !s.must(r, "SIGTERM "+n.Name, s.c.docker("kill", "-s", "TERM", n.ID)) {
				return
			}
			t0 := time.Now()
			if !s.must(r, "wait for "+n.Name+" to exit", s.c.docker("wait", n.ID)) {
				return
			}
			stopped := time.Since(t0)
			role := "PASSIVE"
			if n == a {
				role = "ACTIVE"
				handovers++
				tr.Failover = s.failover(t0, t0, n, 30*time.Second)
			}
			tr.Notes = append(tr.Notes, fmt.Sprintf("round %d: %s (%s) exited %v after SIGTERM", round+1, n.Name, role, stopped.Round(10*time.Millisecond)))
			heal := time.Now()
			if !s.must(r, "start "+n.Name, s.c.Start(n)) {
				return
			}
			s.finish(r, &tr, start, heal)
			comesBackPassive(s, r, &tr, n, heal)
			r.Trials = append(r.Trials, tr)
		}
	}
	r.note("%d planned handovers in %d restarts", handovers, len(r.Trials))
}

func (s *Suite) soak(r *Result, d time.Duration) {
	t0 := time.Now()
	end := t0.Add(d)
	for time.Now().Before(end) {
		time.Sleep(min(time.Second, time.Until(end)))
	}
	starts := s.p.ActiveStarts(t0, end)
	fails := s.u.FailuresBetween(t0, end)
	won, candidates, lost := 0, 0, 0
	for _, n := range s.c.Nodes {
		logs := s.c.nodeLogsSince(n, t0)
		won += strings.Count(logs, "won leadership")
		candidates += strings.Count(logs, "entering candidate state")
		lost += strings.Count(logs, "lease lost") + strings.Count(logs, "stepping down")
	}
	r.Trials = append(r.Trials, Trial{Failover: -1, Recovery: -1, Errors: len(fails), Takeovers: len(starts)})
	r.note("spurious elections: %d won, %d candidacies, %d step-downs or lease losses in the logs; ACTIVE taken %d times by /ping%s",
		won, candidates, lost, len(starts), listIf(starts))
	if len(fails) > 0 {
		r.note("client errors during the soak, first: %s", fails[0].Err)
	}
}

func listIf(xs []string) string {
	if len(xs) == 0 {
		return ""
	}
	return " (" + firstN(xs, 6) + ")"
}

// nodeIDs asks each node for its ID (sb_healthcheck).
func (s *Suite) nodeIDs() []string {
	var out []string
	client := &http.Client{Timeout: 3 * time.Second}
	for _, n := range s.c.Nodes {
		id := "?"
		req, _ := http.NewRequest("GET", "http://"+n.FrontIP+":8080/api/sb_healthcheck", nil)
		req.SetBasicAuth("admin", adminPassword)
		if resp, err := client.Do(req); err == nil {
			var h struct {
				NodeID string `json:"nodeId"`
			}
			if json.NewDecoder(resp.Body).Decode(&h) == nil && h.NodeID != "" {
				id = h.NodeID
			}
			resp.Body.Close()
		}
		out = append(out, id)
	}
	return out
}

// ---- helpers ----

func lastFailures(u *Uploader, n int) string {
	fs := u.FailuresBetween(time.Time{}, time.Now())
	if len(fs) > n {
		fs = fs[len(fs)-n:]
	}
	var parts []string
	for _, f := range fs {
		parts = append(parts, f.At.Format("15:04:05.000")+" "+f.Phase+": "+firstLine(f.Err))
	}
	return strings.Join(parts, " | ")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func firstN(xs []string, n int) string {
	if len(xs) > n {
		return strings.Join(xs[:n], ", ") + ", …"
	}
	return strings.Join(xs, ", ")
}
