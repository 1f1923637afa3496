package ui_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	ts "github.com/udmg/gateway/testsupport"
)

// seedColours are the status button's backgrounds the seed documents:
// Active transparent, Passive yellow, Offline red, Unlicensed grey.
var seedColours = map[string]string{
	"ACTIVE":     "rgba(0, 0, 0, 0)",
	"PASSIVE":    "rgb(255, 255, 0)",
	"OFFLINE":    "rgb(255, 0, 0)",
	"UNLICENSED": "rgb(128, 128, 128)",
}

// waitStatus waits for the status button to read mode, in the seed's
// colour.
func waitStatus(t *testing.T, ctx context.Context, where, mode string) {
	t.Helper()
	var label, colour, data string
	if !ts.Eventually(15*time.Second, func() bool {
		label = get(t, ctx, "read the status label", chromedp.Text(chromedp.CSS("#status")))
		colour, data = statusColour(t, ctx)
		return label == mode && data == mode && colour == seedColours[mode]
	}) {
		t.Errorf("%s: status button reads %q (mode %q) in %s, want %s in %s", where, label, data, colour, mode, seedColours[mode])
	}
}

// TestStatusButton opens the login page of each node of a three-node
// cluster licensed for two (one ACTIVE, one PASSIVE, one UNLICENSED): the
// button reads each node's mode in the seed's colour before anyone logs in.
// Logged in on the ACTIVE node, the cluster view names it with the lease
// and the holder's renewal latency. A node that stops turns its open page's
// button OFFLINE.
func TestStatusButton(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test")
	}
	ctx := browser(t)
	c := ts.NewClusterWith(t, 3, ts.Options{LicenseNodes: 2})
	var modes []string
	if !ts.Eventually(90*time.Second, func() bool {
		modes = c.Modes()
		sorted := slices.Sorted(slices.Values(modes))
		return slices.Equal(sorted, []string{"ACTIVE", "PASSIVE", "UNLICENSED"})
	}) {
		t.Fatalf("modes %q, want one ACTIVE, one PASSIVE, one UNLICENSED", modes)
	}
	byMode := map[string]*ts.Proc{}
	for i, p := range c.Nodes {
		byMode[modes[i]] = p
	}
	for _, mode := range []string{"ACTIVE", "PASSIVE", "UNLICENSED"} {
		p := byMode[mode]
		do(t, ctx, "open "+p.Name+"'s login page", chromedp.Navigate(p.AdminURL()+"/"), chromedp.WaitVisible(chromedp.CSS("#login")))
		waitStatus(t, ctx, p.Name+"'s login page", mode)
		t.Logf("screenshot of the login page of the %s node: %s", mode, screenshot(t, ctx, "ui-login-"+strings.ToLower(mode)))
	}

	// The cluster view, on the ACTIVE node.
	active := byMode["ACTIVE"]
	var st struct{ Active string }
	if err := active.Admin().Must(t, 200, "GET", "/api/cluster", nil).Decode(&st); err != nil || st.Active == "" {
		t.Fatalf("/api/cluster names no ACTIVE: %v", err)
	}
	do(t, ctx, "open the ACTIVE node's page", chromedp.Navigate(active.AdminURL()+"/"), chromedp.WaitVisible(chromedp.CSS("#login")))
	login(t, ctx, ts.AdminPassword)
	do(t, ctx, "see the cluster view", chromedp.WaitVisible(chromedp.CSS("#cluster-card")))
	cluster := func() string {
		return get(t, ctx, "read the cluster view", chromedp.Evaluate[string](`[...document.querySelectorAll("#cluster dt")].map((dt) => dt.textContent + "=" + dt.nextElementSibling.textContent).join("\n") +
			"\n" + [...document.querySelectorAll("#cluster-nodes tbody tr")].map((r) => r.cells[2].textContent).sort().join(",")`))
	}
	var view string
	if !ts.Eventually(15*time.Second, func() bool {
		view = cluster()
		return strings.Contains(view, "ACTIVE="+st.Active+"\n") && strings.Contains(view, "epoch ") &&
			strings.Contains(view, "(holder clock)") && strings.Contains(view, "(last renewal, measured by the holder)") &&
			strings.HasSuffix(view, "\nACTIVE,PASSIVE,UNLICENSED")
	}) {
		t.Errorf("cluster view:\n%s\nwant ACTIVE %s, the epoch, the time left by the holder's clock, its renewal latency and the three modes", view, st.Active)
	}
	waitStatus(t, ctx, "the ACTIVE node's page, logged in", "ACTIVE")
	t.Logf("screenshot of the cluster view: %s", screenshot(t, ctx, "ui-cluster"))

	// OFFLINE: the page stays open while its node stops.
	p := byMode["UNLICENSED"]
	do(t, ctx, "open "+p.Name+"'s login page", chromedp.Navigate(p.AdminURL()+"/"), chromedp.WaitVisible(chromedp.CSS("#login")))
	waitStatus(t, ctx, p.Name+"'s login page", "UNLICENSED")
	p.Kill()
	waitStatus(t, ctx, fmt.Sprintf("%s's login page once it stopped", p.Name), "OFFLINE")
	t.Logf("screenshot of the login page of a stopped node: %s", screenshot(t, ctx, "ui-login-offline"))
}
