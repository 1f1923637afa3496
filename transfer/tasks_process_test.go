package transfer_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	"github.com/udmg/gateway/httpapi/wire"
	ts "github.com/udmg/gateway/testsupport"
)

// TestRefusedServerUploadRunsErrorTasks: a partner uploads over SFTP
// (pkg/sftp) to a real node whose receive rule refuses by a CHECK
// pre-task what is not *.csv (at open) or above 10 bytes (at its end).
// Each refused upload ends ERROR after the rule's error-tasks, a MOVE to
// quarantine and a WEBHOOK to a real HTTP receiver: the upload refused at
// its end is quarantined under its name with its bytes; the one refused at
// open has no file, its MOVE is skipped, and the WEBHOOK fires for both,
// once each, with its Authorization header from a stored secret
// (#SECRET:hook-token#) that no task output shows. The live transfer and
// its history row list the tasks.
func TestRefusedServerUploadRunsErrorTasks(t *testing.T) {
	skipShort(t)
	needTool(t, "ssh-keygen")
	var mu sync.Mutex
	var hooks []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body["authorization"] = r.Header.Get("Authorization")
		mu.Lock()
		hooks = append(hooks, body)
		mu.Unlock()
	}))
	t.Cleanup(hook.Close)

	c := ts.NewCluster(t, 1)
	n := c.WaitOneActive(30*time.Second, "")
	api := n.Admin()
	_, pub := userKey(t)
	setupServers(t, api, pub, 34000+int(time.Now().UnixNano()%1000))
	const token = "Bearer refused-hook-token-1"
	api.Must(t, 201, "POST", "/api/task-secrets", map[string]any{"name": "hook-token", "value": token})
	api.Must(t, 200, "PATCH", "/api/rules/inbox/receive", map[string]any{
		"preTasks": []map[string]any{{"type": "CHECK", "args": map[string]any{"namePattern": "*.csv", "maxSize": 10}}},
		"errorTasks": []map[string]any{
			{"type": "MOVE", "args": map[string]any{"path": "quarantine"}},
			{"type": "WEBHOOK", "args": map[string]any{"url": hook.URL, "attempts": 3, "headers": map[string]any{"Authorization": "#SECRET:hook-token#"}}},
		},
	})
	cl := sftpClient(t, fmt.Sprintf("%s:%d", n.IP, sftpPort))
	if err := cl.MkdirAll("/in"); err != nil {
		t.Fatal(err)
	}

	// Refused at open: the client's create fails.
	if f, err := cl.Create("/in/tool.exe"); err == nil {
		f.Close()
		t.Fatal("upload of tool.exe was accepted")
	}
	// Refused at its end: the data went, the close fails.
	big := bytes.Repeat([]byte("0123456789abcdef"), 64)
	f, err := cl.Create("/in/big.csv")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(big); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err == nil {
		t.Fatal("upload of a 1 KiB big.csv was accepted")
	}

	ended := map[string]ts.Transfer{}
	for _, p := range []string{"/in/tool.exe", "/in/big.csv"} {
		up := uploadOf(t, api, p)
		ended[p] = api.WaitTransfer(t, up.ID, 30*time.Second, "ERROR after its error-tasks", func(tr ts.Transfer) bool {
			return tr.Status == "ERROR"
		})
	}
	for p, tr := range ended {
		if len(tr.Tasks) != 3 || tr.Tasks[0].Phase != "pre" || tr.Tasks[0].State != "ERROR" ||
			tr.Tasks[1].Type != "MOVE" || tr.Tasks[1].State != "DONE" || tr.Tasks[2].Type != "WEBHOOK" || tr.Tasks[2].State != "DONE" {
			t.Errorf("%s: tasks %+v", p, tr.Tasks)
		}
		if b, _ := json.Marshal(tr); strings.Contains(string(b), "refused-hook-token") {
			t.Errorf("%s: the transfer shows the secret: %s", p, b)
		}
		if !strings.Contains(tr.ErrorDetails, "rule inbox: pre task 1 (CHECK)") {
			t.Errorf("%s: error %q", p, tr.ErrorDetails)
		}
	}
	if out := ended["/in/tool.exe"].Tasks; len(out) == 3 && !strings.Contains(out[1].Output, "skipped") {
		t.Errorf("tool.exe's MOVE: %q", out[1].Output)
	}
	got, err := os.ReadFile(filepath.Join(c.Home, "quarantine", "big.csv"))
	want := sha256.Sum256(big)
	if sum := sha256.Sum256(got); err != nil || sum != want {
		t.Errorf("quarantine/big.csv: %d bytes, sha256 %s, %v; want %s", len(got), hex.EncodeToString(sum[:]), err, hex.EncodeToString(want[:]))
	}
	if _, err := os.Stat(filepath.Join(c.Home, "quarantine", "tool.exe")); err == nil {
		t.Error("a quarantined tool.exe exists: there was no file")
	}
	mu.Lock()
	ids := []float64{}
	for _, h := range hooks {
		id, _ := h["transferId"].(float64)
		ids = append(ids, id)
		if h["authorization"] != token {
			t.Errorf("webhook for %v: Authorization %q", id, h["authorization"])
		}
	}
	mu.Unlock()
	slices.Sort(ids)
	wantIDs := []float64{float64(ended["/in/tool.exe"].ID), float64(ended["/in/big.csv"].ID)}
	slices.Sort(wantIDs)
	if !slices.Equal(ids, wantIDs) {
		t.Errorf("webhook calls for transfers %v, want one each for %v", ids, wantIDs)
	}
	if !ts.Eventually(20*time.Second, func() bool {
		h := history(t, api)
		for _, tr := range ended {
			if row, ok := h[fmt.Sprint(tr.ID)]; !ok || row.Status != "ERROR" || len(row.Tasks) != 3 {
				return false
			}
		}
		return true
	}) {
		t.Errorf("history rows lack the refused uploads' tasks: %+v", history(t, api))
	}
}

// sftpClient logs in as bob (password) on the SFTP server at addr with
// pkg/sftp; the test's cleanup closes it.
func sftpClient(t *testing.T, addr string) *sftp.Client {
	t.Helper()
	if !ts.Eventually(5*time.Second, func() bool { return ts.Greeting(addr, time.Second, "SSH-2.0-Go") }) {
		t.Fatalf("no SFTP server answers on %s", addr)
	}
	conn, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "bob", Auth: []ssh.AuthMethod{ssh.Password(accountPassword)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	cl, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// TestChainTransferToFTPSPartner: a partner's SFTP upload on a receive
// rule whose post-task TRANSFERs the file to an FTPS partner (another
// gateway's FTP server with explicit TLS, its certificate pinned) ends
// DONE with one child transfer, and the partner holds exactly one
// complete copy (sha256 equal, nothing else in its directory).
func TestChainTransferToFTPSPartner(t *testing.T) {
	skipShort(t)
	needTool(t, "ssh-keygen")
	partner := ts.NewCluster(t, 1)
	p := partner.WaitOneActive(30*time.Second, "")
	base := 35000 + int(time.Now().UnixNano()%1000)
	p.Admin().Must(t, 201, "POST", "/api/servers", map[string]any{"name": "ftp-p", "protocol": "ftp", "port": ftpPort, "root": "p",
		"passiveMin": base, "passiveMax": base + 9, "tls": true, "tlsRequired": true})
	p.Admin().Must(t, 201, "POST", "/api/servers/ftp-p/accounts", map[string]any{"login": "bob", "password": accountPassword})
	drop := filepath.Join(partner.Home, "p", "bob", "drop")
	if err := os.MkdirAll(drop, 0o755); err != nil {
		t.Fatal(err)
	}
	var srv wire.Server
	if err := p.Admin().Must(t, 200, "GET", "/api/servers/ftp-p", nil).Decode(&srv); err != nil || srv.TLSCert == "" {
		t.Fatalf("server ftp-p has no certificate: %v %+v", err, srv)
	}

	c := ts.NewCluster(t, 1)
	n := c.WaitOneActive(30*time.Second, "")
	api := n.Admin()
	_, pub := userKey(t)
	setupServers(t, api, pub, base+10)
	api.Must(t, 201, "POST", "/api/partners", map[string]any{"name": "ftps-remote", "protocol": "ftp", "address": fmt.Sprintf("%s:%d", p.IP, ftpPort),
		"tls": true, "tlsCert": srv.TLSCert})
	api.Must(t, 201, "POST", "/api/partners/ftps-remote/accounts", map[string]any{"login": "bob", "password": accountPassword})
	api.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "push", "direction": "send", "path": "/drop", "localDir": "out"})
	api.Must(t, 200, "PATCH", "/api/rules/inbox/receive", map[string]any{"postTasks": []map[string]any{
		{"type": "TRANSFER", "args": map[string]any{"to": "ftps-remote", "as": "bob", "rule": "push"}},
	}})

	src := filepath.Join(t.TempDir(), "f.bin")
	sum := ts.WriteRandomFile(t, src, 5<<20+11)
	cl := sftpClient(t, fmt.Sprintf("%s:%d", n.IP, sftpPort))
	if err := cl.MkdirAll("/in"); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	f, err := cl.Create("/in/f.bin")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.ReadFrom(in); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	up := uploadOf(t, api, "/in/f.bin")
	up = api.WaitTransfer(t, up.ID, 2*time.Minute, "chain ended", func(tr ts.Transfer) bool { return tr.Status == "DONE" || tr.Status == "ERROR" })
	if up.Status != "DONE" || len(up.Tasks) != 1 || up.Tasks[0].State != "DONE" || up.Tasks[0].Runs != 1 {
		t.Fatalf("upload ended %s %q, tasks %+v", up.Status, up.ErrorDetails, up.Tasks)
	}
	all, err := api.Transfers()
	if err != nil {
		t.Fatal(err)
	}
	var children []ts.Transfer
	for _, tr := range all {
		if tr.Parent == up.ID {
			children = append(children, tr)
		}
	}
	if len(children) != 1 || children[0].Status != "DONE" || children[0].Protocol != "ftp" {
		t.Fatalf("children of %d: %+v", up.ID, children)
	}
	names, err := os.ReadDir(drop)
	if err != nil {
		t.Fatal(err)
	}
	if len(names) != 1 || names[0].Name() != "f.bin" {
		t.Fatalf("partner's directory holds %v, want f.bin alone", names)
	}
	if got := ts.FileSHA256(t, filepath.Join(drop, "f.bin")); got != sum {
		t.Fatal("the FTPS partner's copy differs from the upload")
	}
}
