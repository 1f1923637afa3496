package licensing

import (
	"maps"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

const deadline = 2 * time.Second

// Helpers that read like the scenarios: on(id, seq), off(id, seq, for how long).
func on(id string, seq uint64) Member { return Member{ID: id, Seq: seq} }

func off(id string, seq uint64, d time.Duration) Member {
	return Member{ID: id, Seq: seq, Offline: true, OfflineSince: testNow.Add(-d)}
}

func held(m Member) Member { m.Licensed = true; return m }

func ids(set map[string]bool) string {
	var out []string
	for id, ok := range set {
		if ok {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func set(list ...string) map[string]bool {
	m := map[string]bool{}
	for _, id := range list {
		m[id] = true
	}
	return m
}

func license(n int) License {
	l := testLic
	l.Nodes = n
	return l
}

// TestSlots checks who holds a slot; TestMayBeActive uses the same scenarios.
func TestSlots(t *testing.T) {
	expired := license(2)
	expired.Expires = testNow
	cases := []struct {
		name    string
		lic     License
		members []Member
		want    string
	}{
		// No license file: a one-node evaluation.
		{"evaluation, 3 nodes: first registered is licensed", Evaluation(),
			[]Member{on("A", 1), on("B", 2), on("C", 3)}, "A"},
		{"evaluation, order is Seq not slice order or ID", Evaluation(),
			[]Member{on("A", 3), on("C", 1), on("B", 2)}, "C"},
		{"evaluation, licensed node dead within deadline keeps slot", Evaluation(),
			[]Member{off("A", 1, time.Second), on("B", 2), on("C", 3)}, "A"},
		{"evaluation, dead exactly deadline keeps slot", Evaluation(),
			[]Member{off("A", 1, deadline), on("B", 2), on("C", 3)}, "A"},
		{"evaluation, dead beyond deadline gives slot to next in order", Evaluation(),
			[]Member{off("A", 1, deadline+time.Millisecond), on("B", 2), on("C", 3)}, "B"},
		{"evaluation, offline with unknown time has no claim", Evaluation(),
			[]Member{{ID: "A", Seq: 1, Offline: true}, on("B", 2)}, "B"},
		{"evaluation, returning node does not take back a sticky slot", Evaluation(),
			[]Member{on("A", 1), held(on("B", 2)), on("C", 3)}, "B"},
		{"evaluation, returning node regains slot without stickiness", Evaluation(),
			[]Member{on("A", 1), on("B", 2), on("C", 3)}, "A"},

		// A license for 2 on 3 nodes: ACTIVE, PASSIVE, UNLICENSED.
		{"2 of 3, all up", license(2),
			[]Member{on("A", 1), on("B", 2), on("C", 3)}, "A,B"},
		{"2 of 3, A dead within deadline: C still unlicensed", license(2),
			[]Member{off("A", 1, deadline-time.Millisecond), on("B", 2), on("C", 3)}, "A,B"},
		{"2 of 3, A dead beyond deadline: slot goes to C", license(2),
			[]Member{off("A", 1, deadline+time.Millisecond), on("B", 2), on("C", 3)}, "B,C"},
		{"2 of 3, A back after C took its slot (sticky)", license(2),
			[]Member{on("A", 1), held(on("B", 2)), held(on("C", 3))}, "B,C"},
		{"2 of 3, A back, sticky B, C went offline long ago", license(2),
			[]Member{on("A", 1), held(on("B", 2)), held(off("C", 3, time.Hour))}, "A,B"},
		{"2 of 3, two dead beyond deadline: only C", license(2),
			[]Member{off("A", 1, time.Minute), off("B", 2, time.Minute), on("C", 3)}, "C"},
		{"2 of 3, offline newcomer within deadline still counts in order", license(2),
			[]Member{on("A", 1), off("B", 2, time.Second), on("C", 3)}, "A,B"},

		// Other limits.
		{"3 of 3", license(3), []Member{on("A", 1), on("B", 2), on("C", 3)}, "A,B,C"},
		{"5 for 3 nodes", license(5), []Member{on("A", 1), on("B", 2), on("C", 3)}, "A,B,C"},
		{"license shrank 3 to 2: earliest holders keep", license(2),
			[]Member{held(on("A", 1)), held(on("B", 2)), held(on("C", 3))}, "A,B"},
		{"license grew 1 to 2: holder keeps, next in order joins", license(2),
			[]Member{on("A", 1), held(on("B", 2)), on("C", 3)}, "A,B"},
		{"sticky holder beyond deadline loses its slot", license(1),
			[]Member{held(off("A", 1, time.Minute)), on("B", 2)}, "B"},
		{"expired license: nobody", expired, []Member{on("A", 1), on("B", 2)}, ""},
		{"zero license: nobody", License{}, []Member{on("A", 1)}, ""},
		{"no members", license(2), nil, ""},
		{"duplicate and empty IDs", license(2),
			[]Member{on("A", 1), on("A", 5), on("", 0), on("B", 2)}, "A,B"},
		{"equal Seq broken by ID", license(1), []Member{on("B", 1), on("A", 1)}, "A"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := slices.Clone(c.members)
			got := Slots(c.lic, c.members, testNow, deadline)
			if got == nil {
				t.Fatal("nil map")
			}
			if ids(got) != c.want {
				t.Errorf("Slots = {%s}, want {%s}", ids(got), c.want)
			}
			if len(got) != len(strings.Split(c.want, ",")) && c.want != "" {
				t.Errorf("map has %d entries for {%s}", len(got), c.want)
			}
			if !slices.Equal(in, c.members) {
				t.Error("Slots modified its input")
			}
			// Pure: the same inputs give the same answer.
			if again := Slots(c.lic, c.members, testNow, deadline); !maps.Equal(again, got) {
				t.Errorf("second call {%s} differs", ids(again))
			}
		})
	}
}

// TestMayBeActive walks the seed's rule: "An unlicensed node may participate
// in the health check decision only if there is no other Passive Cluster Node
// and the licensed number of nodes is 1."
func TestMayBeActive(t *testing.T) {
	expired := Evaluation()
	expired.ID, expired.Issued, expired.Expires = "old", testLic.Issued, testNow
	cases := []struct {
		name    string
		lic     License
		members []Member
		alive   []string
		want    map[string]bool // candidate -> may be ACTIVE
	}{
		{"evaluation, all up: only the licensed node", Evaluation(),
			[]Member{on("A", 1), on("B", 2), on("C", 3)}, []string{"A", "B", "C"},
			map[string]bool{"A": true, "B": false, "C": false}},
		{"evaluation, licensed A just died: unlicensed may take over (no licensed passive)", Evaluation(),
			[]Member{off("A", 1, time.Second), on("B", 2), on("C", 3)}, []string{"B", "C"},
			map[string]bool{"A": true, "B": true, "C": true}},
		{"evaluation, gossip already says A is dead before the registry does", Evaluation(),
			[]Member{on("A", 1), on("B", 2), on("C", 3)}, []string{"B", "C"},
			map[string]bool{"B": true, "C": true}},
		{"evaluation, A dead beyond deadline: B licensed, C must not", Evaluation(),
			[]Member{off("A", 1, time.Minute), on("B", 2), on("C", 3)}, []string{"B", "C"},
			map[string]bool{"B": true, "C": false}},
		{"evaluation, unlicensed B took over, A back before deadline: licensed passive A wins", Evaluation(),
			[]Member{on("A", 1), on("B", 2), on("C", 3)}, []string{"A", "B", "C"},
			map[string]bool{"A": true, "B": false, "C": false}},
		{"evaluation, B took A's slot, A back (sticky): A is the unlicensed one", Evaluation(),
			[]Member{on("A", 1), held(on("B", 2)), on("C", 3)}, []string{"A", "B", "C"},
			map[string]bool{"A": false, "B": true, "C": false}},
		{"evaluation, single node", Evaluation(),
			[]Member{on("A", 1)}, []string{"A"}, map[string]bool{"A": true}},
		{"evaluation, candidate not yet registered and nobody licensed alive", Evaluation(),
			[]Member{off("A", 1, time.Second)}, []string{"N"}, map[string]bool{"N": true}},

		{"2 of 3, all up: ACTIVE, PASSIVE, UNLICENSED", license(2),
			[]Member{on("A", 1), on("B", 2), on("C", 3)}, []string{"A", "B", "C"},
			map[string]bool{"A": true, "B": true, "C": false}},
		{"2 of 3, A dead within deadline: B may, C may not", license(2),
			[]Member{off("A", 1, time.Second), on("B", 2), on("C", 3)}, []string{"B", "C"},
			map[string]bool{"B": true, "C": false}},
		{"2 of 3, A and B dead within deadline: C still may not (limit is not 1)", license(2),
			[]Member{off("A", 1, time.Second), off("B", 2, time.Second), on("C", 3)}, []string{"C"},
			map[string]bool{"C": false}},
		{"2 of 3, A dead beyond deadline: C got the slot", license(2),
			[]Member{off("A", 1, time.Minute), on("B", 2), on("C", 3)}, []string{"B", "C"},
			map[string]bool{"A": false, "B": true, "C": true}},

		{"signed one-node license follows the seed rule", license(1),
			[]Member{off("A", 1, time.Second), on("B", 2)}, []string{"B"},
			map[string]bool{"B": true}},
		{"signed one-node license, licensed passive alive", license(1),
			[]Member{on("A", 1), on("B", 2)}, []string{"A", "B"},
			map[string]bool{"B": false}},
		{"expired one-node license: nobody", expired,
			[]Member{on("A", 1), on("B", 2)}, []string{"A", "B"},
			map[string]bool{"A": false, "B": false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			slots := Slots(c.lic, c.members, testNow, deadline)
			alive := set(c.alive...)
			for cand, want := range c.want {
				if got := MayBeActive(c.lic, testNow, cand, slots, alive); got != want {
					t.Errorf("MayBeActive(%s) = %v, want %v (slots {%s}, alive %v)", cand, got, want, ids(slots), c.alive)
				}
			}
		})
	}
}

// TestFailoverSequence plays the seed's three-node evaluation story step by
// step, feeding each assignment back as the state machine would.
func TestFailoverSequence(t *testing.T) {
	lic := Evaluation()
	members := []Member{on("A", 1), on("B", 2), on("C", 3)}
	step := func(now time.Time) map[string]bool {
		slots := Slots(lic, members, now, deadline)
		for i := range members {
			members[i].Licensed = slots[members[i].ID]
		}
		return slots
	}
	t0 := testNow
	if s := step(t0); ids(s) != "A" {
		t.Fatalf("t0 slots {%s}", ids(s))
	}
	// A dies; the leader marks it OFFLINE. B (unlicensed) may take over at once.
	members[0].Offline, members[0].OfflineSince = true, t0
	s := step(t0.Add(time.Second))
	if ids(s) != "A" || !MayBeActive(lic, t0.Add(time.Second), "B", s, set("B", "C")) {
		t.Fatalf("after A died: slots {%s}", ids(s))
	}
	// After Deadline, A's slot passes to B; C stays unlicensed.
	s = step(t0.Add(3 * time.Second))
	if ids(s) != "B" || MayBeActive(lic, t0.Add(3*time.Second), "C", s, set("B", "C")) {
		t.Fatalf("after deadline: slots {%s}", ids(s))
	}
	// A comes back: B keeps the slot (and stays ACTIVE); A is UNLICENSED.
	members[0].Offline, members[0].OfflineSince = false, time.Time{}
	s = step(t0.Add(10 * time.Second))
	if ids(s) != "B" || MayBeActive(lic, t0.Add(10*time.Second), "A", s, set("A", "B", "C")) {
		t.Fatalf("after A returned: slots {%s}", ids(s))
	}
}
