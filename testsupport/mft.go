package testsupport

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/udmg/gateway/httpapi/wire"
)

// WriteRandomFile writes size pseudo-random bytes (fast: ChaCha8) to path,
// creating its directory, and returns their SHA-256 in hex.
func WriteRandomFile(t testing.TB, path string, size int64) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var seed [32]byte
	binaryTime := time.Now().UnixNano()
	for i := range 8 {
		seed[i] = byte(binaryTime >> (8 * i))
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(rand.NewChaCha8(seed), size)); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// FileSHA256 is the SHA-256 (hex) of a file's content.
func FileSHA256(t testing.TB, path string) string {
	t.Helper()
	sum, err := SHA256File(path)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// SHA256File is FileSHA256 for goroutines that may not stop the test.
func SHA256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Transfer is a transfer as the API shows it.
type Transfer = wire.Transfer

// Transfers lists the live transfers (GET /api/transfers, up to 1000).
func (c *APIClient) Transfers() ([]Transfer, error) {
	r, err := c.Do("GET", "/api/transfers?limit=1000", nil)
	if err != nil {
		return nil, err
	}
	if r.Status != 200 {
		return nil, fmt.Errorf("GET /api/transfers: %s", r)
	}
	var out struct {
		Transfers []Transfer `json:"transfers"`
	}
	return out.Transfers, r.Decode(&out)
}

// Transfer reads one live transfer.
func (c *APIClient) Transfer(id uint64) (Transfer, error) {
	var t Transfer
	r, err := c.Do("GET", fmt.Sprintf("/api/transfers/%d", id), nil)
	if err != nil {
		return t, err
	}
	if r.Status != 200 {
		return t, fmt.Errorf("GET /api/transfers/%d: %s", id, r)
	}
	return t, r.Decode(&t)
}

// Must sends a request and fails the test unless the answer has status want.
func (c *APIClient) Must(t testing.TB, want int, method, path string, body any) *Response {
	t.Helper()
	r, err := c.Do(method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.Status != want {
		t.Fatalf("%s %s: got %s, want %d", method, path, r, want)
	}
	return r
}

// WaitTransfer polls until the transfer satisfies cond and returns it.
func (c *APIClient) WaitTransfer(t testing.TB, id uint64, timeout time.Duration, what string, cond func(Transfer) bool) Transfer {
	t.Helper()
	var last Transfer
	var lastErr error
	if !Eventually(timeout, func() bool {
		last, lastErr = c.Transfer(id)
		return lastErr == nil && cond(last)
	}) {
		t.Fatalf("transfer %d: %s not reached within %s; last %+v (err %v)", id, what, timeout, last, lastErr)
	}
	return last
}

// AddSSHDPartner declares sshd as partner "remote" (key login as sshd.User)
// with rules "push" (send GatewayHome/out to remoteDir) and "pull" (receive
// from remoteDir into GatewayHome/in).
func (c *APIClient) AddSSHDPartner(t testing.TB, sshd *SSHD, remoteDir string) {
	t.Helper()
	c.Must(t, 201, "POST", "/api/partners", map[string]any{"name": "remote", "protocol": "sftp", "address": sshd.Addr, "hostKey": sshd.HostKey})
	c.Must(t, 201, "POST", "/api/partners/remote/accounts", map[string]any{"login": sshd.User, "privateKey": sshd.ClientKey})
	c.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "push", "direction": "send", "path": remoteDir, "localDir": "out"})
	c.Must(t, 201, "POST", "/api/rules", map[string]any{"name": "pull", "direction": "receive", "path": remoteDir, "localDir": "in"})
}

// FailingTransfers declares sshd as partner "remote" (AddSSHDPartner) and a
// partner "down" on a closed port, then starts two pulls that fail: one of
// a file "remote" lacks (permanent: ERROR at once) and one from "down"
// (transient: retried in an hour). home is the node's GatewayHome, where
// pulled files go.
func (c *APIClient) FailingTransfers(t testing.TB, sshd *SSHD, home string) (missing, later Transfer) {
	t.Helper()
	c.AddSSHDPartner(t, sshd, t.TempDir())
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	c.Must(t, 201, "POST", "/api/partners", map[string]any{"name": "down", "protocol": "sftp", "address": closed, "hostKey": sshd.HostKey})
	c.Must(t, 201, "POST", "/api/partners/down/accounts", map[string]any{"login": sshd.User, "privateKey": sshd.ClientKey})
	if err := c.Must(t, 201, "POST", "/api/transfers", map[string]any{"rule": "pull", "partner": "remote", "account": sshd.User, "file": "missing.bin"}).Decode(&missing); err != nil {
		t.Fatal(err)
	}
	if err := c.Must(t, 201, "POST", "/api/transfers", map[string]any{"rule": "pull", "partner": "down", "account": sshd.User, "file": "later.bin", "retryDelay": "1h"}).Decode(&later); err != nil {
		t.Fatal(err)
	}
	return missing, later
}
