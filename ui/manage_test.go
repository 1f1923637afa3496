package ui_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	ts "github.com/udmg/gateway/testsupport"
)

// input is one field a test fills in a kind's form: typed key by key, or
// chosen in a select.
type input struct {
	name, value string
	choose      bool
}

func typed(name, value string) input  { return input{name: name, value: value} }
func chosen(name, value string) input { return input{name: name, value: value, choose: true} }

// fill types the inputs into the form of kind, clearing each field first.
func fill(t *testing.T, ctx context.Context, kind string, inputs ...input) {
	t.Helper()
	for _, in := range inputs {
		sel := chromedp.CSS(fmt.Sprintf(`#%s-form [name=%q]`, kind, in.name))
		if in.choose {
			do(t, ctx, "choose "+in.name, chromedp.SetValue(sel, in.value))
			continue
		}
		get(t, ctx, "clear "+in.name, chromedp.Evaluate[bool](fmt.Sprintf(`(document.querySelector(%q).value = "", true)`, string(sel))))
		do(t, ctx, "type "+in.name, chromedp.SendKeys(sel, in.value))
	}
}

// submit clicks the form's Create or Save button.
func submit(t *testing.T, ctx context.Context, kind string) {
	t.Helper()
	do(t, ctx, "submit the "+kind+" form", chromedp.Click(chromedp.CSS(fmt.Sprintf(`#%s-form button[type="submit"]`, kind))))
}

// rowSel is the table row of the object with id in kind's view.
func rowSel(kind, id string) string { return fmt.Sprintf(`#%s-table tbody tr[data-id=%q]`, kind, id) }

// rowText is the row's cells, joined by "|" ("" when there is no row).
func rowText(t *testing.T, ctx context.Context, kind, id string) string {
	t.Helper()
	return get(t, ctx, "read a row", chromedp.Evaluate[string](fmt.Sprintf(`(() => {
		const tr = document.querySelector(%q);
		return tr ? [...tr.cells].map((c) => c.textContent).join("|") : "";
	})()`, rowSel(kind, id))))
}

// formError waits for the error line beside kind's form and returns it.
func formError(t *testing.T, ctx context.Context, kind string) string {
	t.Helper()
	sel := chromedp.CSS(fmt.Sprintf(`#%s-error:not(:empty)`, kind))
	do(t, ctx, "wait for the "+kind+" form's error", chromedp.WaitVisible(sel))
	return get(t, ctx, "read the error", chromedp.Text(sel))
}

func clearError(t *testing.T, ctx context.Context, kind string) {
	t.Helper()
	get(t, ctx, "clear the error", chromedp.Evaluate[bool](fmt.Sprintf(`(document.querySelector("#%s-error").textContent = "", true)`, kind)))
}

// openView clicks the view's tab; for a view of objects it waits until the
// table has been loaded afresh, so that no later render replaces the rows
// the test clicks.
func openView(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	loaded := fmt.Sprintf(`((document.querySelector("#%s-table") || {dataset: {}}).dataset.loaded || "")`, name)
	before := get(t, ctx, "read the table's load", chromedp.Evaluate[string](loaded))
	do(t, ctx, "open view "+name, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#tabs button[data-view=%q]`, name))),
		chromedp.WaitVisible(chromedp.CSS("#view-"+name)))
	if name == "overview" || name == "history" {
		return
	}
	if !ts.Eventually(10*time.Second, func() bool {
		return get(t, ctx, "read the table's load", chromedp.Evaluate[string](loaded)) != before
	}) {
		t.Fatalf("view %s: the table never loaded", name)
	}
}

// formCase is one kind's scenario: create, edit, a creation the API
// refuses, then (at the end, children first) delete.
type formCase struct {
	kind, parent, id string
	create           []input
	path             string // the object in the API
	edit             []input
	edited           string // in the API's answer once edited
	bad              []input
	badError         string // in the inline error (or one of its |-separated words)
}

// TestManagePage drives every form of the page on a real node: each kind
// of object is created, edited and deleted by clicks and typing, checked
// through the API; a refused creation shows the API's error beside the
// form; servers are disabled and enabled; a license is uploaded; the
// history view pages and filters finished transfers.
func TestManagePage(t *testing.T) {
	r := newRig(t)
	ctx, sshd, c, n, api := r.ctx, r.sshd, r.c, r.n, r.api

	do(t, ctx, "open the page", chromedp.Navigate(n.AdminURL()+"/"), chromedp.WaitVisible(chromedp.CSS("#login")))
	login(t, ctx, ts.AdminPassword)
	do(t, ctx, "see the app", chromedp.WaitVisible(chromedp.CSS("#tabs button[data-view=users]")))

	cases := []formCase{
		{kind: "servers", id: "ui-sftp", path: "/api/servers/ui-sftp",
			create: []input{typed("name", "ui-sftp"), chosen("protocol", "sftp"), typed("port", "2301"), typed("root", "ui")},
			edit:   []input{typed("port", "2302")}, edited: `"port":2302`,
			bad: []input{typed("name", "ui-other"), typed("port", "2302")}, badError: "2302"},
		{kind: "accounts", parent: "ui-sftp", id: "bob", path: "/api/servers/ui-sftp/accounts/bob",
			create: []input{typed("login", "bob"), typed("password", "bob-password-1")},
			edit:   []input{typed("publicKeys", strings.TrimSpace(sshd.HostKey))}, edited: `"publicKeys":["ssh-`,
			bad: []input{typed("login", "eve")}, badError: "password"},
		{kind: "partners", id: "ui-partner", path: "/api/partners/ui-partner",
			create: []input{typed("name", "ui-partner"), chosen("protocol", "sftp"), typed("address", "127.0.0.1:2022"), typed("hostKey", strings.TrimSpace(sshd.HostKey))},
			edit:   []input{typed("address", "127.0.0.1:2023")}, edited: `"address":"127.0.0.1:2023"`,
			bad: []input{typed("name", "ui-nokey"), typed("address", "127.0.0.1:2024")}, badError: "host"},
		{kind: "remote", parent: "ui-partner", id: "alice", path: "/api/partners/ui-partner/accounts/alice",
			create: []input{typed("login", "alice"), typed("password", "alice-password-1")},
			edit:   []input{typed("privateKey", sshd.ClientKey)}, edited: `"hasPrivateKey":true`,
			bad: []input{typed("login", "mallory")}, badError: "password"},
		{kind: "rules", id: "ui-rule/send", path: "/api/rules/ui-rule/send",
			create: []input{typed("name", "ui-rule"), chosen("direction", "send"), typed("path", "/ui-out"), typed("localDir", "out")},
			edit:   []input{typed("path", "/ui-out2")}, edited: `"path":"/ui-out2"`,
			// The server validates task lists: an unknown task type is
			// refused with its reason (until rules have tasks, the
			// field itself is refused).
			bad: []input{typed("name", "ui-bad"), typed("path", "/x"), typed("preTasks", `[{"type": "NO-SUCH-TASK"}]`)}, badError: "preTasks|NO-SUCH-TASK"},
		{kind: "users", id: "ui-op", path: "/api/users/ui-op",
			create: []input{typed("username", "ui-op"), typed("password", "ui-op-password"), chosen("perms.transfers", "rw-")},
			edit:   []input{chosen("perms.servers", "r--")}, edited: `"servers":"r--"`,
			bad: []input{typed("username", "ui-short"), typed("password", "short")}, badError: "8"},
	}
	for _, fc := range cases {
		openView(t, ctx, fc.kind)
		if fc.parent != "" {
			do(t, ctx, "choose the parent", chromedp.WaitReady(chromedp.CSS(fmt.Sprintf(`#view-%s select[name=parent] option[value=%q]`, fc.kind, fc.parent))),
				chromedp.SetValue(chromedp.CSS(fmt.Sprintf(`#view-%s select[name=parent]`, fc.kind)), fc.parent))
		}
		// Create.
		fill(t, ctx, fc.kind, fc.create...)
		submit(t, ctx, fc.kind)
		do(t, ctx, "see the new "+fc.kind+" row", chromedp.WaitVisible(chromedp.CSS(rowSel(fc.kind, fc.id))))
		api.Must(t, 200, "GET", fc.path, nil)
		// Edit.
		do(t, ctx, "edit", chromedp.Click(chromedp.CSS(rowSel(fc.kind, fc.id)+` button[data-action="edit"]`)),
			chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#%s-form[data-mode="edit"]`, fc.kind))))
		fill(t, ctx, fc.kind, fc.edit...)
		submit(t, ctx, fc.kind)
		var body string
		if !ts.Eventually(15*time.Second, func() bool {
			var b bytes.Buffer
			json.Compact(&b, api.Must(t, 200, "GET", fc.path, nil).Body)
			body = b.String()
			return strings.Contains(body, fc.edited)
		}) {
			t.Fatalf("%s: after the edit the API shows %s, want %s (form error %q)", fc.kind, body, fc.edited,
				get(t, ctx, "read the error", chromedp.Text(chromedp.CSS("#"+fc.kind+"-error"))))
		}
		do(t, ctx, "the form is back to creation", chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#%s-form[data-mode="create"]`, fc.kind))))
		// A creation the API refuses: its message, beside the form.
		fill(t, ctx, fc.kind, fc.bad...)
		submit(t, ctx, fc.kind)
		refused := formError(t, ctx, fc.kind)
		if !slices.ContainsFunc(strings.Split(fc.badError, "|"), func(w string) bool { return strings.Contains(refused, w) }) {
			t.Errorf("%s: inline error %q, want it to mention %q", fc.kind, refused, fc.badError)
		}
		clearError(t, ctx, fc.kind)
		do(t, ctx, "reset the form", chromedp.Reset(chromedp.CSS("#"+fc.kind+"-form")))
		t.Logf("%s: created, edited (%s), refused one inline: %q", fc.kind, fc.edited, refused)
	}

	// A task list that is not JSON is refused before it is sent, naming the
	// field.
	openView(t, ctx, "rules")
	fill(t, ctx, "rules", typed("name", "ui-json"), typed("path", "/j"), typed("postTasks", `[{"type": `))
	submit(t, ctx, "rules")
	if e := formError(t, ctx, "rules"); !strings.HasPrefix(e, "postTasks: not JSON") {
		t.Errorf("rules: inline error %q for a task list that is not JSON", e)
	}
	clearError(t, ctx, "rules")
	t.Logf("screenshot of the rules form: %s", screenshot(t, ctx, "ui-rules-form"))

	// Disable and enable a server.
	openView(t, ctx, "servers")
	enabled := func() bool {
		var s struct{ Enabled bool }
		api.Must(t, 200, "GET", "/api/servers/ui-sftp", nil).Decode(&s)
		return s.Enabled
	}
	for _, want := range []bool{false, true} {
		do(t, ctx, "toggle the server", chromedp.Click(chromedp.CSS(rowSel("servers", "ui-sftp")+` button[data-action="toggle"]`)))
		if !ts.Eventually(10*time.Second, func() bool { return enabled() == want }) {
			t.Fatalf("server enabled %v, want %v after the toggle", enabled(), want)
		}
		wantCell := map[bool]string{true: "|yes|", false: "|no|"}[want]
		if !ts.Eventually(5*time.Second, func() bool { return strings.Contains(rowText(t, ctx, "servers", "ui-sftp"), wantCell) }) {
			t.Errorf("server row %q after the toggle, want %s", rowText(t, ctx, "servers", "ui-sftp"), wantCell)
		}
	}
	t.Logf("screenshot of the servers view: %s", screenshot(t, ctx, "ui-servers"))

	// Delete, children first; the first click only arms the button.
	for i := len(cases) - 1; i >= 0; i-- {
		fc := cases[i]
		openView(t, ctx, fc.kind)
		if fc.parent != "" {
			do(t, ctx, "choose the parent", chromedp.SetValue(chromedp.CSS(fmt.Sprintf(`#view-%s select[name=parent]`, fc.kind)), fc.parent))
		}
		del := chromedp.CSS(rowSel(fc.kind, fc.id) + ` button[data-action="delete"]`)
		do(t, ctx, "arm delete", chromedp.WaitVisible(del), chromedp.Click(del))
		if r, _ := api.Do("GET", fc.path, nil); r == nil || r.Status != 200 {
			t.Fatalf("%s: one click deleted it", fc.kind)
		}
		// The button disarms itself after 5 s; a slow machine may
		// take that long over the check above.
		if get(t, ctx, "read the delete button", chromedp.Text(del)) != "Really delete?" {
			do(t, ctx, "arm delete again", chromedp.Click(del))
		}
		do(t, ctx, "delete", chromedp.Click(del))
		if !ts.Eventually(15*time.Second, func() bool { return rowText(t, ctx, fc.kind, fc.id) == "" }) {
			t.Fatalf("%s: row %q still there after the second click; form error %q", fc.kind, rowText(t, ctx, fc.kind, fc.id),
				get(t, ctx, "read the error", chromedp.Text(chromedp.CSS("#"+fc.kind+"-error"))))
		}
		api.Must(t, 404, "GET", fc.path, nil)
	}

	// The license: a file that is not one is refused inline; a real one
	// is installed.
	openView(t, ctx, "overview")
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`{"license": {"id": "forged"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(dir, "license.json")
	ts.WriteLicense(t, good, 1)
	upload := func(path string) string {
		get(t, ctx, "clear", chromedp.Evaluate[bool](`(document.querySelector("#license-error").textContent = "", true)`))
		do(t, ctx, "upload "+path, chromedp.SetUploadFiles(chromedp.CSS(`#license-form input[type=file]`), []string{path}),
			chromedp.Click(chromedp.CSS(`#license-form button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`#license-error:not(:empty)`)))
		return get(t, ctx, "read the license answer", chromedp.Text(chromedp.CSS("#license-error")))
	}
	if e := upload(bad); e == "" || strings.HasPrefix(e, "Installed") {
		t.Errorf("a forged license: %q", e)
	}
	if e := upload(good); !strings.HasPrefix(e, "Installed: udmg tests, 1 nodes") {
		t.Errorf("a real license: %q", e)
	}
	t.Logf("screenshot of the overview after a license upload: %s", screenshot(t, ctx, "ui-overview"))

	// History: seven pushes done and one cancelled transfer, five a page.
	missing, later := api.FailingTransfers(t, sshd, c.Home)
	for i := range 7 {
		ts.WriteRandomFile(t, filepath.Join(c.Home, "out", fmt.Sprintf("h%d.bin", i)), 1024)
		api.Must(t, 201, "POST", "/api/transfers", map[string]any{"rule": "push", "partner": "remote", "account": sshd.User, "file": fmt.Sprintf("h%d.bin", i)})
	}
	api.WaitTransfer(t, missing.ID, time.Minute, "ERROR", func(tr ts.Transfer) bool { return tr.Status == "ERROR" })
	api.Must(t, 202, "PUT", fmt.Sprintf("/api/transfers/%d/cancel", later.ID), nil)
	// The ERROR transfer may be in the history as well (once ERROR is
	// final): the pages follow what the API holds.
	var hist struct{ History []struct{ ID, Status string } }
	archived := func() bool {
		if api.Must(t, 200, "GET", "/api/history?limit=100", nil).Decode(&hist) != nil {
			return false
		}
		done, cancelled := 0, 0
		for _, h := range hist.History {
			done += map[bool]int{true: 1}[h.Status == "DONE"]
			cancelled += map[bool]int{true: 1}[h.Status == "CANCELLED"]
		}
		return done == 7 && cancelled == 1
	}
	if !ts.Eventually(time.Minute, archived) {
		t.Fatalf("history %+v, want 7 DONE and 1 CANCELLED", hist.History)
	}
	total := len(hist.History)
	if total > 10 {
		t.Fatalf("history holds %d transfers, want at most 10 (two pages of five)", total)
	}
	openView(t, ctx, "history")
	do(t, ctx, "five a page", chromedp.SetValue(chromedp.CSS(`#history-filter [name=limit]`), "5"),
		chromedp.Click(chromedp.CSS(`#history-filter button[type=submit]`)))
	page := func(want string, rows int) {
		t.Helper()
		// The view shows the answer to the last request once it comes.
		var got string
		if !ts.Eventually(10*time.Second, func() bool {
			got = get(t, ctx, "read the page", chromedp.Evaluate[string](`document.querySelector("#history").dataset.page + ":" + document.querySelectorAll("#history tbody tr").length`))
			return got == fmt.Sprintf("%s:%d", want, rows)
		}) {
			t.Errorf("history shows page:rows %s, want page %s with %d rows", got, want, rows)
		}
	}
	page("1", 5)
	if get(t, ctx, "prev", chromedp.Evaluate[bool](`document.querySelector("#history-prev").disabled`)) {
		t.Log("previous disabled on page 1, as it should")
	} else {
		t.Error("previous enabled on page 1")
	}
	do(t, ctx, "next page", chromedp.Click(chromedp.CSS("#history-next")))
	page("2", total-5)
	if !get(t, ctx, "next", chromedp.Evaluate[bool](`document.querySelector("#history-next").disabled`)) {
		t.Error("next enabled on the last page")
	}
	t.Logf("screenshot of history page 2: %s", screenshot(t, ctx, "ui-history"))
	do(t, ctx, "back", chromedp.Click(chromedp.CSS("#history-prev")))
	page("1", 5)
	do(t, ctx, "only CANCELLED", chromedp.SetValue(chromedp.CSS(`#history-filter [name=status]`), "CANCELLED"),
		chromedp.Click(chromedp.CSS(`#history-filter button[type=submit]`)))
	if !ts.Eventually(10*time.Second, func() bool {
		return get(t, ctx, "read the filtered history", chromedp.Evaluate[string](`[...document.querySelectorAll("#history tbody tr")].map((r) => r.cells[0].textContent + ":" + r.cells[8].textContent).join(",")`)) ==
			fmt.Sprintf("%d:CANCELLED", later.ID)
	}) {
		t.Errorf("filtered history %q, want only transfer %d CANCELLED", get(t, ctx, "read", chromedp.Text(chromedp.CSS("#history tbody"))), later.ID)
	}
}
