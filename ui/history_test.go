package ui_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/udmg/gateway/httpapi/wire"
	ts "github.com/udmg/gateway/testsupport"
)

// TestHistoryFiltersOnPage filters the history view by rule, partner,
// account and a start range, typed into its form, over five real
// transfers with two partners and two rules; clearing the filters shows
// them all again.
func TestHistoryFiltersOnPage(t *testing.T) {
	r := newRig(t)
	ctx, sshd, c, n, api := r.ctx, r.sshd, r.c, r.n, r.api
	remoteDir := t.TempDir()
	api.AddSSHDPartner(t, sshd, remoteDir)
	api.Must(t, 201, "POST", "/api/partners", map[string]any{"name": "remote2", "protocol": "sftp", "address": sshd.Addr, "hostKey": sshd.HostKey})
	api.Must(t, 201, "POST", "/api/partners/remote2/accounts", map[string]any{"login": sshd.User, "privateKey": sshd.ClientKey})

	// One at a time, so that their starts are in this order and apart.
	runs := []struct{ rule, partner, file string }{
		{"push", "remote", "a.bin"}, {"push", "remote2", "b.bin"}, {"pull", "remote", "a.bin"},
		{"push", "remote", "c.bin"}, {"pull", "remote2", "b.bin"},
	}
	ids := make([]string, len(runs))
	for i, run := range runs {
		if run.rule == "push" {
			ts.WriteRandomFile(t, filepath.Join(c.Home, "out", run.file), 1024)
		}
		var tr ts.Transfer
		if err := api.Must(t, 201, "POST", "/api/transfers", map[string]any{"rule": run.rule, "partner": run.partner, "account": sshd.User, "file": run.file}).Decode(&tr); err != nil {
			t.Fatal(err)
		}
		api.WaitTransfer(t, tr.ID, time.Minute, "DONE", func(tr ts.Transfer) bool { return tr.Status == "DONE" })
		ids[i] = fmt.Sprint(tr.ID)
	}
	start := map[string]time.Time{}
	if !ts.Eventually(time.Minute, func() bool {
		var hist struct{ History []wire.HistoryItem }
		if api.Must(t, 200, "GET", "/api/history?limit=100", nil).Decode(&hist) != nil {
			return false
		}
		for _, h := range hist.History {
			if at, err := time.Parse(time.RFC3339Nano, h.Start); err == nil {
				start[h.ID] = at
			}
		}
		return len(start) == len(runs)
	}) {
		t.Fatalf("history holds %d of the %d transfers", len(start), len(runs))
	}
	// localTime is the input's value for the moment at (in the browser's
	// zone, to the millisecond the input keeps: at most at, and after any
	// earlier start).
	localTime := func(id string) string {
		utc := start[id].UTC().Truncate(time.Millisecond).Format("2006-01-02T15:04:05.000Z")
		return get(t, ctx, "local time of "+utc, chromedp.Evaluate[string](fmt.Sprintf(
			`(() => { const d = new Date(%q); return new Date(d - d.getTimezoneOffset() * 60000).toISOString().slice(0, 23); })()`, utc)))
	}

	do(t, ctx, "open the page", chromedp.Navigate(n.AdminURL()+"/"), chromedp.WaitVisible(chromedp.CSS("#login")))
	login(t, ctx, ts.AdminPassword)
	do(t, ctx, "see the app", chromedp.WaitVisible(chromedp.CSS("#tabs button[data-view=history]")))
	openView(t, ctx, "history")

	shown := func() string {
		return get(t, ctx, "read the history", chromedp.Evaluate[string](`[...document.querySelectorAll("#history tbody tr")].map((r) => r.cells[0].textContent).join(",")`))
	}
	// newest lists transfers (by their index in runs) newest first.
	newest := func(i ...int) string {
		var out []string
		for _, k := range slices.Backward(i) {
			out = append(out, ids[k])
		}
		return strings.Join(out, ",")
	}
	fields := []string{"rule", "partner", "account", "since", "until"}
	filter := func(what string, values map[string]string, want string) {
		t.Helper()
		for _, name := range fields {
			sel := chromedp.CSS(fmt.Sprintf(`#history-filter [name=%q]`, name))
			get(t, ctx, "clear "+name, chromedp.Evaluate[bool](fmt.Sprintf(`(document.querySelector(%q).value = "", true)`, string(sel))))
			switch v := values[name]; {
			case v == "":
			case name == "since" || name == "until":
				// Not chromedp.SetValue: the input rewrites the value
				// in its shortest form (".120" as ".12"), which
				// SetValue takes for a refusal.
				if got := get(t, ctx, "set "+name, chromedp.Evaluate[string](fmt.Sprintf(`(() => { const e = document.querySelector(%q); e.value = %q; return e.value; })()`, string(sel), v))); got == "" {
					t.Fatalf("the %s input refused %q", name, v)
				}
			default:
				do(t, ctx, "type "+name, chromedp.SendKeys(sel, v))
			}
		}
		do(t, ctx, "show "+what, chromedp.Click(chromedp.CSS(`#history-filter button[type=submit]`)))
		var got string
		if !ts.Eventually(10*time.Second, func() bool { got = shown(); return got == want }) {
			t.Errorf("%s: history shows %q, want %q (error %q)", what, got, want,
				get(t, ctx, "read the error", chromedp.Text(chromedp.CSS("#history-error"))))
		}
	}

	filter("everything", nil, newest(0, 1, 2, 3, 4))
	if names := get(t, ctx, "read the suggestions", chromedp.Evaluate[string](`[...document.querySelectorAll("#history-rules option, #history-partners option")].map((o) => o.value).join(",")`)); names != "pull,push,remote,remote2" {
		t.Errorf("rule and partner suggestions %q, want pull,push,remote,remote2", names)
	}
	filter("rule pull", map[string]string{"rule": "pull"}, newest(2, 4))
	filter("partner remote2", map[string]string{"partner": "remote2"}, newest(1, 4))
	filter("rule push with partner remote", map[string]string{"rule": "push", "partner": "remote"}, newest(0, 3))
	filter("an account without transfers", map[string]string{"account": "nobody"}, "")
	if p := get(t, ctx, "read the pager", chromedp.Text(chromedp.CSS("#history-page"))); p != "No transfers" {
		t.Errorf("pager says %q with no transfers, want No transfers", p)
	}
	filter("account, rule and partner", map[string]string{"account": sshd.User, "rule": "pull", "partner": "remote"}, newest(2))
	filter("started from the third", map[string]string{"since": localTime(ids[2])}, newest(2, 3, 4))
	filter("started from the second, before the fifth", map[string]string{"since": localTime(ids[1]), "until": localTime(ids[4])}, newest(1, 2, 3))
	filter("pushes before the fourth", map[string]string{"rule": "push", "until": localTime(ids[3])}, newest(0, 1))
	t.Logf("screenshot of a filtered history: %s", screenshot(t, ctx, "ui-history-filtered"))
	do(t, ctx, "clear the filters", chromedp.Click(chromedp.CSS("#history-clear")))
	if !ts.Eventually(10*time.Second, func() bool { return shown() == newest(0, 1, 2, 3, 4) }) {
		t.Errorf("after clearing the filters the history shows %q, want %q", shown(), newest(0, 1, 2, 3, 4))
	}
	for _, name := range fields {
		if v := get(t, ctx, "read "+name, chromedp.Value(chromedp.CSS(fmt.Sprintf(`#history-filter [name=%q]`, name)))); v != "" {
			t.Errorf("after clearing, %s holds %q", name, v)
		}
	}
}
