package logs

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestFoldRepeatedLines(t *testing.T) {
	var out bytes.Buffer
	h := Fold(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug}), 10*time.Second)
	log := slog.New(h).With("node", "n1")
	t0 := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	emit := func(at time.Duration, level slog.Level, msg string, args ...any) {
		r := slog.NewRecord(t0.Add(at), level, msg, 0)
		r.Add(args...)
		if err := log.Handler().Handle(t.Context(), r); err != nil {
			t.Fatal(err)
		}
	}
	// Twice a second for 25 s, interleaved with another line.
	for i := range 50 {
		at := time.Duration(i) * 500 * time.Millisecond
		emit(at, slog.LevelWarn, "cannot become ACTIVE", "why", "no license slot")
		if i%10 == 0 {
			emit(at, slog.LevelInfo, "renewal", "took", i)
		}
	}
	emit(30*time.Second, slog.LevelWarn, "cannot become ACTIVE", "why", "something else")

	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	var warn []string
	for _, l := range lines {
		if strings.Contains(l, "cannot become ACTIVE") {
			warn = append(warn, l)
		}
	}
	// Written at 0 s, 10 s (19 folded), 20 s (19 folded); a different
	// attribute is a different line.
	if len(warn) != 4 {
		t.Fatalf("got %d lines, want 4:\n%s", len(warn), strings.Join(warn, "\n"))
	}
	if strings.Contains(warn[0], "repeated=") || !strings.Contains(warn[1], "repeated=19") || !strings.Contains(warn[2], "repeated=19") {
		t.Errorf("counts wrong:\n%s", strings.Join(warn, "\n"))
	}
	if !strings.Contains(warn[3], "something else") || strings.Contains(warn[3], "repeated=") {
		t.Errorf("a line with other attributes was folded: %s", warn[3])
	}
	if n := strings.Count(out.String(), "msg=renewal"); n != 5 {
		t.Errorf("distinct lines were folded: %d renewal lines, want 5", n)
	}
	if !strings.Contains(warn[0], "node=n1") {
		t.Errorf("WithAttrs lost: %s", warn[0])
	}
}
