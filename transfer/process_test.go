package transfer_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/udmg/gateway/httpapi/wire"
	"github.com/udmg/gateway/listeners"
	ts "github.com/udmg/gateway/testsupport"
)

// These tests run real udmg-server processes (testsupport) and drive them
// with the stock clients: OpenSSH sftp and ssh-keygen, curl and lftp, and a
// real remote SFTP partner (OpenSSH sshd with its sftp-server).

const (
	accountPassword = "bob-password-1"
	sftpPort        = 2223
	ftpPort         = 2122
)

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("runs real node processes")
	}
}

func needTool(t *testing.T, name string) {
	if _, err := exec.LookPath(name); err != nil {
		t.Skipf("%s not installed (make deps installs it)", name)
	}
}

// userKey makes an SSH key pair with ssh-keygen; it returns the private
// key's path and the public key line.
func userKey(t *testing.T) (string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return path, strings.TrimSpace(string(pub))
}

// setupServers creates through the API an SFTP server on 2223 and an FTP
// server on 2122 (passive ports, explicit TLS offered), each with account
// bob (password, and on SFTP a public key), and the rules "inbox"
// (receive, /in) and "outbox" (send, /out).
func setupServers(t *testing.T, api *ts.APIClient, pubKey string, passive int) {
	t.Helper()
	api.Must(t, 201, "POST", "/api/servers", map[string]any{"name": "sftp-b", "protocol": "sftp", "port": sftpPort, "root": "b"})
	api.Must(t, 201, "POST", "/api/servers", map[string]any{"name": "ftp-b", "protocol": "ftp", "port": ftpPort, "root": "b",
		"passiveMin": passive, "passiveMax": passive + 9, "tls": true})
	api.Must(t, 201, "POST", "/api/servers/sftp-b/accounts", map[string]any{"login": "bob", "password": accountPassword, "publicKeys": []string{pubKey}})
	api.Must(t, 201, "POST", "/api/servers/ftp-b/accounts", map[string]any{"login": "bob", "password": accountPassword})
	api.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "inbox", "direction": "receive", "path": "/in"})
	api.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "outbox", "direction": "send", "path": "/out"})
}

func history(t *testing.T, api *ts.APIClient) map[string]wire.HistoryItem {
	t.Helper()
	r := api.Must(t, 200, "GET", "/api/history?limit=1000", nil)
	var out struct {
		History []wire.HistoryItem `json:"history"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		t.Fatal(err)
	}
	m := map[string]wire.HistoryItem{}
	for _, h := range out.History {
		m[h.ID] = h
	}
	return m
}

func TestServerModeWithStockClients(t *testing.T) {
	skipShort(t)
	for _, tool := range []string{"sftp", "ssh-keygen", "curl", "lftp"} {
		needTool(t, tool)
	}
	c := ts.NewCluster(t, 1)
	n := c.WaitOneActive(30*time.Second, "")
	api := n.Admin()
	keyPath, pub := userKey(t)
	passive := 31000 + int(time.Now().UnixNano()%2000)
	setupServers(t, api, pub, passive)
	sftpAddr := fmt.Sprintf("%s:%d", n.IP, sftpPort)
	ftpURL := fmt.Sprintf("ftp://bob:%s@%s:%d", accountPassword, n.IP, ftpPort)
	if !ts.Eventually(5*time.Second, func() bool { return ts.Greeting(sftpAddr, time.Second, "SSH-2.0-Go") }) {
		t.Fatalf("server sftp-b does not answer on %s", sftpAddr)
	}

	work := t.TempDir()
	src := filepath.Join(work, "report.bin")
	sum := ts.WriteRandomFile(t, src, 3<<20+17)
	home := filepath.Join(c.Home, "b", "bob")

	// OpenSSH sftp with the public key: upload into the rule's directory,
	// download it back.
	out, err := ts.SFTP(sftpAddr, "bob", keyPath, fmt.Sprintf("mkdir in\nput %s in/report.bin\nget in/report.bin %s/back.bin\n", src, work))
	if err != nil {
		t.Fatalf("sftp: %v\n%s", err, out)
	}
	if got := ts.FileSHA256(t, filepath.Join(home, "in", "report.bin")); got != sum {
		t.Fatal("uploaded file differs")
	}
	if got := ts.FileSHA256(t, filepath.Join(work, "back.bin")); got != sum {
		t.Fatal("downloaded file differs")
	}

	// Escapes are refused: .., absolute paths, a symlink out of the home.
	if err := os.Symlink("/etc", filepath.Join(home, "etc-link")); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"../../etc/passwd", "/etc/passwd", "etc-link/passwd", "../../../../../../etc/hostname"} {
		out, err := ts.SFTP(sftpAddr, "bob", keyPath, fmt.Sprintf("get %s %s/escaped\n", p, work))
		if err == nil {
			t.Errorf("sftp get %s succeeded:\n%s", p, out)
		}
		if _, err := os.Stat(filepath.Join(work, "escaped")); err == nil {
			t.Fatalf("sftp get %s wrote a file", p)
		}
	}

	// curl over FTP (explicit TLS offered but not required), and lftp
	// with AUTH TLS against the server's self-signed certificate.
	if out, err := exec.Command("curl", "-sS", "--ftp-create-dirs", "-T", src, ftpURL+"/in/by-curl.bin").CombinedOutput(); err != nil {
		t.Fatalf("curl upload: %v\n%s", err, out)
	}
	if out, err := exec.Command("curl", "-sS", "-o", filepath.Join(work, "curl-back.bin"), ftpURL+"/in/by-curl.bin").CombinedOutput(); err != nil {
		t.Fatalf("curl download: %v\n%s", err, out)
	}
	if ts.FileSHA256(t, filepath.Join(work, "curl-back.bin")) != sum || ts.FileSHA256(t, filepath.Join(home, "in", "by-curl.bin")) != sum {
		t.Fatal("file moved by curl differs")
	}
	lftp := exec.Command("lftp", "-u", "bob,"+accountPassword, "-p", fmt.Sprint(ftpPort), "-e",
		fmt.Sprintf("set ftp:ssl-force true; set ssl:verify-certificate no; mkdir -f -p out; put %s -o out/by-lftp.bin; bye", src), n.IP)
	if out, err := lftp.CombinedOutput(); err != nil {
		// lftp needs the directory.
		t.Fatalf("lftp over FTPS: %v\n%s", err, out)
	}
	if ts.FileSHA256(t, filepath.Join(home, "out", "by-lftp.bin")) != sum {
		t.Fatal("file uploaded by lftp differs")
	}
	for _, p := range []string{"/../../etc/passwd", "//etc/passwd", "/etc-link/passwd"} {
		if out, err := exec.Command("curl", "-sS", "-o", filepath.Join(work, "escaped"), ftpURL+p).CombinedOutput(); err == nil {
			t.Errorf("curl got %s:\n%s", p, out)
		}
	}

	// Every upload and download is a transfer, then a history row.
	var live []ts.Transfer
	if !ts.Eventually(10*time.Second, func() bool {
		live, err = api.Transfers()
		return err == nil && len(live) >= 5
	}) {
		t.Fatalf("transfers: %+v %v", live, err)
	}
	var h map[string]wire.HistoryItem
	if !ts.Eventually(10*time.Second, func() bool {
		h = history(t, api)
		for _, tr := range live {
			if hi, ok := h[fmt.Sprint(tr.ID)]; !ok || hi.Status != tr.Status {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("history %+v lacks some of %+v", h, live)
	}
	type key struct{ proto, dir, rule string }
	seen := map[key]bool{}
	for _, tr := range live {
		hi := h[fmt.Sprint(tr.ID)]
		if !tr.IsServer || tr.Status != "DONE" || hi.Filesize != 3<<20+17 || hi.Account != "bob" || hi.Duration == "" {
			t.Errorf("transfer %+v / history %+v", tr, hi)
		}
		seen[key{hi.Protocol, hi.Direction, hi.Rule}] = true
	}
	for _, k := range []key{{"sftp", "receive", "inbox"}, {"sftp", "send", ""}, {"ftp", "receive", "inbox"}, {"ftp", "send", ""}} {
		if !seen[k] {
			t.Errorf("no %+v transfer in %+v", k, seen)
		}
	}
}

// setupPartner declares the sshd as partner "remote" with its host key and
// the key it accepts (sealed at rest), and the rules "push" (send) and
// "pull" (receive) between GatewayHome/out|in and dir on the partner.
func setupPartner(t *testing.T, api *ts.APIClient, sshd *ts.SSHD, dir string) {
	t.Helper()
	api.Must(t, 201, "POST", "/api/partners", map[string]any{"name": "remote", "protocol": "sftp", "address": sshd.Addr, "hostKey": sshd.HostKey})
	r := api.Must(t, 201, "POST", "/api/partners/remote/accounts", map[string]any{"login": sshd.User, "privateKey": sshd.ClientKey, "password": partnerPassword})
	if strings.Contains(string(r.Body), "PRIVATE KEY") || strings.Contains(string(r.Body), partnerPassword) {
		t.Fatalf("remote account answer shows a secret: %s", r)
	}
	api.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "push", "direction": "send", "path": dir, "localDir": "out"})
	api.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "pull", "direction": "receive", "path": dir, "localDir": "in"})
}

const partnerPassword = "partner-password-not-on-disk"

func startTransfer(t *testing.T, api *ts.APIClient, rule, file string, extra map[string]any) uint64 {
	t.Helper()
	body := map[string]any{"rule": rule, "partner": "remote", "account": currentUser(t), "file": file}
	for k, v := range extra {
		body[k] = v
	}
	var tr ts.Transfer
	if err := api.Must(t, 201, "POST", "/api/transfers", body).Decode(&tr); err != nil {
		t.Fatal(err)
	}
	return tr.ID
}

func currentUser(t *testing.T) string {
	u := os.Getenv("USER")
	if u == "" {
		out, err := exec.Command("id", "-un").Output()
		if err != nil {
			t.Fatal(err)
		}
		u = strings.TrimSpace(string(out))
	}
	return u
}

// stagedSize is the size of the largest staging file in dir, -1 if none.
func stagedSize(dir string) int64 {
	entries, _ := os.ReadDir(dir)
	n := int64(-1)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), listeners.StagingPrefix) {
			n = max(n, fileSize(filepath.Join(dir, e.Name())))
		}
	}
	return n
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return -1
	}
	return fi.Size()
}

func TestClientModeWithSSHDPartner(t *testing.T) {
	skipShort(t)
	sshd := ts.StartSSHD(t)
	c := ts.NewCluster(t, 1)
	n := c.WaitOneActive(30*time.Second, "")
	api := n.Admin()
	remoteDir := t.TempDir()
	setupPartner(t, api, sshd, remoteDir)

	size := bigFile
	sum := ts.WriteRandomFile(t, filepath.Join(c.Home, "out", "big.bin"), size)
	remote := filepath.Join(remoteDir, "big.bin")

	// Push, paused while it runs: the partner's file stops growing within
	// a heartbeat and the status says PAUSED; resumed, it ends DONE and
	// byte-identical.
	id := startTransfer(t, api, "push", "big.bin", nil)
	api.WaitTransfer(t, id, 30*time.Second, "RUNNING with a checkpoint", func(tr ts.Transfer) bool {
		return tr.Status == "RUNNING" && tr.Progress > 0
	})
	paused := time.Now()
	api.Must(t, 202, "PUT", fmt.Sprintf("/api/transfers/%d/pause", id), nil)
	var stable int64
	if !ts.Eventually(5*time.Second, func() bool {
		a := fileSize(remote)
		time.Sleep(300 * time.Millisecond)
		stable = fileSize(remote)
		return a == stable
	}) {
		t.Fatal("partner file still grows after pause")
	}
	t.Logf("paused within %s at %d bytes", time.Since(paused).Round(time.Millisecond), stable)
	if stable >= size {
		t.Fatalf("transfer finished before the pause took effect (%d bytes); the test proves nothing", stable)
	}
	tr := api.WaitTransfer(t, id, 5*time.Second, "PAUSED", func(tr ts.Transfer) bool { return tr.Status == "PAUSED" })
	if tr.Progress <= 0 || tr.Progress > stable {
		t.Fatalf("paused at checkpoint %d with %d bytes at the partner", tr.Progress, stable)
	}
	api.Must(t, 202, "PUT", fmt.Sprintf("/api/transfers/%d/resume", id), nil)
	tr = api.WaitTransfer(t, id, 3*time.Minute, "DONE", func(tr ts.Transfer) bool { return tr.Status == "DONE" || tr.Status == "ERROR" })
	if tr.Status != "DONE" || tr.Progress != size || tr.Checkpoints < 2 {
		t.Fatalf("push ended %+v", tr)
	}
	if got := ts.FileSHA256(t, remote); got != sum {
		t.Fatal("partner's copy differs from the source")
	}

	// Pull, cancelled while it runs: CANCELLED, then in the history.
	id = startTransfer(t, api, "pull", "big.bin", nil)
	api.WaitTransfer(t, id, 30*time.Second, "RUNNING", func(tr ts.Transfer) bool { return tr.Status == "RUNNING" && tr.Progress > 0 })
	api.Must(t, 202, "PUT", fmt.Sprintf("/api/transfers/%d/cancel", id), nil)
	api.WaitTransfer(t, id, 5*time.Second, "CANCELLED", func(tr ts.Transfer) bool { return tr.Status == "CANCELLED" })
	if !ts.Eventually(10*time.Second, func() bool { return history(t, api)[fmt.Sprint(id)].Status == "CANCELLED" }) {
		t.Fatal("cancelled transfer not in history")
	}
	// Retried after cancel, it completes from its checkpoint.
	api.Must(t, 202, "PUT", fmt.Sprintf("/api/transfers/%d/retry", id), nil)
	api.WaitTransfer(t, id, 3*time.Minute, "DONE", func(tr ts.Transfer) bool { return tr.Status == "DONE" })
	// A pull is renamed into place just after its DONE is committed (the
	// next ACTIVE node redoes the rename after a crash), so DONE may be
	// read a moment before the file is there.
	pulled := filepath.Join(c.Home, "in", "big.bin")
	if !ts.Eventually(10*time.Second, func() bool { _, err := os.Stat(pulled); return err == nil }) {
		t.Fatal("pulled file not in place 10 s after its transfer was DONE")
	}
	if got := ts.FileSHA256(t, pulled); got != sum {
		t.Fatal("pulled file differs from the partner's")
	}

	// A missing file is not retried: ERROR at the first attempt, with why
	// (TestPartnerErrors has the other causes).
	id = startTransfer(t, api, "pull", "missing.bin", map[string]any{"maxAttempts": 3, "retryDelay": "100ms", "retryFactor": 2})
	tr = api.WaitTransfer(t, id, 30*time.Second, "ERROR", func(tr ts.Transfer) bool { return tr.Status == "ERROR" })
	if tr.Attempts != 1 || tr.ErrorCode != "TeFileNotFound" || !strings.Contains(tr.ErrorDetails, "missing.bin") {
		t.Fatalf("failed transfer %+v", tr)
	}

	// The partner's credentials are sealed in the replicated state: no
	// node keeps them in clear on disk.
	n.Kill()
	for _, p := range c.Nodes {
		filepath.Walk(p.DataDir, func(path string, fi os.FileInfo, err error) error {
			if err != nil || fi.IsDir() {
				return nil
			}
			b, _ := os.ReadFile(path)
			for _, secret := range []string{partnerPassword, strings.Split(strings.TrimSpace(sshd.ClientKey), "\n")[1]} {
				if strings.Contains(string(b), secret) {
					t.Errorf("%s holds a remote account secret in clear", path)
				}
			}
			return nil
		})
	}
}

// pushRun is a three-node cluster pushing a bigFile to the sshd partner,
// past its first checkpoint.
type pushRun struct {
	c              *ts.Cluster
	old            *ts.Proc // the ACTIVE node running the push
	remoteDir, sum string
	id             uint64
	before         ts.Transfer
}

func startPush(t *testing.T) pushRun {
	t.Helper()
	sshd := ts.StartSSHD(t)
	r := pushRun{c: ts.NewCluster(t, 3), remoteDir: t.TempDir()}
	r.old = r.c.WaitOneActive(40*time.Second, "PASSIVE")
	setupPartner(t, r.old.Admin(), sshd, r.remoteDir)
	r.sum = ts.WriteRandomFile(t, filepath.Join(r.c.Home, "out", "big.bin"), bigFile)
	// Planned through a PASSIVE node (forwarded to the leader).
	r.id = startTransfer(t, r.c.Other(r.old).Admin(), "push", "big.bin", nil)
	r.before = r.old.Admin().WaitTransfer(t, r.id, 60*time.Second, "a committed checkpoint", func(tr ts.Transfer) bool {
		return tr.Status == "RUNNING" && tr.Progress > 0
	})
	return r
}

// checkPartnerCopy fails unless the partner's file is the source's bytes.
func (r pushRun) checkPartnerCopy(t *testing.T) {
	t.Helper()
	if got := ts.FileSHA256(t, filepath.Join(r.remoteDir, "big.bin")); got != r.sum {
		t.Fatal("partner's copy differs from the source after the failover")
	}
}

func TestKilledActiveResumesClientTransfer(t *testing.T) {
	skipShort(t)
	r := startPush(t)
	c, old, id, before := r.c, r.old, r.id, r.before
	old.Kill()
	killed := time.Now()
	next := c.WaitOneActive(30*time.Second, "", old)
	t.Logf("new ACTIVE %s after %s", next.Name, time.Since(killed).Round(time.Millisecond))

	// The new ACTIVE marks it INTERRUPTED and resumes from the checkpoint.
	api := next.Admin()
	tr := api.WaitTransfer(t, id, 3*time.Minute, "DONE on the new ACTIVE", func(tr ts.Transfer) bool {
		return tr.Status == "DONE" || tr.Status == "ERROR"
	})
	if tr.Status != "DONE" || tr.NodeID == "" || strings.Contains(tr.NodeID, old.IP+":") {
		t.Fatalf("transfer after failover: %+v", tr)
	}
	var from int64 = -1
	for _, line := range strings.Split(next.Log(), "\n") {
		if strings.Contains(line, "resuming interrupted transfer") && strings.Contains(line, fmt.Sprintf("id=%d ", id)) {
			fmt.Sscanf(line[strings.Index(line, "from=")+5:], "%d", &from)
		}
	}
	if from <= 0 {
		t.Fatalf("the new ACTIVE did not resume from a checkpoint (from=%d); log:\n%s", from, next.LogTail(40))
	}
	t.Logf("resumed from %d bytes (checkpoint seen before the kill: %d)", from, before.Progress)
	r.checkPartnerCopy(t)
}

func TestServerUploadCutByFailoverIsResumable(t *testing.T) {
	skipShort(t)
	needTool(t, "sftp")
	c := ts.NewCluster(t, 3)
	old := c.WaitOneActive(40*time.Second, "PASSIVE")
	keyPath, pub := userKey(t)
	old.Admin().Must(t, 201, "POST", "/api/servers/sftp/accounts", map[string]any{"login": "bob", "publicKeys": []string{pub}})
	src := filepath.Join(t.TempDir(), "upload.bin")
	const size = 256 << 20
	sum := ts.WriteRandomFile(t, src, size)
	final := filepath.Join(c.Home, "bob", "upload.bin")
	// While it arrives, and once cut, the upload is in a staging file.
	partial := func() int64 { return stagedSize(filepath.Join(c.Home, "bob")) }

	// A first, small upload reaches the ACTIVE's history table, and (with
	// the embedded database) every other node's: the node that takes over
	// still tells it.
	small := filepath.Join(t.TempDir(), "small.bin")
	ts.WriteRandomFile(t, small, 1<<20)
	if out, err := ts.SFTP(old.SFTPAddr(), "bob", keyPath, "put "+small+" small.bin\n"); err != nil {
		t.Fatalf("sftp put: %v\n%s", err, out)
	}
	var first string
	if !ts.Eventually(10*time.Second, func() bool {
		for id, h := range history(t, old.Admin()) {
			if strings.HasSuffix(h.LocalPath, "small.bin") && h.Status == "DONE" {
				first = id
			}
		}
		return first != ""
	}) {
		t.Fatal("the small upload never reached the history")
	}
	for _, p := range c.Nodes {
		if !ts.Eventually(10*time.Second, func() bool { _, ok := history(t, p.Admin())[first]; return ok }) {
			t.Fatalf("transfer %s not in %s's history", first, p.Name)
		}
	}

	// A slow upload (sftp -l: 80 Mbit/s) cut by kill -9 of the ACTIVE.
	done := make(chan error, 1)
	go func() {
		_, err := ts.SFTP(old.SFTPAddr(), "bob", keyPath, "put "+src+" upload.bin\n", "-l", "80000")
		done <- err
	}()
	if !ts.Eventually(30*time.Second, func() bool { return partial() > 8<<20 }) {
		t.Fatal("upload did not start")
	}
	// Killed once a checkpoint is committed: what the next node resumes from.
	var id uint64
	if !ts.Eventually(30*time.Second, func() bool {
		for _, tr := range mustTransfers(t, old.Admin()) {
			if tr.IsServer && tr.Status == "RUNNING" && tr.Progress > 0 {
				id = tr.ID
			}
		}
		return id != 0
	}) {
		t.Fatal("running upload with a checkpoint not in /api/transfers")
	}
	old.Kill()
	if err := <-done; err == nil {
		t.Fatal("upload succeeded though its node was killed")
	}
	next := c.WaitOneActive(30*time.Second, "", old)
	tr := next.Admin().WaitTransfer(t, id, 10*time.Second, "INTERRUPTED", func(tr ts.Transfer) bool { return tr.Status != "RUNNING" })
	if tr.Status != "INTERRUPTED" {
		t.Fatalf("cut upload recorded %+v, want INTERRUPTED", tr)
	}
	// The takeover cut the staging file back to the committed checkpoint.
	if cut := partial(); cut != tr.Progress || cut <= 0 || cut >= size {
		t.Fatalf("staging file has %d bytes, checkpoint %d", cut, tr.Progress)
	}
	if fileSize(final) != -1 {
		t.Fatal("the cut upload is in place")
	}
	// The client resumes on the new ACTIVE with reput; same host key.
	if out, err := ts.SFTP(next.SFTPAddr(), "bob", keyPath, "reput "+src+" upload.bin\n"); err != nil {
		t.Fatalf("reput: %v\n%s", err, out)
	}
	if got := ts.FileSHA256(t, final); got != sum {
		t.Fatal("file resumed with reput differs from the source")
	}
	if n := partial(); n != -1 {
		t.Fatalf("a staging file of %d bytes is left after the resumed upload", n)
	}
	tr = next.Admin().WaitTransfer(t, id, time.Second, "still INTERRUPTED", func(tr ts.Transfer) bool { return true })
	if tr.Status != "INTERRUPTED" {
		t.Fatalf("cut upload now %+v", tr)
	}
}

func mustTransfers(t *testing.T, api *ts.APIClient) []ts.Transfer {
	t.Helper()
	trs, err := api.Transfers()
	if err != nil {
		t.Fatal(err)
	}
	return trs
}

// TestDeposedActiveCannotWrite freezes the ACTIVE node (SIGSTOP) past its
// lease during a push: the new ACTIVE resumes the transfer; the frozen node,
// woken up, must neither commit (its epoch is stale) nor write to the
// partner (its lease expired), so the partner's file ends byte-identical.
func TestDeposedActiveCannotWrite(t *testing.T) {
	skipShort(t)
	r := startPush(t)
	c, old, id, before := r.c, r.old, r.id, r.before

	old.Signal(syscall.SIGSTOP)
	next := c.WaitOneActive(30*time.Second, "", old)
	api := next.Admin()
	api.WaitTransfer(t, id, 60*time.Second, "taken over by the new ACTIVE", func(tr ts.Transfer) bool {
		return (tr.Status == "RUNNING" || tr.Status == "DONE") && tr.NodeID != before.NodeID
	})
	// Wake the deposed node, while the new one writes the same file when
	// the file is large enough (1 GiB without the race detector).
	old.Signal(syscall.SIGCONT)
	tr := api.WaitTransfer(t, id, 3*time.Minute, "DONE", func(tr ts.Transfer) bool { return tr.Status == "DONE" || tr.Status == "ERROR" })
	if tr.Status != "DONE" || tr.NodeID == before.NodeID {
		t.Fatalf("transfer %+v", tr)
	}
	r.checkPartnerCopy(t)
	if !ts.Eventually(10*time.Second, func() bool { return strings.Contains(old.Log(), "from=ACTIVE to=") }) {
		t.Fatalf("deposed node did not fence itself:\n%s", old.LogTail(30))
	}
	if n := old.CountLog("transfer done"); n != 0 {
		t.Fatalf("the deposed node recorded the transfer done %d times", n)
	}
}

// TestClientModeWithFTPPartner pushes a file to another gateway's FTP
// server (a real FTP partner: ftpserverlib behind its own node) and pulls
// it back, through the engine's FTP client.
func TestClientModeWithFTPPartner(t *testing.T) {
	skipShort(t)
	partner := ts.NewCluster(t, 1)
	p := partner.WaitOneActive(30*time.Second, "")
	// Its own passive ports: ftpserverlib listens on them on every
	// interface, where other tests' nodes may hold the default range.
	passive := 33000 + int(time.Now().UnixNano()%2000)
	p.Admin().Must(t, 201, "POST", "/api/servers", map[string]any{"name": "ftp-p", "protocol": "ftp", "port": ftpPort, "root": "p",
		"passiveMin": passive, "passiveMax": passive + 9, "tls": true})
	p.Admin().Must(t, 201, "POST", "/api/servers/ftp-p/accounts", map[string]any{"login": "bob", "password": accountPassword})
	if err := os.MkdirAll(filepath.Join(partner.Home, "p", "bob", "drop"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := ts.NewCluster(t, 1)
	api := c.WaitOneActive(30*time.Second, "").Admin()
	api.Must(t, 201, "POST", "/api/partners", map[string]any{"name": "ftp-remote", "protocol": "ftp", "address": fmt.Sprintf("%s:%d", p.IP, ftpPort)})
	api.Must(t, 201, "POST", "/api/partners/ftp-remote/accounts", map[string]any{"login": "bob", "password": accountPassword})
	api.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "push", "direction": "send", "path": "/drop", "localDir": "out"})
	api.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "pull", "direction": "receive", "path": "/drop", "localDir": "in"})
	const size = 64<<20 + 3
	sum := ts.WriteRandomFile(t, filepath.Join(c.Home, "out", "f.bin"), size)

	start := func(rule, partner string) ts.Transfer {
		t.Helper()
		var tr ts.Transfer
		body := map[string]any{"rule": rule, "partner": partner, "account": "bob", "file": "f.bin", "maxAttempts": 1}
		if err := api.Must(t, 201, "POST", "/api/transfers", body).Decode(&tr); err != nil {
			t.Fatal(err)
		}
		return api.WaitTransfer(t, tr.ID, 2*time.Minute, rule+" ended", func(tr ts.Transfer) bool { return tr.Status == "DONE" || tr.Status == "ERROR" })
	}
	run := func(rule, partner string) {
		t.Helper()
		if tr := start(rule, partner); tr.Status != "DONE" || tr.Progress != size || tr.Filesize != size {
			t.Fatalf("%s to %s ended %+v", rule, partner, tr)
		}
	}
	pushed := filepath.Join(partner.Home, "p", "bob", "drop", "f.bin")
	run("push", "ftp-remote")
	if got := ts.FileSHA256(t, pushed); got != sum {
		t.Fatal("the FTP partner's copy differs from the source")
	}
	run("pull", "ftp-remote")
	if got := ts.FileSHA256(t, filepath.Join(c.Home, "in", "f.bin")); got != sum {
		t.Fatal("the file pulled over FTP differs from the partner's")
	}

	// FTPS: the partner pinned to the server's self-signed certificate
	// (as GET /api/servers shows it) gets the file over explicit TLS; one
	// pinned to another certificate is refused before it logs in.
	var srv wire.Server
	if err := p.Admin().Must(t, 200, "GET", "/api/servers/ftp-p", nil).Decode(&srv); err != nil || srv.TLSCert == "" {
		t.Fatalf("server ftp-p has no certificate: %v %+v", err, srv)
	}
	api.Must(t, 201, "POST", "/api/servers", map[string]any{"name": "ftp-other", "protocol": "ftp", "port": ftpPort + 1, "root": "o", "tls": true, "enabled": false})
	var other wire.Server
	if err := api.Must(t, 200, "GET", "/api/servers/ftp-other", nil).Decode(&other); err != nil {
		t.Fatal(err)
	}
	for name, cert := range map[string]string{"ftps-remote": srv.TLSCert, "ftps-wrong": other.TLSCert} {
		api.Must(t, 201, "POST", "/api/partners", map[string]any{"name": name, "protocol": "ftp", "address": fmt.Sprintf("%s:%d", p.IP, ftpPort),
			"tls": true, "tlsCert": cert})
		api.Must(t, 201, "POST", "/api/partners/"+name+"/accounts", map[string]any{"login": "bob", "password": accountPassword})
	}
	if err := os.Remove(pushed); err != nil {
		t.Fatal(err)
	}
	run("push", "ftps-remote")
	if got := ts.FileSHA256(t, pushed); got != sum {
		t.Fatal("the FTPS partner's copy differs from the source")
	}
	if tr := start("push", "ftps-wrong"); tr.Status != "ERROR" || !strings.Contains(tr.ErrorDetails, "certificate") {
		t.Fatalf("push to a partner with another certificate ended %+v", tr)
	}
	// A refused identity, the partner's (certificate) or ours (password),
	// ends in ERROR at the first attempt with the code saying so, however
	// many attempts are left.
	api.Must(t, 201, "POST", "/api/partners", map[string]any{"name": "ftp-bad-password", "protocol": "ftp", "address": fmt.Sprintf("%s:%d", p.IP, ftpPort)})
	api.Must(t, 201, "POST", "/api/partners/ftp-bad-password/accounts", map[string]any{"login": "bob", "password": "not-" + accountPassword})
	for partner, details := range map[string]string{"ftps-wrong": "certificate", "ftp-bad-password": "530"} {
		var tr ts.Transfer
		body := map[string]any{"rule": "push", "partner": partner, "account": "bob", "file": "f.bin", "maxAttempts": 5, "retryDelay": "100ms"}
		if err := api.Must(t, 201, "POST", "/api/transfers", body).Decode(&tr); err != nil {
			t.Fatal(err)
		}
		tr = api.WaitTransfer(t, tr.ID, time.Minute, "ended", func(tr ts.Transfer) bool { return tr.Status == "DONE" || tr.Status == "ERROR" })
		if tr.Status != "ERROR" || tr.Attempts != 1 || tr.ErrorCode != "TeBadAuthentication" || !strings.Contains(tr.ErrorDetails, details) {
			t.Errorf("push to %s ended %+v, want ERROR at its first attempt with TeBadAuthentication and %q", partner, tr, details)
		}
		t.Logf("push to %s: %s after %d of %d attempts, %s %q", partner, tr.Status, tr.Attempts, tr.MaxAttempts, tr.ErrorCode, tr.ErrorDetails)
	}
	api.Must(t, 400, "POST", "/api/partners", map[string]any{"name": "bad", "protocol": "ftp", "address": "h:21", "tls": true, "tlsCert": "not a certificate"})
	_, pub := userKey(t)
	api.Must(t, 400, "POST", "/api/partners", map[string]any{"name": "bad", "protocol": "sftp", "address": "h:22", "hostKey": pub, "tls": true})
}
