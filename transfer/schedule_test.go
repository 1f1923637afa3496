package transfer_test

import (
	"testing"
	"time"

	"github.com/udmg/gateway/transfer"
)

// TestDueSlot: a cron schedule runs the latest slot due since its last
// run, one only however many it missed, and none before its time.
func TestDueSlot(t *testing.T) {
	every, err := transfer.ParseCron("@every 2s")
	if err != nil {
		t.Fatal(err)
	}
	minutely, err := transfer.ParseCron("0 * * * * *")
	if err != nil {
		t.Fatal(err)
	}
	last := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		now  time.Time
		want time.Time
	}{
		{"before the first slot", last.Add(1500 * time.Millisecond), time.Time{}},
		{"the next slot", last.Add(2 * time.Second), last.Add(2 * time.Second)},
		{"after a failover of 7s: only the latest", last.Add(7 * time.Second), last.Add(6 * time.Second)},
		{"after a day down: only the latest", last.Add(24*time.Hour + time.Second), last.Add(24 * time.Hour)},
	} {
		if got := transfer.DueSlot(every, last, c.now); !got.Equal(c.want) {
			t.Errorf("@every 2s, %s: %v, want %v", c.name, got, c.want)
		}
	}
	if got := transfer.DueSlot(minutely, last, last.Add(3*time.Minute+5*time.Second)); !got.Equal(last.Add(3 * time.Minute)) {
		t.Errorf("minutely after 3 missed: %v", got)
	}
	// While an engine looks, every slot runs, late if need be; of those
	// due before it looked, only the latest.
	since := last.Add(7 * time.Second)
	for _, c := range []struct {
		name       string
		last, want time.Time
	}{
		{"missed before the engine looked", last, last.Add(6 * time.Second)},
		{"late while it looks", since.Add(time.Second), since.Add(3 * time.Second)},
	} {
		if got := transfer.NextSlot(every, c.last, since, since.Add(10*time.Second)); !got.Equal(c.want) {
			t.Errorf("NextSlot, %s: %v, want %v", c.name, got, c.want)
		}
	}
	for _, bad := range []string{"61 * * * *", "* * * * * * *", "@weekly-ish", ""} {
		if _, err := transfer.ParseCron(bad); err == nil {
			t.Errorf("cron %q parsed", bad)
		}
	}
}
