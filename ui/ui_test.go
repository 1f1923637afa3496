package ui_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/udmg/gateway/proxy"
	ts "github.com/udmg/gateway/testsupport"
)

// chromium finds Debian's chromium (make deps installs it).
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("!! no chromium on this machine: run `make deps` (apt-get install chromium) for the browser tests")
	return ""
}

// browser starts a headless chromium for the test; its context ends with it.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first call starts the browser, which lives as long as ctx: no
	// timeout on it.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// do runs browser steps with a bound, failing the test on error.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one browser action that returns a value, with a bound.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// statusColour is the computed background of the server status button and
// the mode it shows.
func statusColour(t *testing.T, ctx context.Context) (colour, mode string) {
	t.Helper()
	colour = get(t, ctx, "read the status colour", chromedp.Evaluate[string](`getComputedStyle(document.querySelector("#status")).backgroundColor`))
	mode = get(t, ctx, "read the status mode", chromedp.Evaluate[string](`document.querySelector("#status").dataset.mode || ""`))
	return colour, mode
}

// activeInTable is the node the page's node table shows ACTIVE ("" if none).
func activeInTable(t *testing.T, ctx context.Context) string {
	t.Helper()
	return get(t, ctx, "read the node table", chromedp.Evaluate[string](`(() => {
		for (const tr of document.querySelectorAll("#nodes tbody tr"))
			if (tr.cells[4].textContent === "ACTIVE") return tr.cells[2].textContent;
		return "";
	})()`))
}

// login fills the login form as admin and submits it; a wrong password
// leaves an error on the form.
func login(t *testing.T, ctx context.Context, password string) {
	t.Helper()
	get(t, ctx, "clear the form", chromedp.Evaluate[bool](`(document.querySelector("#login-error").textContent = "", document.querySelector("#user").value = "", document.querySelector("#password").value = "", true)`))
	do(t, ctx, "log in",
		chromedp.SendKeys(chromedp.CSS("#user"), "admin"), chromedp.SendKeys(chromedp.CSS("#password"), password),
		chromedp.Click(chromedp.CSS(`#login button[type="submit"]`)))
	if password != ts.AdminPassword {
		do(t, ctx, "wait for the login error", chromedp.WaitVisible(chromedp.CSS(`#login-error:not(:empty)`)))
	}
}

// screenshot saves the page as name.png in $UI_SCREENSHOTS, or in
// bin/artefacts when it is not set.
func screenshot(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	png := get(t, ctx, "screenshot", chromedp.FullScreenshot(100))
	dir := os.Getenv("UI_SCREENSHOTS")
	if dir == "" {
		dir = ts.ArtefactDir(t)
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestAdminPage logs in on a PASSIVE node of a real three-node cluster,
// reads the status colour and the node table, kills the ACTIVE node and
// watches the page show the new ACTIVE without a reload.
func TestAdminPage(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	start := time.Now()
	ctx := browser(t)
	c := ts.NewCluster(t, 3)
	active := c.WaitOneActive(30*time.Second, "PASSIVE")
	passive := c.Other(active)

	// The assets need no credentials; everything they read does.
	resp, err := http.Get(passive.AdminURL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET / answered %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	do(t, ctx, "open the page", chromedp.Navigate(passive.AdminURL()+"/"), chromedp.WaitVisible(chromedp.CSS("#login")))
	login(t, ctx, "wrong-password")
	if e := get(t, ctx, "read the login error", chromedp.Text(chromedp.CSS("#login-error"))); !strings.Contains(e, "invalid user name or password") {
		t.Fatalf("login error %q", e)
	}
	login(t, ctx, ts.AdminPassword)
	if !ts.Eventually(15*time.Second, func() bool {
		return get(t, ctx, "look for the app", chromedp.Evaluate[bool](`!document.querySelector("#app").hidden`))
	}) {
		t.Fatalf("login failed: %q", get(t, ctx, "read the login error", chromedp.Text(chromedp.CSS("#login-error"))))
	}

	// The PASSIVE node's button is yellow, and the table shows who is ACTIVE.
	if !ts.Eventually(10*time.Second, func() bool { _, m := statusColour(t, ctx); return m == "PASSIVE" }) {
		colour, mode := statusColour(t, ctx)
		t.Fatalf("status button on a PASSIVE node: mode %q colour %s", mode, colour)
	}
	if colour, _ := statusColour(t, ctx); colour != "rgb(255, 255, 0)" {
		t.Fatalf("PASSIVE status colour %s, want yellow", colour)
	}
	if !ts.Eventually(10*time.Second, func() bool { return activeInTable(t, ctx) == active.IP }) {
		t.Fatalf("node table shows %q ACTIVE, want %s", activeInTable(t, ctx), active.IP)
	}
	if !ts.Eventually(10*time.Second, func() bool {
		return strings.Contains(get(t, ctx, "read the license", chromedp.Text(chromedp.CSS("#license"))), "udmg tests")
	}) {
		t.Fatal("the license panel never showed the licensee")
	}

	t.Logf("screenshot of the page on a PASSIVE node: %s", screenshot(t, ctx, "ui-passive-node"))

	// Failover shows without a reload.
	killed := time.Now()
	active.Kill()
	var now string
	if !ts.Eventually(20*time.Second, func() bool { now = activeInTable(t, ctx); return now != "" && now != active.IP }) {
		t.Fatalf("the page never showed a new ACTIVE node (shows %q)", now)
	}
	t.Logf("page showed the new ACTIVE %s %s after the kill", now, time.Since(killed).Round(100*time.Millisecond))
	if now == passive.IP {
		if !ts.Eventually(5*time.Second, func() bool { _, m := statusColour(t, ctx); return m == "ACTIVE" }) {
			t.Fatal("the page's node became ACTIVE but its button did not say so")
		}
		if colour, _ := statusColour(t, ctx); colour != "rgba(0, 0, 0, 0)" {
			t.Fatalf("ACTIVE status colour %s, want transparent", colour)
		}
	}

	// Behind udmg-proxy (in process; its own port unused), under
	// /service/udmg/, with the dead node first
	// among the targets: the page loads and shows the cluster.
	toml := "[proxy]\nport = 5000\n[service.udmg]\nprotocol = \"http\"\npolicy = \"failover\"\n"
	for _, p := range append([]*ts.Proc{active}, c.Nodes...) {
		toml += fmt.Sprintf("[[service.udmg.targets]]\nhostname = %q\nport = %d\n", p.IP, ts.AdminPort)
	}
	cfg, err := proxy.Parse("server.toml", []byte(toml))
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(proxy.New(cfg, slog.New(slog.NewTextHandler(t.Output(), nil))))
	defer front.Close()
	do(t, ctx, "open the page behind the proxy", chromedp.Navigate(front.URL+"/service/udmg/"), chromedp.WaitVisible(chromedp.CSS("#login")))
	login(t, ctx, ts.AdminPassword)
	if !ts.Eventually(15*time.Second, func() bool { return activeInTable(t, ctx) == now }) {
		t.Fatalf("behind the proxy the page shows %q ACTIVE, want %s", activeInTable(t, ctx), now)
	}
	t.Logf("screenshot behind udmg-proxy: %s", screenshot(t, ctx, "ui-behind-proxy"))
	t.Logf("UI test ran %s", time.Since(start).Round(100*time.Millisecond))
}

// rig is what the page's one-node tests start with: a browser, an OpenSSH
// server to transfer with, and a one-node cluster with its ACTIVE node and
// an API client as its administrator.
type rig struct {
	ctx  context.Context
	sshd *ts.SSHD
	c    *ts.Cluster
	n    *ts.Proc
	api  *ts.APIClient
}

func newRig(t *testing.T) rig {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test")
	}
	r := rig{ctx: browser(t), sshd: ts.StartSSHD(t), c: ts.NewCluster(t, 1)}
	r.n = r.c.WaitOneActive(30*time.Second, "")
	r.api = r.n.Admin()
	return r
}

// TestPauseFromPage pauses a running client transfer (1 GiB to OpenSSH's
// sftp-server) with the page's button, and resumes it the same way.
func TestPauseFromPage(t *testing.T) {
	r := newRig(t)
	ctx, sshd, c, n, api := r.ctx, r.sshd, r.c, r.n, r.api
	remoteDir := t.TempDir()
	api.AddSSHDPartner(t, sshd, remoteDir)
	ts.WriteRandomFile(t, filepath.Join(c.Home, "out", "big.bin"), 1<<30)

	do(t, ctx, "open the page", chromedp.Navigate(n.AdminURL()+"/"), chromedp.WaitVisible(chromedp.CSS("#login")))
	login(t, ctx, ts.AdminPassword)
	do(t, ctx, "see the transfers panel", chromedp.WaitVisible(chromedp.CSS("#transfers-card")))

	var tr ts.Transfer
	if err := api.Must(t, 201, "POST", "/api/transfers", map[string]any{"rule": "push", "partner": "remote", "account": sshd.User, "file": "big.bin"}).Decode(&tr); err != nil {
		t.Fatal(err)
	}
	button := func(action string) chromedp.CSS {
		return chromedp.CSS(fmt.Sprintf(`#transfers tbody tr button[data-action=%q]`, action))
	}
	do(t, ctx, "pause", chromedp.Click(button("pause")))
	paused := api.WaitTransfer(t, tr.ID, 10*time.Second, "PAUSED", func(tr ts.Transfer) bool { return tr.Status == "PAUSED" || tr.Status == "DONE" })
	if paused.Status != "PAUSED" {
		t.Fatalf("the transfer ended %s before the pause: the test proves nothing", paused.Status)
	}
	do(t, ctx, "see it paused with a resume button", chromedp.WaitVisible(button("resume")))
	t.Logf("screenshot of a paused transfer: %s", screenshot(t, ctx, "ui-paused-transfer"))
	do(t, ctx, "resume", chromedp.Click(button("resume")))
	api.WaitTransfer(t, tr.ID, 3*time.Minute, "RUNNING or DONE", func(tr ts.Transfer) bool { return tr.Status == "RUNNING" || tr.Status == "DONE" })
}
