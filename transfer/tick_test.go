package transfer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/udmg/gateway/fsm"
)

// tickEngine is an engine of epoch 1 that a test ticks itself (no loop),
// on a machine holding the transfers of IDs 1..n that transfer(id) gives.
func tickEngine(tb testing.TB, n int, transfer func(id uint64) fsm.Transfer) *Engine {
	tb.Helper()
	node := &machineNode{m: fsm.New(), epoch: 1}
	node.valid.Store(true)
	apply := func(c fsm.Command) {
		if err := node.Apply(c); err != nil {
			tb.Fatalf("%s: %v", c.Op, err)
		}
	}
	apply(fsm.Command{Op: fsm.OpLeaseAcquire, Lease: &fsm.LeaseArgs{Holder: "node-b", Session: "b1", Epoch: 1, Duration: time.Hour}})
	for id := range uint64(n) {
		t := transfer(id + 1)
		apply(fsm.Command{Op: fsm.OpTransferAdd, Epoch: 1, Transfer: &t})
	}
	cfg := Config{Node: node, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Concurrency: 2}
	cfg.defaults()
	e := newEngine(cfg, 1)
	e.lastProgress = time.Now().Add(time.Hour)
	tb.Cleanup(e.cancel)
	return e
}

// TestTickStartsOldestDue: a tick starts the oldest due client transfers
// up to the free slots, among many live ones it has nothing to do for.
func TestTickStartsOldestDue(t *testing.T) {
	e := tickEngine(t, 1000, func(id uint64) fsm.Transfer {
		if id%100 == 50 { // 50, 150, ...: due
			return fsm.Transfer{ID: id, Agent: "nowhere", Status: fsm.StatusPlanned, MaxAttempts: 1}
		}
		return fsm.Transfer{ID: id, IsServer: true, Status: fsm.StatusRunning, Step: fsm.StepData, NodeID: "node-b"}
	})
	e.tick(context.Background(), true)
	defer e.stopWorkers()
	var running []uint64
	e.cfg.Node.Read(func(s *fsm.State) {
		for id, tr := range s.Transfers {
			if !tr.IsServer && tr.Status != fsm.StatusPlanned {
				running = append(running, id)
			}
		}
	})
	slices.Sort(running)
	if !slices.Equal(running, []uint64{50, 150}) || len(e.workers) != 2 {
		t.Fatalf("the tick started %v (%d workers), want the two oldest due, 50 and 150", running, len(e.workers))
	}
}

// BenchmarkTick is one engine tick beside 100 and 10,000 live transfers
// that it has nothing to do for: server-mode ones RUNNING under its epoch
// and client-mode ones waiting for a retry an hour away. Its cost should
// follow what is due (nothing), not what is live.
func BenchmarkTick(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("live=%d", n), func(b *testing.B) {
			later := time.Now().Add(time.Hour)
			e := tickEngine(b, n, func(id uint64) fsm.Transfer {
				if id%2 == 0 {
					return fsm.Transfer{ID: id, Agent: "p", Status: fsm.StatusPlanned, ErrorCode: fsm.TeConnection,
						NextRetry: later, Attempts: 1, MaxAttempts: 5}
				}
				return fsm.Transfer{ID: id, IsServer: true, Status: fsm.StatusRunning, Step: fsm.StepData, NodeID: "node-b"}
			})
			ctx := context.Background()
			for b.Loop() {
				e.tick(ctx, true)
			}
			if len(e.workers) != 0 {
				b.Fatalf("the tick started %d transfers, none was due", len(e.workers))
			}
		})
	}
}
