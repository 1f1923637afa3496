package transfer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/udmg/gateway/fsm"
)

// BenchmarkTick is one engine tick beside 100 and 10,000 live transfers
// that it has nothing to do for: server-mode ones RUNNING under its epoch
// and client-mode ones waiting for a retry an hour away. Its cost should
// follow what is due (nothing), not what is live.
func BenchmarkTick(b *testing.B) {
	for _, n := range []int{100, 10000} {
		b.Run(fmt.Sprintf("live=%d", n), func(b *testing.B) {
			node := &machineNode{m: fsm.New(), epoch: 1}
			node.valid.Store(true)
			apply := func(c fsm.Command) {
				if err := node.Apply(c); err != nil {
					b.Fatalf("%s: %v", c.Op, err)
				}
			}
			apply(fsm.Command{Op: fsm.OpLeaseAcquire, Lease: &fsm.LeaseArgs{Holder: "node-b", Session: "b1", Epoch: 1, Duration: time.Hour}})
			later := time.Now().Add(time.Hour)
			for i := range n {
				t := fsm.Transfer{ID: uint64(i + 1), IsServer: true, Status: fsm.StatusRunning, Step: fsm.StepData, NodeID: "node-b"}
				if i%2 == 1 {
					t = fsm.Transfer{ID: uint64(i + 1), Agent: "p", Status: fsm.StatusPlanned, ErrorCode: fsm.TeConnection,
						NextRetry: later, Attempts: 1, MaxAttempts: 5}
				}
				apply(fsm.Command{Op: fsm.OpTransferAdd, Epoch: 1, Transfer: &t})
			}
			cfg := Config{Node: node, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
			cfg.defaults()
			e := &Engine{cfg: cfg, log: cfg.Logger, epoch: 1, results: make(chan result, 1), workers: map[uint64]*worker{},
				records: map[uint64]*record{}, handed: map[uint64]bool{}, lastProgress: time.Now().Add(time.Hour)}
			ctx := context.Background()
			for b.Loop() {
				e.tick(ctx)
			}
			if len(e.workers) != 0 {
				b.Fatalf("the tick started %d transfers, none was due", len(e.workers))
			}
		})
	}
}
