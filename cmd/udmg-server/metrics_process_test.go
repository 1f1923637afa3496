package main

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// TestMetricsCountTransfers uploads and downloads a file with curl over
// SFTP through a real node and reads the bytes and transfers in /metrics.
func TestMetricsCountTransfers(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real node")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl (make deps installs it)")
	}
	c := ts.NewCluster(t, 1)
	n := c.WaitOneActive(30*time.Second, "")
	const size = 3 << 20
	src := filepath.Join(t.TempDir(), "m.bin")
	ts.WriteRandomFile(t, src, size)
	url := fmt.Sprintf("sftp://admin:%s@%s/m.bin", ts.AdminPassword, n.SFTPAddr())
	for _, args := range [][]string{{"-T", src, url}, {"-o", filepath.Join(t.TempDir(), "back.bin"), url}} {
		if out, err := exec.Command("curl", append([]string{"-sS", "--insecure"}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("curl %v: %v\n%s", args, err, out)
		}
	}

	var body string
	if !ts.Eventually(10*time.Second, func() bool {
		r, err := n.Admin().Do("GET", "/metrics", nil)
		if err != nil || r.Status != 200 {
			return false
		}
		body = string(r.Body)
		return metricValue(body, `udmg_transfers{state="DONE"}`) == 2 && metricValue(body, `udmg_lease_renewal_seconds_count`) > 0
	}) {
		t.Fatalf("two DONE transfers or a lease renewal never counted:\n%s", body)
	}
	for name, want := range map[string]float64{
		`udmg_transfer_bytes_total{direction="received"}`: size,
		`udmg_transfer_bytes_total{direction="sent"}`:     size,
		`udmg_node_mode{mode="ACTIVE"}`:                   1,
	} {
		if got := metricValue(body, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

// metricValue is the value of the sample name (with its labels, as written)
// in a /metrics body, -1 when absent.
func metricValue(body, name string) float64 {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		return -1
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	return v
}
