package fsm_test

import (
	"testing"

	"github.com/udmg/gateway/fsm"
	ts "github.com/udmg/gateway/testsupport"
)

// BenchmarkIssueStateSnapshot takes and restores a snapshot of the issue's
// large state (testsupport.IssueState: 10,000 accounts, 1,000 partners
// with an account each, 10,000 live transfers): the time raft's FSM
// goroutine applies nothing (freeze), the encoding that follows beside the
// applies (encode) and its size, and the time a starting or lagging node
// takes to decode it and rebuild the transfer index (restore).
func BenchmarkIssueStateSnapshot(b *testing.B) {
	m := fsm.New()
	ts.LargeState(b, m, ts.IssueState)
	snap, err := m.Snapshot()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("freeze", func(b *testing.B) {
		for b.Loop() {
			m.Freeze()
		}
	})
	frozen := m.Freeze()
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			if _, err := frozen.Encode(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(snap)), "snapshot-bytes")
	})
	b.Run("restore", func(b *testing.B) {
		for b.Loop() {
			if err := fsm.New().Restore(snap); err != nil {
				b.Fatal(err)
			}
		}
	})
}
