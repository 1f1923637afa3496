package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/jlaffaye/ftp"
)

func fmtDur(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	default:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
}

// quantile is the nearest-rank quantile of the measured (>= 0) values.
func quantile(ds []time.Duration, q float64) time.Duration {
	var v []time.Duration
	for _, d := range ds {
		if d >= 0 {
			v = append(v, d)
		}
	}
	if len(v) == 0 {
		return -1
	}
	slices.Sort(v)
	i := int(math.Ceil(q*float64(len(v)))) - 1
	return v[max(0, min(i, len(v)-1))]
}

func formatTable(c *Cluster, results []*Result, wall time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n=== udmg e2e chaos suite: project %s, [controller] Heartbeat=%v Deadline=%v HeartbeatCheck=%v; lb checks every 200ms, fall 1 rise 1 ===\n",
		c.project, c.timing.Heartbeat, c.timing.Deadline, c.timing.HeartbeatCheck)
	fmt.Fprintf(&b, "failover = fault → ack of the first upload through lb started after another node answered ACTIVE; recovery = heal → 1 ACTIVE + 2 PASSIVE for 1s and an upload acknowledged\n")
	fmt.Fprintf(&b, "client errs = failed SFTP connects/uploads through lb, fault → recovery (retried every %v); takeovers = times a node began answering ACTIVE\n", retryEvery)
	fmt.Fprintf(&b, "overlap = time two nodes greeted on SFTP/FTP in intersecting probe intervals (must be 0); missing/corrupt = acknowledged uploads checked on the shared volume (must be 0)\n\n")
	head := []string{"scenario", "trials", "failover med", "p99", "overlap", "acked", "missing", "corrupt", "client errs", "takeovers", "recovery med", "max", "result"}
	rows := [][]string{head}
	for _, r := range results {
		var fo, rec []time.Duration
		errs, takeovers := 0, 0
		for _, t := range r.Trials {
			fo = append(fo, t.Failover)
			rec = append(rec, t.Recovery)
			errs += t.Errors
			takeovers += t.Takeovers
		}
		verdict := "ok"
		if len(r.Failures) > 0 || r.Overlap > 0 || r.Missing+r.Corrupt > 0 {
			verdict = "FAIL"
		}
		trials, errText, takeText := fmt.Sprint(len(r.Trials)), fmt.Sprint(errs), fmt.Sprint(takeovers)
		if r.Name == "whole run" {
			trials, errText, takeText = "", "", ""
		}
		rows = append(rows, []string{r.Name, trials, fmtDur(quantile(fo, 0.5)), fmtDur(quantile(fo, 0.99)),
			fmtDur(r.Overlap), fmt.Sprint(r.Acked), fmt.Sprint(r.Missing), fmt.Sprint(r.Corrupt), errText, takeText,
			fmtDur(quantile(rec, 0.5)), fmtDur(quantile(rec, 1)), verdict})
	}
	widths := make([]int, len(head))
	for _, row := range rows {
		for i, cell := range row {
			widths[i] = max(widths[i], len([]rune(cell)))
		}
	}
	for n, row := range rows {
		for i, cell := range row {
			if i == 0 {
				fmt.Fprintf(&b, "%-*s", widths[i], cell)
			} else {
				fmt.Fprintf(&b, "  %*s", widths[i], cell)
			}
		}
		b.WriteString("\n")
		if n == 0 {
			total := len(widths)*2 - 2
			for _, w := range widths {
				total += w
			}
			b.WriteString(strings.Repeat("-", total) + "\n")
		}
	}
	b.WriteString("\n")
	for _, r := range results {
		if r.What != "" {
			fmt.Fprintf(&b, "%s: %s\n", r.Name, r.What)
		}
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "  ! %s\n", f)
		}
		for i, t := range r.Trials {
			if len(t.Notes) > 0 {
				fmt.Fprintf(&b, "  trial %d: %s\n", i+1, strings.Join(t.Notes, "; "))
			}
		}
		if r.OverlapDesc != "" {
			fmt.Fprintf(&b, "  ! first overlap: %s\n", r.OverlapDesc)
		}
	}
	fmt.Fprintf(&b, "\nwall time of the test (images, compose up, scenarios, soak): %v\n", wall.Round(time.Second))
	return b.String()
}

// ftpSmoke uploads one file over FTP through the load balancer (control
// on the FTP frontend, passive data on 30000-30009) and checks it on the
// shared volume. Failures are reported, not fatal: SFTP is what the chaos
// scenarios measure.
func (s *Suite) ftpSmoke() {
	t := s.t
	addr := fmt.Sprintf("%s:%d", s.c.lbHost, s.c.ftpPt)
	conn, err := ftp.Dial(addr, ftp.DialWithTimeout(5*time.Second))
	if err != nil {
		t.Logf("FTP smoke test through lb: dial %s: %v", addr, err)
		return
	}
	defer conn.Quit()
	if err := conn.Login("admin", adminPassword); err != nil {
		t.Logf("FTP smoke test through lb: login: %v", err)
		return
	}
	data := bytes.Repeat([]byte("udmg ftp smoke\n"), 1000)
	name := fmt.Sprintf("ftp-smoke-%d.bin", time.Now().UnixNano())
	if err := conn.Stor(name, bytes.NewReader(data)); err != nil {
		t.Logf("FTP smoke test through lb: STOR: %v", err)
		return
	}
	missing, corrupt, err := s.c.verify([]Ack{{Name: name, Sum: sha256.Sum256(data)}})
	switch {
	case err != nil:
		t.Logf("FTP smoke test through lb: verify: %v", err)
	case len(missing)+len(corrupt) > 0:
		t.Errorf("FTP upload through lb acknowledged but missing/corrupted on the volume")
	default:
		t.Logf("FTP smoke test through lb: upload of %d bytes acknowledged and found on the shared volume", len(data))
	}
}
