package tasks

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// children stands in for the replicated state's transfers: StartChild adds
// a child only if none has the key yet, as the runner's must.
type children struct {
	mu    sync.Mutex
	byKey map[string]uint64
	all   []Child
	wait  func(ctx context.Context, id uint64) error
}

func (c *children) start(_ context.Context, ch Child) (uint64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if id, ok := c.byKey[ch.Key]; ok {
		return id, nil
	}
	c.all = append(c.all, ch)
	id := uint64(1000 + len(c.all))
	c.byKey[ch.Key] = id
	return id, nil
}

// TestTransferIdempotent: a TRANSFER rerun after a crash while it waited
// for its child finds the same child instead of adding one; the child
// carries the task's arguments; without a task key it refuses to start.
func TestTransferIdempotent(t *testing.T) {
	h := newHome(t)
	h.put("out/a.txt.pgp", "enc")
	kids := &children{byKey: map[string]uint64{}}
	h.env.StartChild = kids.start
	h.env.WaitChild = func(ctx context.Context, id uint64) error { return kids.wait(ctx, id) }
	f := facts("out/a.txt.pgp")
	args := map[string]any{"to": "bank", "as": "gw-#PARTNER#", "rule": "outbound"}

	// The first run: the node dies while the child runs.
	ctx, cancel := context.WithCancel(context.Background())
	kids.wait = func(ctx context.Context, id uint64) error {
		cancel()
		<-ctx.Done()
		return ctx.Err()
	}
	if _, err := Run(ctx, Task{Type: "TRANSFER", Args: args}, f, h.env); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted TRANSFER: %v", err)
	}
	// The new ACTIVE runs the task again.
	var waited uint64
	kids.wait = func(_ context.Context, id uint64) error { waited = id; return nil }
	h.run("TRANSFER", args, f)
	if len(kids.all) != 1 || waited != 1001 {
		t.Fatalf("children %+v, waited for %d", kids.all, waited)
	}
	want := Child{Key: "42/post/0", Rule: "outbound", Partner: "bank", Account: "gw-acme", File: "out/a.txt.pgp", Remote: "a.txt.pgp"}
	if kids.all[0] != want {
		t.Errorf("child %+v, want %+v", kids.all[0], want)
	}
	// Another task of the chain is another child.
	f2 := f
	f2.TaskKey = "post/3"
	h.run("TRANSFER", args, f2)
	if len(kids.all) != 2 {
		t.Errorf("the second TRANSFER of the chain found the first's child")
	}

	kids.wait = func(context.Context, uint64) error { return errors.New("partner refused the file") }
	h.fail("TRANSFER", args, f, "transfer 1001 to bank: partner refused the file")
	f.TaskKey = ""
	h.fail("TRANSFER", args, f, "no task key")
	h.fail("TRANSFER", map[string]any{"to": "bank", "as": "x", "rule": "r", "file": "out/none"}, facts("out/a.txt.pgp"), "file out/none does not exist")
}
