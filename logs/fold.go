// Package logs shapes what a node writes to its log: one readable line per
// event, with lines that repeat folded into one line and a count.
package logs

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Fold wraps a handler so that a line repeated within window (same level,
// message and attributes) is written once; the next time it is written,
// after the window, it carries `repeated=N`, the number of lines folded
// into it meanwhile. A node that cannot become ACTIVE says so every
// HeartbeatCheck; its log should say it once, with a count.
func Fold(next slog.Handler, window time.Duration) slog.Handler {
	return &folder{next: next, state: &foldState{window: window, seen: map[string]*folded{}}}
}

type folded struct {
	printed time.Time // when the line was last written
	count   int       // lines folded since
}

type foldState struct {
	mu     sync.Mutex
	window time.Duration
	seen   map[string]*folded
}

// maxFolded bounds the lines remembered; older ones are forgotten first.
const maxFolded = 4096

type folder struct {
	next   slog.Handler
	prefix string // the attributes and groups of WithAttrs/WithGroup, as text
	state  *foldState
}

func (f *folder) Enabled(ctx context.Context, l slog.Level) bool { return f.next.Enabled(ctx, l) }

func (f *folder) Handle(ctx context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Level.String())
	b.WriteByte(0)
	b.WriteString(r.Message)
	b.WriteByte(0)
	b.WriteString(f.prefix)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, "\x00%s=%v", a.Key, a.Value)
		return true
	})
	key := b.String()
	now := r.Time
	if now.IsZero() {
		now = time.Now()
	}

	s := f.state
	s.mu.Lock()
	e, ok := s.seen[key]
	if ok && now.Sub(e.printed) < s.window {
		e.count++
		s.mu.Unlock()
		return nil
	}
	repeated := 0
	if ok {
		repeated = e.count
		e.printed, e.count = now, 0
	} else {
		if len(s.seen) >= maxFolded {
			s.forget(now)
		}
		s.seen[key] = &folded{printed: now}
	}
	s.mu.Unlock()
	if repeated > 0 {
		r = r.Clone()
		r.AddAttrs(slog.Int("repeated", repeated))
	}
	return f.next.Handle(ctx, r)
}

// forget drops the lines whose window is over and, if that is not enough,
// all of them: folding is a courtesy, never a reason to grow without end.
func (s *foldState) forget(now time.Time) {
	for k, e := range s.seen {
		if now.Sub(e.printed) >= s.window && e.count == 0 {
			delete(s.seen, k)
		}
	}
	if len(s.seen) >= maxFolded {
		clear(s.seen)
	}
}

func (f *folder) WithAttrs(as []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(f.prefix)
	for _, a := range as {
		fmt.Fprintf(&b, "\x00%s=%v", a.Key, a.Value)
	}
	return &folder{next: f.next.WithAttrs(as), prefix: b.String(), state: f.state}
}

func (f *folder) WithGroup(name string) slog.Handler {
	return &folder{next: f.next.WithGroup(name), prefix: f.prefix + "\x00[" + name + "]", state: f.state}
}
