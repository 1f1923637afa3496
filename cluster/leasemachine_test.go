package cluster

import (
	"testing"
	"time"

	"github.com/udmg/gateway/fsm"
)

// TestDeclaredGraceDecidesTheWait: a successor waits, beyond the lease, the
// grace its holder declared with the acquire (fsm.Lease.Grace), and its own
// guess (UndeclaredGrace) only for a holder that declared none.
func TestDeclaredGraceDecidesTheWait(t *testing.T) {
	const d, skew = 2 * time.Second, 0.01
	// Lease and grace run on the holder's clock: both are stretched.
	stretched := func(grace time.Duration) time.Duration { return time.Duration(float64(d+grace) * (1 + skew)) }
	short := 100 * time.Millisecond
	for _, tc := range []struct {
		name  string
		grace *time.Duration
		want  time.Duration
	}{
		{"declared 100ms", &short, stretched(short)},
		{"declared none", nil, stretched(1500 * time.Millisecond)},
		{"declared 0 (no service address)", new(time.Duration), stretched(0)},
	} {
		m := newLeaseMachine("b", "s2", d, skew)
		m.grace = 1500 * time.Millisecond
		l := fsm.Lease{Holder: "a", Session: "s1", Epoch: 1, Duration: d, Grace: tc.grace}
		const arrived = 10 * time.Second
		m.observe(l, arrived)
		if got := m.acquireWait(l, 0); got != arrived+tc.want {
			t.Errorf("%s: wait until %s, want %s", tc.name, got, arrived+tc.want)
		}
		// Having seen no entry of it (restarted, then won at once), the
		// wait counts from the election.
		fresh := newLeaseMachine("b", "s3", d, skew)
		fresh.grace = 1500 * time.Millisecond
		if got := fresh.acquireWait(l, arrived); got != arrived+tc.want {
			t.Errorf("%s, nothing observed: wait until %s, want %s", tc.name, got, arrived+tc.want)
		}
	}
}
