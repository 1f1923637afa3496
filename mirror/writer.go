package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Writer keeps rows fresh off the hot path: Submit never blocks (the latest
// row of each node wins), a goroutine upserts with a bounded retry/backoff,
// and when the database is down it keeps the latest rows and catches up when
// it returns. The leader's OFFLINE marks for dead nodes (SubmitOffline)
// travel the same way. A node submits its own row, and with a node-local
// database the rows of its peers too.
type Writer struct {
	store Store
	log   *slog.Logger

	// Retry pacing and the bound on one write; tests shorten them.
	minBackoff, maxBackoff, opTimeout time.Duration

	mu      sync.Mutex
	rows    map[string]Row       // node id → latest row not yet written
	offline map[string]time.Time // node id → time of the OFFLINE mark not yet written
	kick    chan struct{}        // the slot: "something is pending"

	writing chan struct{} // one write at a time (Run and Flush); a semaphore that honours contexts
	fails   int           // consecutive failed writes; held with writing
	downAt  time.Time     // first failure of the current run of failures; held with writing

	healthy atomic.Bool
	lastErr atomic.Pointer[error]
}

// NewWriter returns a Writer over s; start it with Run.
func NewWriter(s Store, log *slog.Logger) *Writer {
	if log == nil {
		log = slog.Default()
	}
	return &Writer{
		store:      s,
		log:        log,
		minBackoff: 100 * time.Millisecond,
		maxBackoff: 2 * time.Second,
		opTimeout:  5 * time.Second,
		rows:       map[string]Row{},
		offline:    map[string]time.Time{},
		kick:       make(chan struct{}, 1),
		writing:    make(chan struct{}, 1),
	}
}

// Submit queues a node's row; it replaces any row of that node not yet
// written and never waits for the database.
func (w *Writer) Submit(r Row) {
	w.mu.Lock()
	w.rows[r.NodeID] = r
	w.mu.Unlock()
	w.signal()
}

// SubmitOffline queues the leader's OFFLINE marks (see Store.MarkOffline);
// marks accumulate per node id, the latest time winning, until written.
func (w *Writer) SubmitOffline(ids []string, at time.Time) {
	if len(ids) == 0 {
		return
	}
	w.mu.Lock()
	for _, id := range ids {
		if prev, ok := w.offline[id]; !ok || at.After(prev) {
			w.offline[id] = at
		}
	}
	w.mu.Unlock()
	w.signal()
}

func (w *Writer) signal() {
	select {
	case w.kick <- struct{}{}:
	default: // already signalled; the writer will take the latest
	}
}

// Run writes what is submitted until ctx is done, retrying failed writes
// with a backoff that doubles up to a bound. Run it once per Writer.
func (w *Writer) Run(ctx context.Context) {
	backoff := w.minBackoff
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	backingOff := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
			if backingOff {
				continue // the retry will take the latest
			}
		case <-retry.C:
			backingOff = false
		}
		if err := w.flush(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			retry.Reset(backoff)
			backingOff = true
			backoff = min(2*backoff, w.maxBackoff)
			continue
		}
		backoff = w.minBackoff
	}
}

// Flush writes what is pending now and reports whether it reached the
// database; for shutdown, after the node's final row, with a short ctx.
func (w *Writer) Flush(ctx context.Context) error { return w.flush(ctx) }

// Healthy reports whether the last write succeeded (false before the first).
func (w *Writer) Healthy() bool { return w.healthy.Load() }

// LastError is why the last write failed, nil after a success.
func (w *Writer) LastError() error {
	if p := w.lastErr.Load(); p != nil {
		return *p
	}
	return nil
}

// flush writes the pending rows, then the pending OFFLINE marks (rows
// first: a mark is a no-op for a row written after it). What fails is put
// back unless something newer arrived meanwhile.
func (w *Writer) flush(ctx context.Context) error {
	select {
	case w.writing <- struct{}{}:
		defer func() { <-w.writing }()
	case <-ctx.Done():
		return fmt.Errorf("mirror: wait for the write under way: %w", ctx.Err())
	}

	w.mu.Lock()
	rows, offline := w.rows, w.offline
	w.rows, w.offline = map[string]Row{}, map[string]time.Time{}
	w.mu.Unlock()
	if len(rows) == 0 && len(offline) == 0 {
		return nil
	}

	ctx, cancel := context.WithTimeout(ctx, w.opTimeout)
	defer cancel()
	err := w.write(ctx, rows, offline)
	if err != nil {
		w.putBack(rows, offline)
		w.failed(err)
		return err
	}
	w.succeeded()
	return nil
}

// write deletes rows and marks from their maps as they are written.
func (w *Writer) write(ctx context.Context, rows map[string]Row, offline map[string]time.Time) error {
	for _, id := range slices.Sorted(maps.Keys(rows)) {
		if err := w.store.UpsertNode(ctx, rows[id]); err != nil {
			if !errors.Is(err, ErrInvalidRow) {
				return err
			}
			w.log.Error("mirror: dropping a row the database refuses", "err", err)
		}
		delete(rows, id)
	}
	byTime := map[time.Time][]string{}
	for id, at := range offline {
		byTime[at] = append(byTime[at], id)
	}
	times := make([]time.Time, 0, len(byTime))
	for at := range byTime {
		times = append(times, at)
	}
	slices.SortFunc(times, time.Time.Compare)
	for _, at := range times {
		ids := byTime[at]
		slices.Sort(ids)
		if err := w.store.MarkOffline(ctx, ids, at); err != nil {
			return err
		}
		for _, id := range ids {
			delete(offline, id)
		}
	}
	return nil
}

func (w *Writer) putBack(rows map[string]Row, offline map[string]time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for id, r := range rows {
		if _, newer := w.rows[id]; !newer {
			w.rows[id] = r
		}
	}
	for id, at := range offline {
		if prev, ok := w.offline[id]; !ok || at.After(prev) {
			w.offline[id] = at
		}
	}
}

func (w *Writer) failed(err error) {
	w.healthy.Store(false)
	w.lastErr.Store(&err)
	w.fails++
	if w.fails == 1 {
		w.downAt = time.Now()
		w.log.Warn("mirror: database write failed; keeping the latest row and retrying", "err", err)
		return
	}
	w.log.Debug("mirror: database write failed again", "err", err, "failures", w.fails)
}

func (w *Writer) succeeded() {
	w.healthy.Store(true)
	w.lastErr.Store(nil)
	if w.fails > 0 {
		w.log.Info("mirror: database writes caught up",
			"failures", w.fails, "down_for", time.Since(w.downAt).Round(time.Millisecond))
	}
	w.fails = 0
}
