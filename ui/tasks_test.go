package ui_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	ts "github.com/udmg/gateway/testsupport"
)

// TestTasksOnPage: a transfer's task chain shows in the history, one line
// per task with its phase, position, type, state and node.
func TestTasksOnPage(t *testing.T) {
	r := newRig(t)
	ctx, sshd, c, n, api := r.ctx, r.sshd, r.c, r.n, r.api
	api.AddSSHDPartner(t, sshd, t.TempDir())
	api.Must(t, 200, "PATCH", "/api/rules/push/send", map[string]any{"preTasks": []map[string]any{{"type": "CHECKSUM"}}})
	ts.WriteRandomFile(t, filepath.Join(c.Home, "out", "chained.bin"), 4<<10)
	var tr ts.Transfer
	if err := api.Must(t, 201, "POST", "/api/transfers", map[string]any{"rule": "push", "partner": "remote", "account": sshd.User, "file": "chained.bin"}).Decode(&tr); err != nil {
		t.Fatal(err)
	}
	api.WaitTransfer(t, tr.ID, time.Minute, "DONE", func(tr ts.Transfer) bool { return tr.Status == "DONE" })

	do(t, ctx, "open the page", chromedp.Navigate(n.AdminURL()+"/"), chromedp.WaitVisible(chromedp.CSS("#login")))
	login(t, ctx, ts.AdminPassword)
	do(t, ctx, "open the history", chromedp.Click(chromedp.CSS(`#tabs button[data-view="history"]`)))
	var tasks string
	if !ts.Eventually(30*time.Second, func() bool {
		tasks = get(t, ctx, "read the history's tasks", chromedp.Evaluate[string](`(() => {
			for (const tr of document.querySelectorAll("#history tbody tr"))
				if (tr.cells[0].textContent === "`+fmt.Sprint(tr.ID)+`") return tr.cells[tr.cells.length - 1].textContent;
			return "";
		})()`))
		return tasks != ""
	}) {
		t.Fatalf("transfer %d has no tasks in the history view", tr.ID)
	}
	if !strings.Contains(tasks, "pre 1 · CHECKSUM · DONE") || !strings.Contains(tasks, "on "+n.IP+":") {
		t.Fatalf("history's tasks of transfer %d: %q, want pre 1 · CHECKSUM · DONE on %s", tr.ID, tasks, n.IP)
	}
	t.Logf("history's tasks of transfer %d: %s", tr.ID, tasks)
}
