package ui_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	ts "github.com/udmg/gateway/testsupport"
)

// TestFailedTransfersOnPage shows why transfers failed: a pull of a missing
// file is ERROR with its code, its attempts and a retry button (not
// resume), which retries it; a push to a partner that does not answer yet
// shows its code and the time of its next attempt.
func TestFailedTransfersOnPage(t *testing.T) {
	r := newRig(t)
	ctx, sshd, c, n, api := r.ctx, r.sshd, r.c, r.n, r.api
	missing, later := api.FailingTransfers(t, sshd, c.Home)
	failed := api.WaitTransfer(t, missing.ID, time.Minute, "ERROR", func(tr ts.Transfer) bool { return tr.Status == "ERROR" })
	api.WaitTransfer(t, later.ID, time.Minute, "waiting for its next attempt", func(tr ts.Transfer) bool { return tr.NextRetry != "" })

	do(t, ctx, "open the page", chromedp.Navigate(n.AdminURL()+"/"), chromedp.WaitVisible(chromedp.CSS("#login")))
	login(t, ctx, ts.AdminPassword)
	do(t, ctx, "see the transfers panel", chromedp.WaitVisible(chromedp.CSS("#transfers-card")))
	cells := func(id uint64) []string {
		out := get(t, ctx, "read the transfer's row", chromedp.Evaluate[string](fmt.Sprintf(`(() => {
			for (const tr of document.querySelectorAll("#transfers tbody tr"))
				if (tr.cells[0].textContent === "%d") return [...tr.cells].map((c) => c.textContent + (c.querySelector("button") ? "[" + [...c.querySelectorAll("button")].map((b) => b.dataset.action).join(",") + "]" : "")).join("|");
			return "";
		})()`, id)))
		return strings.Split(out, "|")
	}
	var row []string
	if !ts.Eventually(10*time.Second, func() bool { row = cells(missing.ID); return len(row) >= 11 }) {
		t.Fatalf("no row for transfer %d: %q", missing.ID, row)
	}
	// ID, rule, partner, file, status, step, progress, attempts, error, next retry, actions
	if row[4] != "ERROR" || row[5] == "" || row[7] != "1 of 5" || !strings.HasPrefix(row[8], "TeFileNotFound: ") || !strings.Contains(row[8], "missing.bin") ||
		row[9] != "" || !strings.Contains(row[10], "retry") || strings.Contains(row[10], "resume") {
		t.Errorf("failed transfer's row %q, want ERROR, its step, 1 of 5, TeFileNotFound with the file, no next retry, retry and no resume", row)
	}
	row = cells(later.ID)
	if len(row) < 11 || row[4] != "PLANNED" || !strings.HasPrefix(row[8], "TeConnection: ") || row[9] == "" {
		t.Errorf("retrying transfer's row %q, want PLANNED, TeConnection and the next retry's time", row)
	}
	t.Logf("screenshot of failed transfers: %s", screenshot(t, ctx, "ui-failed-transfers"))

	// The page lists transfers by ID: the missing file's comes first.
	if missing.ID > later.ID {
		t.Fatalf("transfer %d planned before %d has a greater ID", missing.ID, later.ID)
	}
	do(t, ctx, "retry", chromedp.Click(chromedp.CSS(`#transfers tbody tr:first-child button[data-action="retry"]`)))
	api.WaitTransfer(t, missing.ID, time.Minute, "retried and failed again", func(tr ts.Transfer) bool {
		return tr.Status == "ERROR" && tr.Stop != failed.Stop
	})
}
