package cluster

import (
	"bytes"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/udmg/gateway/fsm"
)

// renewalTrace times the holder's lease renewals through Raft's stages, so
// that the line logged when a lease runs out before its renewal committed
// says where the time went: queued before Raft stored the entry (the apply
// channel, the leader loop's batching), the leader's own log write and
// fsync, the commit (replication to a quorum, then the FSM's queue), and
// the answer back to the renewal goroutine. The marks are stamped from
// arrivalLog.StoreLogs and raftFSM.Apply (lease.go), on the lease clock.
type renewalTrace struct {
	mu   sync.Mutex
	cur  renewalMarks // the renewal in flight, or the last one
	last renewalMarks // the last renewal that committed
	// When the lease ran out (expired): the renewal then in flight, as
	// it stood, and as it ended if it has since.
	expiredAt                  time.Duration
	atExpiry, thenDone, before renewalMarks
	// Renewals slower than slowRenewal since the last "slow lease
	// renewal" line, logged at most every slowEvery.
	slow       int
	slowLogged time.Duration
}

// slowRenewal is the bound on a renewal under load (the p99 of
// udmg_lease_renewal_seconds); a slower one is logged, with where its time
// went, at most once per slowEvery.
const (
	slowRenewal = 100 * time.Millisecond
	slowEvery   = 10 * time.Second
)

// renewalMarks are the moments one renewal reached each stage (0: not yet).
type renewalMarks struct {
	data     []byte // the encoded command, to find it among the stored logs
	index    uint64
	proposed time.Duration
	accepted time.Duration // raft.Apply returned: in Raft's apply channel
	storing  time.Duration // the leader began writing it to its log
	stored   time.Duration // written and fsynced
	applied  time.Duration // committed and applied by the FSM
	done     time.Duration // the renewal goroutine had the answer
}

// applyRenewal is Node.apply for a lease renewal, stamping its stages.
func (n *Node) applyRenewal(c fsm.Command) error {
	b, err := n.encode(c)
	if err != nil {
		return err
	}
	tr := &n.renewal
	tr.mu.Lock()
	tr.cur = renewalMarks{data: b, proposed: bootClock()}
	tr.mu.Unlock()
	f := n.raft.Apply(b, n.cfg.Deadline)
	tr.mark(func(m *renewalMarks) { m.accepted = bootClock() })
	err = f.Error()
	tr.mu.Lock()
	tr.cur.done = bootClock()
	if err == nil {
		tr.last = tr.cur
	}
	var slow string
	if d := tr.cur.done - tr.cur.proposed; d > slowRenewal {
		tr.slow++
		if tr.cur.done-tr.slowLogged >= slowEvery {
			slow, tr.slowLogged = tr.cur.describe(tr.cur.done), tr.cur.done
		}
	}
	slowCount := tr.slow
	if slow != "" {
		tr.slow = 0
	}
	if tr.expiredAt != 0 && tr.atExpiry.proposed == tr.cur.proposed {
		tr.thenDone = tr.cur
	}
	tr.cur.data = nil
	tr.mu.Unlock()
	if slow != "" {
		n.log.Warn("slow lease renewal", "renewal", slow, "slow_since_last_line", slowCount)
	}
	if err != nil {
		return err
	}
	if r, ok := f.Response().(fsm.Result); ok {
		return r.Err
	}
	return nil
}

func (tr *renewalTrace) mark(f func(m *renewalMarks)) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	f(&tr.cur)
}

// storing is told of every batch the leader writes to its log; true if the
// renewal in flight is among them (stored must then follow).
func (tr *renewalTrace) storing(logs []*raft.Log) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.cur.data == nil || tr.cur.storing != 0 {
		return false
	}
	for _, l := range logs {
		if l.Type == raft.LogCommand && bytes.Equal(l.Data, tr.cur.data) {
			tr.cur.index, tr.cur.storing = l.Index, bootClock()
			return true
		}
	}
	return false
}

func (tr *renewalTrace) storedNow() { tr.mark(func(m *renewalMarks) { m.stored = bootClock() }) }

// appliedNow is told that the renewal at index was applied.
func (tr *renewalTrace) appliedNow(index uint64) {
	tr.mark(func(m *renewalMarks) {
		if m.index == index && m.applied == 0 {
			m.applied = bootClock()
		}
	})
}

// expired is told, at now, that the lease ran out: the renewal in flight
// is kept as it stood for the lease-lost line.
func (tr *renewalTrace) expired(now time.Duration) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.expiredAt, tr.atExpiry, tr.thenDone, tr.before = now, tr.cur, renewalMarks{}, tr.last
	if tr.cur.done != 0 {
		// None in flight: the last one had answered.
		tr.atExpiry = renewalMarks{}
	}
}

// attrs describes, for the lease-lost line at now, where the renewal in
// flight when the lease ran out spent its time (and how it ended, if it
// has), else the renewal in flight now or the last one, and how the last
// committed one before it did.
func (tr *renewalTrace) attrs(now time.Duration) []any {
	tr.mu.Lock()
	cur, last := tr.cur, tr.last
	expiredAt, atExpiry, thenDone := tr.expiredAt, tr.atExpiry, tr.thenDone
	if expiredAt != 0 {
		last = tr.before // the last one committed before the lease ran out
	}
	tr.expiredAt = 0
	tr.mu.Unlock()
	var out []any
	switch {
	case expiredAt != 0 && atExpiry.proposed != 0:
		out = append(out, "renewal_at_expiry", atExpiry.describe(expiredAt))
		if thenDone.proposed != 0 {
			out = append(out, "renewal_then", thenDone.describe(now))
		}
	case expiredAt != 0:
		out = append(out, "renewal_at_expiry", "none in flight")
	case cur.proposed != 0:
		out = append(out, "renewal", cur.describe(now))
	}
	if last.proposed != 0 && last.proposed != atExpiry.proposed && last.proposed != thenDone.proposed {
		out = append(out, "last_committed_renewal", last.describe(now))
	}
	return out
}

// describe reads the marks as stage durations, the last one reached
// running until now: "proposed 1.9s before: queued before Raft 10ms, log
// write+fsync (not yet) 1.89s".
func (m renewalMarks) describe(now time.Duration) string {
	var b bytes.Buffer
	b.WriteString("proposed " + (now - m.proposed).Round(time.Millisecond).String() + " before:")
	stages := []struct {
		name string
		end  time.Duration
	}{
		{"queued before Raft", m.storing},
		{"log write+fsync", m.stored},
		{"commit+apply", m.applied},
		{"answer", m.done},
	}
	from, sep := m.proposed, " "
	for _, s := range stages {
		b.WriteString(sep + s.name + " ")
		sep = ", "
		if s.end == 0 {
			b.WriteString("(not yet) " + (now - from).Round(time.Millisecond).String())
			if m.accepted != 0 && s.name == "queued before Raft" {
				b.WriteString(" (in raft.Apply " + (m.accepted - m.proposed).Round(time.Millisecond).String() + ")")
			}
			break
		}
		b.WriteString((s.end - from).Round(time.Millisecond).String())
		if s.name == "queued before Raft" && m.accepted != 0 {
			b.WriteString(" (in raft.Apply " + (m.accepted - m.proposed).Round(time.Millisecond).String() + ")")
		}
		from = s.end
	}
	return b.String()
}
